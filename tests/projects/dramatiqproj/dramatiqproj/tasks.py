"""The project's actors, on the broker django-dramatiq builds from DRAMATIQ_BROKER.

DRAMATIQPROJ_INSTALL=1 adds pooldoctor's census middleware (``pooldoctor inspect --runner
dramatiq``), as a project would in its tasks module.
"""

import os

import dramatiq

from dramatiqproj.catalog import catalog
from dramatiqproj.wrappers import async_task_wrapper

if os.environ.get("DRAMATIQPROJ_INSTALL") == "1":
    import pooldoctor.dramatiq

    pooldoctor.dramatiq.install(dramatiq.get_broker())


@dramatiq.actor
def count_databases(n: int = 0) -> None:
    """The default path: a sync actor on the ORM; DbConnectionsMiddleware closes after it."""
    catalog().objects.filter(oid__gte=n).count()


async def read_catalog(n: int = 0) -> None:
    model = catalog()
    await model.objects.filter(oid__gte=n).acount()  # the line a leak site names


leaky = dramatiq.actor(actor_name="leaky")(async_task_wrapper(read_catalog))


@dramatiq.actor
async def count_databases_async(n: int = 0) -> None:
    """An async actor: run on the AsyncIO middleware's event loop thread."""
    await catalog().objects.filter(oid__gte=n).acount()
