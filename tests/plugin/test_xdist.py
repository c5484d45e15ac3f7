"""``pytest --pooldoctor -n 2``: under pytest-xdist the tests run in worker processes, whose
terminals are not shown; the controller gathers what each measured and prints the one summary."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from .project import RECIPES, run

pytest.importorskip("xdist")

# One module per worker (--dist loadfile): a test that leaks and one that does not, in each.
MODULE = (
    RECIPES
    + """

@pytest.mark.django_db
def test_leaks_{n}():
    assert asyncio.run(count_in_context()) > 0


@pytest.mark.django_db
def test_closes_on_the_orm_thread_{n}():
    assert asyncio.run(count_and_close()) > 0
"""
)


@pytest.fixture
def worker_databases(plugin_database: dict[str, str], database_url: str) -> Iterator[None]:
    """pytest-django gives each xdist worker a test database of its own (``_gw0``, ``_gw1``),
    kept by --reuse-db: dropped here."""
    yield
    with psycopg.connect(database_url, autocommit=True) as conn:
        for worker in ("gw0", "gw1"):
            name = f"test_{plugin_database['name']}_{worker}"
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_the_summary_is_printed_once_with_every_workers_counts(
    project: pytest.Pytester, worker_databases: None
) -> None:
    # GIVEN two test modules, each with a leaking and a clean test
    project.makepyfile(test_one=MODULE.format(n="one"), test_two=MODULE.format(n="two"))

    # WHEN they run with pooldoctor on, on two xdist workers, a module each
    result = run(project, "--pooldoctor", "-n", "2", "--dist", "loadfile")

    # THEN both workers ran tests (their ids show in the report), the two leaks failed
    result.assert_outcomes(failed=2, passed=2)
    output = result.stdout.str()
    assert "[gw0]" in output and "[gw1]" in output, output
    # AND the controller printed pooldoctor's summary once, with the counts of both workers
    assert output.count("- pooldoctor -") == 1, output
    result.stdout.fnmatch_lines(
        [
            "*- pooldoctor -*",
            "4 tests checked on 'default', 'other'; 2 tests lost pool slots or left connections "
            "checked out in other threads",
        ]
    )
    # AND each worker's leak is named there, in node id order whichever worker ended first
    leaks = [line for line in output.splitlines() if line.startswith("  test_")]
    assert [line.split(": ")[0] for line in leaks] == [
        "  test_one.py::test_leaks_one",
        "  test_two.py::test_leaks_two",
    ], output
    assert all("lost 1 pool slot of 'default'" in line for line in leaks), output


def test_off_under_xdist_there_is_no_summary(
    project: pytest.Pytester, worker_databases: None
) -> None:
    # GIVEN the same modules, WHEN they run on two workers without --pooldoctor
    project.makepyfile(test_one=MODULE.format(n="one"), test_two=MODULE.format(n="two"))
    result = run(project, "-n", "2", "--dist", "loadfile")

    # THEN all pass and pooldoctor says nothing
    result.assert_outcomes(passed=4)
    result.stdout.no_fnmatch_line("*- pooldoctor -*")
