"""pytest plugin: fail the tests that lose pool slots or leave connections checked out in other
threads.

Off until asked for (``pytest --pooldoctor``, or ``pooldoctor = true`` in the pytest ini); off, it
imports nothing of Django and connects no signal. On, a :class:`~pooldoctor.core.census.Ledger` per
PostgreSQL alias in ``settings.DATABASES`` records every checkout from the first test on (by then
pytest-django, or the project's conftest, has set Django up). Each test's call runs under its node
id; after it, the checkouts made under that label are examined, and a passed test fails when one
of them

- lost its pool slot: the connection was given up while checked out (its thread ended, the
  ``ThreadSensitiveContext`` recipe), so psycopg_pool counts the slot as in use forever; or
- is still checked out by a live thread other than the test's own (asgiref's process-wide
  executor after ``asyncio.run``): pinned. The test's own thread is left out, pytest-django's test
  transaction lives there.

Only the call counts, not fixtures' setup and teardown. A test that checked nothing out is passed
without a look, and the garbage collector is run only for a test that fails, so a clean test costs
next to nothing. ``@pytest.mark.pooldoctor(...)`` adjusts the check per test, and the
``pooldoctor_census`` fixture lets a test read the same census itself. Modelled on pytest-memray
(a passed report turned into a failed one with a clear reason).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, cast

import pytest

from pooldoctor.core.model import LeakKind, LeakSite, PoolStats, ThreadConnection

if TYPE_CHECKING:  # imported when first needed: a plugin that is off must cost nothing
    from _pytest._code.code import TerminalRepr
    from _pytest._io import TerminalWriter

    from pooldoctor.core.census import Ledger

MARKER = "pooldoctor"
FIXTURE = "pooldoctor_census"
_MARKER_ARGS = ("enabled", "alias", "allow_pinned")
_TRANSACTION = {
    "idle": "idle",
    "active": "running a query",
    "intrans": "in a transaction",
    "inerror": "in a failed transaction",
}


@dataclasses.dataclass(frozen=True)
class AliasCensus:
    """One database alias as the current test has left it so far: what pooldoctor checks after
    the test, and what ``pooldoctor_census.take()`` returns while it runs."""

    alias: str
    pooled: bool
    """``OPTIONS["pool"]`` is set; without a pool, a lost connection is one left open."""
    sites: tuple[LeakSite, ...]
    """Where this test's lost and pinned connections were checked out."""
    held: tuple[ThreadConnection, ...]
    """Every connection of the alias that a live thread holds now, whichever test took it."""
    pool: PoolStats | None
    """psycopg_pool's own accounting (None before the pool's first connection)."""
    lost_in_session: int
    """Connections lost since pooldoctor started watching, by any test."""

    @property
    def lost(self) -> int:
        """Pool slots (without a pool: open connections) this test gave up while checked out."""
        return sum(site.count for site in self.sites if site.kind is LeakKind.LOST)

    @property
    def pinned(self) -> int:
        """Connections this test checked out that threads other than its own still hold."""
        return sum(site.count for site in self.sites if site.kind is LeakKind.PINNED)

    @property
    def clean(self) -> bool:
        return not self.lost and not self.pinned

    def headline(self) -> str:
        slots = "pool slot" if self.pooled else "open connection"
        return (
            f"this test lost {_plural(self.lost, slots)} of {self.alias!r} and left "
            f"{_plural(self.pinned, 'connection')} checked out in other threads"
        )

    def describe(self) -> list[str]:
        """The leak sites, the threads holding connections and the pool: the failure's body."""
        from pooldoctor.reporters.sites import site_lines

        lines = [line for site in self.sites for line in site_lines(site)]
        held = ", ".join(_held(row) for row in self.held) or "none"
        lines.append(f"threads holding connections of {self.alias!r}: {held}")
        if self.pool is not None:
            lines.append(
                f"pool of {self.alias!r}: {self.pool.checked_out} of {self.pool.max_size} slots "
                f"checked out, {self.pool.available} idle; "
                f"{_plural(self.lost_in_session, 'slot')} lost in this session"
            )
        return lines


class PoolCensus:
    """The ``pooldoctor_census`` fixture: the census of the current test so far.

    ``take()`` collects garbage, then reads the ledger of one alias::

        def test_refresh_returns_its_connection(pooldoctor_census):
            refresh_prices()
            census = pooldoctor_census.take()
            assert census.clean, "\\n".join(census.describe())

    Asking for the fixture measures the test even when pooldoctor is off; whether the test is
    also failed after its call follows ``--pooldoctor`` and the marker, so a test that shows a
    leak on purpose says ``@pytest.mark.pooldoctor(enabled=False)`` and asserts ``lost == 1``.
    """

    def __init__(self, doctor: Doctor, nodeid: str, aliases: tuple[str, ...]) -> None:
        self._doctor = doctor
        self._nodeid = nodeid
        self.aliases = aliases
        """The aliases this test is measured on (the marker's, else every PostgreSQL one)."""

    def take(self, alias: str | None = None) -> AliasCensus:
        """The census of ``alias`` (default: ``'default'`` if measured, else the first alias)."""
        if not self.aliases:
            raise ValueError("pooldoctor measures nothing: no PostgreSQL database in DATABASES")
        if alias is None:
            alias = "default" if "default" in self.aliases else self.aliases[0]
        elif alias not in self.aliases:
            raise ValueError(f"pooldoctor does not measure {alias!r} in this test: {self.aliases}")
        return self._doctor.census(self._nodeid, alias)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What pooldoctor does for one test, from the session's switch and the test's marker."""

    check: bool
    """Fail the test when it leaks (``--pooldoctor`` or the ini, unless ``enabled=False``)."""
    aliases: tuple[str, ...] | None
    """The marker's aliases; None for every PostgreSQL alias."""
    allow_pinned: bool


@dataclasses.dataclass(frozen=True)
class _Crash:
    """What pytest's short summary and JUnit's ``message`` show (``reprcrash`` of a report)."""

    path: str
    lineno: int
    message: str


@dataclasses.dataclass(frozen=True)
class LeakRepr:
    """The failure pooldoctor gives a test that passed but leaked."""

    lines: tuple[str, ...]
    reprcrash: _Crash

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.lines:
            tw.line(line, red=line.startswith("pooldoctor:"), bold=line.startswith("pooldoctor:"))

    def __str__(self) -> str:
        return "\n".join(self.lines)


class Unavailable(Exception):
    """pooldoctor cannot measure in this session (no Django, settings not configured)."""


class Doctor:
    """The plugin's state for one session: the ledgers and what the checked tests did."""

    def __init__(self, config: pytest.Config, *, checking: bool) -> None:
        self.checking = checking
        self.cwd = str(config.rootpath)
        self.checked = 0
        self.failures: list[tuple[str, str]] = []
        """(node id, headline) of every test pooldoctor failed."""
        self._ledgers: dict[str, Ledger] | None = None
        self._pooled: dict[str, bool] = {}
        self._unavailable: str | None = None

    # -- hooks -----------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Watch from before the first measured test's fixtures, so that the connections they take
        # (pytest-django's test transaction) are known to the census too.
        wanted = self.checking or FIXTURE in getattr(item, "fixturenames", ())
        if wanted and self._ledgers is None and self._unavailable is None:
            self._start()
            if self.checking and self._unavailable is not None:
                # Asked for and unable: this test fails saying why, and the run stops there.
                item.session.shouldstop = f"pooldoctor: {self._unavailable}"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        plan = self.plan_for(item)
        if plan is None:
            return (yield)
        item.stash[_PLAN] = plan
        ledgers = self.ledgers_for(plan)
        before = sum(ledger.checkouts for ledger in ledgers.values())
        tokens = [(ledger, ledger.task_started(item.nodeid)) for ledger in ledgers.values()]
        try:
            return (yield)
        finally:
            for ledger, token in reversed(tokens):
                ledger.task_finished(item.nodeid, token)
            if plan.check:
                self.checked += 1
                # A test that checked nothing out cannot have leaked: not even a look.
                if sum(ledger.checkouts for ledger in ledgers.values()) > before:
                    item.stash[_FOUND] = self._examine(item.nodeid, ledgers, plan)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        found = item.stash.get(_FOUND, None) if call.when == "call" else None
        if not found or hasattr(report, "wasxfail"):
            return report
        lines = _failure(found, item.stash[_PLAN])
        if report.passed:
            report.outcome = "failed"
            # pytest renders any longrepr that has toterminal(), as it does its TerminalRepr
            report.longrepr = cast(
                "TerminalRepr", LeakRepr(tuple(lines), self._crash(item, found, lines[0]))
            )
        elif report.failed:  # failed anyway: say what it also did to the pool
            report.sections.append(("pooldoctor", "\n".join(lines)))
        else:
            return report  # skipped
        self.failures.append((item.nodeid, lines[0]))
        return report

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.checking or (self._ledgers is None and self._unavailable is None):
            return  # off, or no test was checked in this process (an xdist controller)
        terminalreporter.write_sep("-", "pooldoctor")
        if self._unavailable is not None:
            terminalreporter.write_line(f"nothing checked: {self._unavailable}")
            return
        aliases = ", ".join(repr(alias) for alias in self._ledgers or ()) or "no alias"
        terminalreporter.write_line(
            f"{_plural(self.checked, 'test')} checked on {aliases}; "
            f"{_plural(len(self.failures), 'test')} lost pool slots or left connections "
            "checked out in other threads"
        )
        for nodeid, headline in self.failures:
            terminalreporter.write_line(f"  {nodeid}: {headline.removeprefix('pooldoctor: ')}")

    def pytest_unconfigure(self) -> None:
        for ledger in (self._ledgers or {}).values():
            ledger.uninstall()

    # -- measuring -------------------------------------------------------------------------------

    def census(self, nodeid: str, alias: str, *, collect: bool = True) -> AliasCensus:
        """What test ``nodeid`` has done to ``alias`` so far. ``collect`` first finalizes what
        dead threads left in reference cycles: their connections' sockets close, and the sites
        say "garbage-collected". The counts are the same either way (the ledger counts a live
        connection of a dead thread as lost), so collecting can wait until there is a finding."""
        from pooldoctor.core import census

        assert self._ledgers is not None
        ledger = self._ledgers[alias]
        if collect:
            census.collect_garbage()
        pool = census.django_pool(alias)
        sites = ledger.leak_sites(
            pool, self.cwd, task=nodeid, ignore_held_by=threading.current_thread()
        )
        rows, lost, _ = ledger.snapshot(pool)
        return AliasCensus(
            alias=alias,
            pooled=self._pooled[alias],
            sites=sites,
            held=tuple(row for row in rows if row.held),
            pool=census.pool_stats(pool),
            lost_in_session=lost,
        )

    def plan_for(self, item: pytest.Item) -> Plan | None:
        """What to do for ``item``; None when it is neither checked nor measured."""
        marker = item.get_closest_marker(MARKER)
        options: Mapping[str, Any] = marker.kwargs if marker else {}
        if marker is not None:
            unknown = sorted(set(options) - set(_MARKER_ARGS))
            if marker.args or unknown:
                given = ", ".join(map(repr, marker.args)) or ", ".join(unknown)
                pytest.fail(
                    f"pooldoctor marker: takes keyword arguments {', '.join(_MARKER_ARGS)} "
                    f"only; got {given}",
                    pytrace=False,
                )
        check = self.checking and bool(options.get("enabled", True))
        if not check and FIXTURE not in getattr(item, "fixturenames", ()):
            return None
        alias = options.get("alias")
        aliases = None if alias is None else (alias,) if isinstance(alias, str) else tuple(alias)
        return Plan(check, aliases, bool(options.get("allow_pinned", False)))

    def ledgers_for(self, plan: Plan) -> dict[str, Ledger]:
        """The ledgers of the aliases ``plan`` measures; fails the test when there are none to
        be had."""
        if self._ledgers is None and self._unavailable is None:
            self._start()
        if self._unavailable is not None:
            pytest.fail(f"pooldoctor: {self._unavailable}", pytrace=False)
        assert self._ledgers is not None
        if plan.aliases is None:
            return self._ledgers
        missing = [alias for alias in plan.aliases if alias not in self._ledgers]
        if missing:
            known = ", ".join(map(repr, self._ledgers)) or "none"
            pytest.fail(
                f"pooldoctor marker: {', '.join(map(repr, missing))} is not a PostgreSQL "
                f"database in settings.DATABASES (those are: {known})",
                pytrace=False,
            )
        return {alias: self._ledgers[alias] for alias in plan.aliases}

    def _start(self) -> None:
        try:
            self._ledgers = self._install()
        except Unavailable as exc:
            self._unavailable = str(exc)

    def _install(self) -> dict[str, Ledger]:
        """A ledger per PostgreSQL alias, once Django is set up (by now pytest-django has)."""
        try:
            from django.conf import settings
        except ImportError as exc:
            raise Unavailable("Django is not installed") from exc
        if not settings.configured:
            raise Unavailable(
                "Django's settings are not configured: install pytest-django and set "
                "DJANGO_SETTINGS_MODULE (or --ds), or call django.setup() in conftest.py"
            )
        from django.db import connections

        from pooldoctor.core.census import Ledger

        ledgers = {}
        for alias in connections:
            if connections[alias].vendor != "postgresql":
                continue
            ledgers[alias] = Ledger(alias, unit="test")
            ledgers[alias].install()
            self._pooled[alias] = bool(settings.DATABASES[alias].get("OPTIONS", {}).get("pool"))
        return ledgers

    def _examine(self, nodeid: str, ledgers: Mapping[str, Ledger], plan: Plan) -> list[AliasCensus]:
        """The censuses of the aliases on which test ``nodeid`` failed the check."""
        # A full garbage collection costs about 0.1 s in a big test process: only for a test
        # that fails, before the census its report shows.
        if not any(self._fails(self.census(nodeid, a, collect=False), plan) for a in ledgers):
            return []
        censuses = [self.census(nodeid, alias) for alias in ledgers]
        return [census for census in censuses if self._fails(census, plan)]

    def _fails(self, census: AliasCensus, plan: Plan) -> bool:
        return bool(census.lost or (census.pinned and not plan.allow_pinned))

    def _crash(self, item: pytest.Item, found: list[AliasCensus], headline: str) -> _Crash:
        """Where the short summary and CI annotations point: the first leak site, if in the
        project, else the test."""
        site = next((s for c in found for s in c.sites if s.file and s.line), None)
        if site is not None and site.file and site.line:
            path = os.path.join(self.cwd, site.file)
            if os.path.isfile(path):
                return _Crash(path, site.line, headline)
        path, line, _ = item.location
        return _Crash(os.path.join(self.cwd, path), (line or 0) + 1, headline)


_PLAN = pytest.StashKey[Plan]()
_FOUND = pytest.StashKey[list[AliasCensus]]()
_DOCTOR = pytest.StashKey[Doctor]()


def _failure(found: list[AliasCensus], plan: Plan) -> list[str]:
    lines = ["pooldoctor: " + "; ".join(census.headline() for census in found)]
    for census in found:
        lines.extend(census.describe())
    if not plan.allow_pinned and any(census.pinned for census in found):
        lines.append(
            "(connections held by live threads are allowed with "
            "@pytest.mark.pooldoctor(allow_pinned=True))"
        )
    return lines


def _held(row: ThreadConnection) -> str:
    state = _TRANSACTION.get(row.transaction, row.transaction)
    return f"{row.thread} ({row.thread_role}, {state}, checked out {row.held_seconds:g} s)"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -- entry points ----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pooldoctor", "pooldoctor: database connections leaked by tests")
    group.addoption(
        "--pooldoctor",
        action="store_true",
        default=False,
        help="fail tests that lose psycopg-pool slots or leave database connections checked "
        "out in threads other than the test's own",
    )
    parser.addini("pooldoctor", "turn pooldoctor on, as --pooldoctor does", type="bool")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(enabled=True, alias=None, allow_pinned=False): adjust pooldoctor's check of "
        "this test: off, one database alias only, or allow connections held by live threads",
    )
    checking = bool(config.getoption("pooldoctor") or config.getini("pooldoctor"))
    doctor = Doctor(config, checking=checking)
    config.stash[_DOCTOR] = doctor
    config.pluginmanager.register(doctor, "pooldoctor-doctor")


@pytest.fixture
def pooldoctor_census(request: pytest.FixtureRequest) -> PoolCensus:
    """The census of the current test so far: ``pooldoctor_census.take(alias=None)`` returns
    lost slots, connections held in other threads and leak sites (see :class:`PoolCensus`)."""
    doctor = request.config.stash[_DOCTOR]
    plan = doctor.plan_for(request.node)
    assert plan is not None  # the fixture itself turns measuring on
    return PoolCensus(doctor, request.node.nodeid, tuple(doctor.ledgers_for(plan)))
