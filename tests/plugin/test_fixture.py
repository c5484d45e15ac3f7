"""The ``pooldoctor_census`` fixture: a test reads its own census."""

from __future__ import annotations

import pytest

from .project import RECIPES, line_of, run

CENSUS = (
    RECIPES
    + """

@pytest.mark.django_db
@pytest.mark.pooldoctor(enabled=False)
def test_shows_a_leak_on_purpose(pooldoctor_census):
    assert pooldoctor_census.aliases == ("default", "other")
    assert pooldoctor_census.take().clean

    asyncio.run(count_in_context())

    census = pooldoctor_census.take()
    assert (census.alias, census.lost, census.pinned, census.clean) == ("default", 1, 0, False)
    [site] = census.sites
    assert (site.kind, site.file, site.line, site.function, site.count) == (
        "lost", "test_census.py", LEAK_LINE, "count_in_context", 1
    )
    assert site.thread == "ThreadSensitiveContext executor"
    assert site.tasks == ("test_census.py::test_shows_a_leak_on_purpose",)
    assert census.describe()[0] == (
        "LOST    test_census.py:LEAK_LINE in count_in_context() via ThreadSensitiveContext executor"
    )


@pytest.mark.django_db
def test_reads_a_clean_census(pooldoctor_census):
    asyncio.run(count_and_close())

    census = pooldoctor_census.take()
    assert census.clean, census.describe()
    assert census.sites == ()
    assert [(row.thread, row.thread_role) for row in census.held] == [("MainThread", "main thread")]
    assert (census.pool.max_size, census.lost_in_session) == (4, 1)


@pytest.mark.django_db
def test_still_checked_after_asserting(pooldoctor_census):
    asyncio.run(count_in_context())
    assert pooldoctor_census.take().lost == 1


@pytest.mark.pooldoctor(alias="other")
def test_measures_the_marker_alias(pooldoctor_census):
    assert pooldoctor_census.aliases == ("other",)
    assert pooldoctor_census.take().alias == "other"
    with pytest.raises(ValueError, match="does not measure 'default'"):
        pooldoctor_census.take("default")
"""
)


def test_a_test_reads_its_census_and_is_still_checked(project: pytest.Pytester) -> None:
    # GIVEN tests that read their census: one leaking on purpose with the check off, a clean
    # one, one that leaks with the check on, one on another alias
    module = project.makepyfile(test_census=CENSUS)
    module.write_text(module.read_text().replace("LEAK_LINE", str(line_of(module, "# leaks"))))

    # WHEN they run with pooldoctor on
    result = run(project, "--pooldoctor")

    # THEN every assertion on the census holds, and reading the census silences nothing: the
    # test that leaked with the check on fails after its call
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "FAILED test_census.py::test_still_checked_after_asserting - pooldoctor: this test "
            "lost 1 pool slot*"
        ]
    )


def test_the_fixture_measures_with_pooldoctor_off(project: pytest.Pytester) -> None:
    # GIVEN a leaking test asking for its census
    project.makepyfile(
        test_census=RECIPES
        + """

@pytest.mark.django_db
def test_leaks(pooldoctor_census):
    asyncio.run(count_in_context())
    assert pooldoctor_census.take().lost == 1
"""
    )

    # WHEN it runs without --pooldoctor
    result = run(project)

    # THEN it measured, and passes: off, pooldoctor fails nothing
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*- pooldoctor -*")
