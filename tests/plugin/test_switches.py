"""Turning pooldoctor on and off: off by default (and then inert), on with ``--pooldoctor`` or the
ini, and adjusted per test by ``@pytest.mark.pooldoctor``."""

from __future__ import annotations

import pytest

from .project import RECIPES, line_of, run

LEAKY = (
    RECIPES
    + """

@pytest.mark.django_db
def test_leaks():
    assert asyncio.run(count_in_context()) > 0


@pytest.mark.django_db
def test_pins():
    assert asyncio.run(Database.objects.acount()) > 0
"""
)


def test_off_by_default_a_leaking_test_passes_and_nothing_is_watched(
    project: pytest.Pytester,
) -> None:
    # GIVEN a leaking and a pinning test, and one that looks for pooldoctor in the process
    project.makepyfile(
        test_leak=LEAKY
        + """

@pytest.mark.pooldoctor(enabled=True)  # adjusts pooldoctor when on, never turns it on
def test_nothing_is_watched():
    import sys
    from django.db.backends.signals import connection_created

    assert connection_created.receivers == []
    assert "pooldoctor.core.census" not in sys.modules
"""
    )

    # WHEN they run without --pooldoctor (the marker registered all the same: --strict-markers)
    result = run(project)

    # THEN all pass: no ledger, no signal receiver, not even the census module, no report
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*pooldoctor:*")
    result.stdout.no_fnmatch_line("*- pooldoctor -*")


def test_off_it_imports_nothing_of_django(pytester: pytest.Pytester) -> None:
    # GIVEN a project without Django (pytest-django disabled) using the marker
    pytester.makepyfile(
        """
        import sys

        import pytest


        @pytest.mark.pooldoctor(enabled=False)
        def test_no_django():
            assert not [name for name in sys.modules if name.split(".")[0] == "django"]
        """
    )

    # WHEN pytest runs with the plugin loaded but off
    result = pytester.runpytest_subprocess("-p", "no:django", "--strict-markers")

    # THEN Django was never imported
    result.assert_outcomes(passed=1)


def test_on_without_django_settings_the_first_test_fails_saying_why(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN tests in a project that never configures Django
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makepyfile("def test_one():\n    pass\n\n\ndef test_two():\n    pass\n")

    # WHEN pytest runs with pooldoctor on (and pytest-django off)
    result = pytester.runpytest_subprocess("-p", "no:django", "--pooldoctor")

    # THEN the first test fails with the reason and a fix, and the run stops there
    result.assert_outcomes(failed=1)
    reason = (
        "pooldoctor: Django's settings are not configured: install pytest-django and set "
        "DJANGO_SETTINGS_MODULE (or --ds), or call django.setup() in conftest.py"
    )
    result.stdout.fnmatch_lines(
        ["*_ test_one _*", reason, "*- pooldoctor -*", "nothing checked: Django's settings *"]
    )
    result.stdout.fnmatch_lines([f"*Interrupted: {reason}*"])


def test_the_ini_turns_it_on(project: pytest.Pytester) -> None:
    # GIVEN `pooldoctor = true` in the pytest ini
    ini = project.path / "pytest.ini"
    ini.write_text(ini.read_text() + "\npooldoctor = true\n")
    project.makepyfile(test_leak=LEAKY)

    # WHEN pytest runs without --pooldoctor
    result = run(project)

    # THEN both the leaking and the pinning test fail
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "FAILED test_leak.py::test_leaks - pooldoctor: this test lost 1 pool slot*",
            "FAILED test_leak.py::test_pins - pooldoctor: this test lost 0 pool slots*",
        ]
    )


MARKED = (
    RECIPES
    + """

@pytest.mark.django_db
@pytest.mark.pooldoctor(enabled=False)
def test_not_checked():
    assert asyncio.run(count_in_context()) > 0


@pytest.mark.django_db(databases=["default", "other"])
@pytest.mark.pooldoctor(alias="default")
def test_leaks_on_other_checked_on_default():
    assert asyncio.run(count_in_context("other")) > 0


@pytest.mark.django_db(databases=["default", "other"])
@pytest.mark.pooldoctor(alias="other")
def test_leaks_on_other_checked_on_other():
    assert asyncio.run(count_in_context("other")) > 0


@pytest.mark.pooldoctor(allow_pin=True)
def test_misspelt():
    pass


@pytest.mark.pooldoctor(alias="replica")
def test_unknown_alias():
    pass
"""
)


def test_the_marker_turns_a_test_off_picks_an_alias_and_is_checked(
    project: pytest.Pytester,
) -> None:
    module = project.makepyfile(test_marked=MARKED)
    leak_line = line_of(module, "# leaks")

    result = run(project, "--pooldoctor")

    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_leaks_on_other_checked_on_other _*",
            "pooldoctor: this test lost 1 pool slot of 'other' and left 0 connections checked "
            "out in other threads",
            f"LOST    test_marked.py:{leak_line} in count_in_context() via "
            "ThreadSensitiveContext executor",
            "threads holding connections of 'other': MainThread (main thread, *)",
            "*_ test_misspelt _*",
            "pooldoctor marker: takes keyword arguments enabled, alias, allow_pinned only; got "
            "allow_pin",
            "*_ test_unknown_alias _*",
            "pooldoctor marker: 'replica' is not a PostgreSQL database in settings.DATABASES "
            "(those are: 'default', 'other')",
        ]
    )
    output = result.stdout.str()
    assert "FAILED test_marked.py::test_not_checked" not in output
    assert "FAILED test_marked.py::test_leaks_on_other_checked_on_default" not in output
