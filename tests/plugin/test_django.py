"""pooldoctor with pytest-django's database fixtures, Django's TestCase (async methods included)
and pytest-asyncio's async tests: the test's own transaction on its own thread is never a leak,
and leaks are found whichever way the test ran."""

from __future__ import annotations

import pytest

from .project import RECIPES, line_of, run

TESTS = (
    RECIPES
    + """
from django.db import connection
from django.test import TestCase


def count():
    return Database.objects.count()  # in a default executor thread


class TestWithDjango(TestCase):
    async def test_async_method(self):
        # async_to_sync brings the ORM back to the test's thread, in the TestCase's transaction
        assert await Database.objects.acount() > 0

    async def test_async_method_leaks(self):
        assert await sync_to_async(count, thread_sensitive=False)() > 0

    def test_sync_method(self):
        assert Database.objects.count() > 0


def test_db_fixture(db):
    assert Database.objects.count() > 0


@pytest.mark.parametrize("run", [1, 2])
def test_transactional_db_fixture(transactional_db, run):
    # The first query checks a connection out (the last transactional test closed its own),
    # and the connection is still checked out by the test's thread after the call.
    assert Database.objects.count() > 0
    assert connection.connection is not None


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_asyncio_leaks():
    async with ThreadSensitiveContext():
        assert await Database.objects.acount() > 0  # in an async test


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_asyncio_closes():
    assert await count_and_close() > 0
"""
)


def test_database_fixtures_testcases_and_async_tests(project: pytest.Pytester) -> None:
    # GIVEN tests using pytest-django's fixtures, Django's TestCase and pytest-asyncio, two of
    # which leak: a TestCase async method through a thread-insensitive call, and an async test
    # through a per-test ThreadSensitiveContext
    module = project.makepyfile(test_django=TESTS)

    # WHEN they run with pooldoctor on
    result = run(project, "--pooldoctor")

    # THEN exactly those two fail, each naming its line and the kind of thread; the others,
    # whose connections stay with the test's thread, pass
    result.assert_outcomes(failed=2, passed=6)
    result.stdout.fnmatch_lines(
        [
            "*_ TestWithDjango.test_async_method_leaks _*",
            "pooldoctor: this test lost 1 pool slot of 'default' *",
            f"LOST    test_django.py:{line_of(module, '# in a default executor thread')} in "
            "count() via asyncio default executor",
            "        x1 connection, from test_django.py::TestWithDjango::test_async_method_leaks",
            "*_ test_asyncio_leaks _*",
            "pooldoctor: this test lost 1 pool slot of 'default' *",
            f"LOST    test_django.py:{line_of(module, '# in an async test')} in "
            "test_asyncio_leaks() via ThreadSensitiveContext executor",
            "        x1 connection, from test_django.py::test_asyncio_leaks",
            "*- pooldoctor -*",
            "8 tests checked on 'default', 'other'; 2 tests lost pool slots or left connections "
            "checked out in other threads",
        ]
    )
