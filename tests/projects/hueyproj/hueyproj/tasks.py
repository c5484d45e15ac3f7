"""The project's tasks, as djhuey's documentation writes them: db_task for the ORM.

HUEYPROJ_INSTALL=1 installs pooldoctor's worker side (``pooldoctor inspect --runner huey``)."""

import os

from huey.contrib.djhuey import HUEY, db_task, task

from hueyproj.catalog import catalog
from hueyproj.wrappers import async_task_wrapper

if os.environ.get("HUEYPROJ_INSTALL") == "1":
    import pooldoctor.huey

    pooldoctor.huey.install(HUEY)


@db_task()
def count_databases(n: int) -> int:
    """The default path: a sync task, the ORM through djhuey's close_db."""
    return catalog().objects.count() + n


async def read_catalog(n: int) -> int:
    model = catalog()
    count = await model.objects.acount()  # the line a leak site names
    await model.objects.aget(datname="template1")
    return count + n


leaky = db_task(name="leaky")(async_task_wrapper(read_catalog))


@task()
def count_databases_plain(n: int) -> int:
    """The same body under a plain task(): nothing closes its connection (scan's PD319)."""
    return catalog().objects.count() + n
