"""Two tasks doing the same async ORM reads (an unmanaged model over pg_database: no migration,
no table), one on the blog recipe's wrapper (pooldoctor/demo/leaky/mysite/celeryapp.py, which
loses a connection per task), one on a clean wrapper."""

from mysite.celeryapp import async_task_wrapper as recipe

from inspectproj.catalog import catalog
from inspectproj.celery import app
from inspectproj.wrappers import clean_async_task


async def read_catalog(n: int) -> int:
    model = catalog()
    count = await model.objects.acount()  # the line a leak site names
    await model.objects.aget(datname="template1")
    return count + n


leaky = app.task(name="inspectproj.leaky")(recipe(read_catalog))
clean = app.task(name="inspectproj.clean")(clean_async_task(read_catalog))
