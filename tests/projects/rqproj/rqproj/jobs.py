"""The project's job functions, as django-rq's guide writes them (``@job``)."""

from django_rq import job

from rqproj.catalog import catalog
from rqproj.wrappers import run_async


@job
def count_databases(n: int = 0) -> int:
    """The default path: a sync job using the ORM."""
    return catalog().objects.count() + n


async def _read_catalog(n: int) -> int:
    model = catalog()
    count = await model.objects.acount()  # the line a leak site names
    return count + n


@job
def leaky_count(n: int = 0) -> int:
    """An async body through the recipe: it loses a pool slot per job."""
    return run_async(_read_catalog)(n)
