"""``pytest --pooldoctor``: a test that loses a pool slot or pins a connection fails, naming the
line that checked the connection out; clean tests pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from .project import RECIPES, line_of, run

LEAKY_AND_CLEAN = (
    RECIPES
    + """

@pytest.mark.django_db
def test_leaks():
    assert asyncio.run(count_in_context()) > 0


@pytest.mark.django_db
def test_closes_on_the_orm_thread():
    assert asyncio.run(count_and_close()) > 0


@pytest.mark.django_db
def test_async_to_sync():
    assert async_to_sync(count_in_context)() > 0
"""
)

FAILS_AND_LEAKS = """

@pytest.mark.django_db
def test_fails_and_leaks():
    assert asyncio.run(count_in_context()) < 0
"""

HEADLINE = (
    "pooldoctor: this test lost 1 pool slot of 'default' and left 0 connections checked out "
    "in other threads"
)


def test_a_test_that_loses_a_pool_slot_fails_naming_the_line_that_took_it(
    project: pytest.Pytester,
) -> None:
    # GIVEN the shared recipe (per-call ThreadSensitiveContext, no close on its thread), two
    # clean ways (closing on the context's own thread; async_to_sync, which brings the ORM back to
    # the test's thread, inside pytest-django's transaction), and the recipe in a test that fails
    module = project.makepyfile(test_leak=LEAKY_AND_CLEAN + FAILS_AND_LEAKS)
    leak_line = line_of(module, "# leaks")

    # WHEN the tests run with pooldoctor on
    result = run(project, "--pooldoctor")

    # THEN the recipe fails, with pooldoctor's own text: the site, the test that took the
    # connection, who holds connections now and the pool's state; a test failing anyway gets the
    # same text in a section of its own
    result.assert_outcomes(failed=2, passed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_leaks _*",
            HEADLINE,
            f"LOST    test_leak.py:{leak_line} in count_in_context() via "
            "ThreadSensitiveContext executor",
            "        (thread ended * ms * the test returned; connection garbage-collected while "
            "checked out)",
            "        x1 connection, from test_leak.py::test_leaks",
            f"        stack: * < count_in_context (test_leak.py:{leak_line}) < * < test_leaks *",
            "threads holding connections of 'default': MainThread (main thread, *)",
            "pool of 'default': 2 of 4 slots checked out, 0 idle; 1 slot lost in this session",
            "*_ test_fails_and_leaks _*",
            "E       assert * < 0",
            "*- pooldoctor -*",
            HEADLINE,
            f"LOST    test_leak.py:{leak_line} in count_in_context() via "
            "ThreadSensitiveContext executor",
            "        x1 connection, from test_leak.py::test_fails_and_leaks",
            "pool of 'default': 3 of 4 slots checked out, 0 idle; 2 slots lost in this session",
            "*- pooldoctor -*",
            "4 tests checked on 'default', 'other'; 2 tests lost pool slots or left connections "
            "checked out in other threads",
            f"  test_leak.py::test_leaks: {HEADLINE.removeprefix('pooldoctor: ')}",
            f"  test_leak.py::test_fails_and_leaks: {HEADLINE.removeprefix('pooldoctor: ')}",
            f"FAILED test_leak.py::test_leaks - {HEADLINE}",
            "FAILED test_leak.py::test_fails_and_leaks - assert * < 0",
        ]
    )
    # test_leaks's failure is pooldoctor's text alone: no traceback, no source
    output = result.stdout.lines
    start = next(i for i, line in enumerate(output) if "_ test_leaks _" in line)
    end = next(i for i, line in enumerate(output) if "_ test_fails_and_leaks _" in line)
    assert output[start + 1] == HEADLINE
    assert not [line for line in output[start:end] if line.startswith(("E ", ">", "def "))]


def test_the_junit_xml_carries_the_failure_and_its_site(project: pytest.Pytester) -> None:
    # GIVEN the leaky and the clean tests
    module = project.makepyfile(test_leak=LEAKY_AND_CLEAN)
    leak_line = line_of(module, "# leaks")

    # WHEN they run with pooldoctor on and a JUnit XML report
    result = run(project, "--pooldoctor", "--junitxml=report.xml")
    result.assert_outcomes(failed=1, passed=2)

    # THEN the leaking testcase has a failure whose message is the headline and whose text
    # names the site; the clean ones have none
    cases = {
        case.get("name"): case for case in ET.parse(project.path / "report.xml").iter("testcase")
    }
    assert set(cases) == {"test_leaks", "test_closes_on_the_orm_thread", "test_async_to_sync"}
    failure = cases["test_leaks"].find("failure")
    assert failure is not None
    assert failure.get("message") == HEADLINE
    text = failure.text or ""
    assert text.startswith(HEADLINE + "\n")
    assert (
        f"LOST    test_leak.py:{leak_line} in count_in_context() via ThreadSensitiveContext "
        "executor"
    ) in text
    assert "x1 connection, from test_leak.py::test_leaks" in text
    for clean in ("test_closes_on_the_orm_thread", "test_async_to_sync"):
        assert list(cases[clean]) == [], clean


PINNING = (
    RECIPES
    + """
from asgiref.sync import SyncToAsync
from django.db import connections


@pytest.fixture(autouse=True)
def give_the_process_wide_thread_connection_back():
    # So that every test checks a connection out again: the process-wide executor keeps its
    # connection across tests otherwise, and only the first test to use it would be seen.
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.mark.django_db
def test_pins():
    assert asyncio.run(Database.objects.acount()) > 0  # pins


@pytest.mark.django_db
@pytest.mark.pooldoctor(allow_pinned=True)
def test_pins_allowed():
    assert asyncio.run(Database.objects.acount()) > 0


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_async_test_pins():
    assert await Database.objects.acount() > 0  # an async test pins as well
"""
)

PINNED_HEADLINE = (
    "pooldoctor: this test lost 0 pool slots of 'default' and left 1 connection checked out in "
    "other threads"
)


def test_a_connection_left_with_a_live_thread_fails_unless_allowed(
    project: pytest.Pytester,
) -> None:
    # GIVEN plain asyncio.run: the ORM runs on asgiref's process-wide executor thread, which
    # keeps its connection checked out after the test
    module = project.makepyfile(test_pin=PINNING)
    pin_line = line_of(module, "# pins")
    async_line = line_of(module, "# an async test pins")

    # WHEN the tests run with pooldoctor on
    result = run(project, "--pooldoctor")

    # THEN the test fails as pinned, naming the executor thread that holds the connection, and
    # passes when the marker allows it; so does an async test (pytest-asyncio) using the ORM
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_pins _*",
            PINNED_HEADLINE,
            f"PINNED  test_pin.py:{pin_line} in test_pins() via process-wide sync_to_async "
            "executor",
            "        (held between tasks by a live thread, never returned; checked out * s ago, "
            "transaction idle)",
            "threads holding connections of 'default': MainThread (main thread, *), "
            "ThreadPoolExecutor-*_0 (process-wide sync_to_async executor, idle, checked out * s)",
            "(connections held by live threads are allowed with "
            "@pytest.mark.pooldoctor(allow_pinned=True))",
            "*_ test_async_test_pins _*",
            PINNED_HEADLINE,
            f"PINNED  test_pin.py:{async_line} in test_async_test_pins() via process-wide "
            "sync_to_async executor",
            f"FAILED test_pin.py::test_pins - {PINNED_HEADLINE}",
            f"FAILED test_pin.py::test_async_test_pins - {PINNED_HEADLINE}",
        ]
    )
    assert "test_pins_allowed - " not in result.stdout.str()
