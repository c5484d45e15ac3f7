"""The project's tasks: plain functions, sent with ``async_task("djangoqproj.tasks.NAME")``."""

from djangoqproj.catalog import catalog
from djangoqproj.wrappers import async_task_wrapper


def count_databases(n: int) -> int:
    """The default path: a sync task using the ORM."""
    return catalog().objects.count() + n


async def read_catalog(n: int) -> int:
    model = catalog()
    count = await model.objects.acount()  # the line a leak site names
    await model.objects.aget(datname="template1")
    return count + n


leaky = async_task_wrapper(read_catalog)
