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

Requests count like any other checkout. While Django's test ``Client`` or ``AsyncClient``, or an
in-process ``ASGIHandler`` (``httpx.ASGITransport``, ``ApplicationCommunicator``), handles a
request in the test, its checkouts are labelled with the request's method and path (``GET
/prices/``), streamed responses included: a request whose view left a connection with a thread
that ended (a ``sync_to_async(thread_sensitive=False)`` call, the per-request thread of the ASGI
handler with ``CONN_MAX_AGE`` but no pool) or with a live thread other than the test's (asgiref's
executors under ``AsyncClient``) fails the test, and the failure names the request and the view's
line. ``Client`` runs the view in the test's own thread, inside pytest-django's transaction,
which is left out as above.

Only the call counts, not fixtures' setup and teardown. A test that checked nothing out is passed
without a look, and the garbage collector is run only for a test that fails, so a clean test costs
next to nothing. ``@pytest.mark.pooldoctor(...)`` adjusts the check per test, and the
``pooldoctor_census`` fixture lets a test read the same census itself. Modelled on pytest-memray
(a passed report turned into a failed one with a clear reason). Under pytest-xdist each worker
measures its own tests and hands its counts to the controller, which prints the one summary.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
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
class RequestLeak:
    """One request the test made through Django's handlers, and what its checkouts left."""

    request: str
    """Method and path: ``GET /prices/``."""
    lost: int
    pinned: int

    def __str__(self) -> str:
        counts = [
            f"{count} {kind}" for count, kind in ((self.lost, "lost"), (self.pinned, "pinned"))
        ]
        return f"{self.request} ({', '.join(c for c in counts if not c.startswith('0 '))})"


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
    requests: tuple[RequestLeak, ...] = ()
    """The requests (test ``Client``, ``AsyncClient``, ASGI handler) among the sites' checkouts."""

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
        text = (
            f"this test lost {_plural(self.lost, slots)} of {self.alias!r} and left "
            f"{_plural(self.pinned, 'connection')} checked out in other threads"
        )
        if self.requests:
            text += f", during {', '.join(leak.request for leak in self.requests)}"
        return text

    def describe(self) -> list[str]:
        """The leak sites, the threads holding connections and the pool: the failure's body."""
        from pooldoctor.reporters.sites import site_lines

        lines = [line for site in self.sites for line in site_lines(site)]
        if self.requests:
            requests = ", ".join(map(str, self.requests))
            lines.append(f"requests that left connections of {self.alias!r} behind: {requests}")
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
        self._current: str | None = None
        """The node id of the test whose call is running."""
        self._requests: dict[str, dict[str, str]] = {}
        """Per test running now: the label of each request it made -> ``GET /path``."""
        self._patched: list[tuple[type, str, Any]] = []
        """(class, attribute, original) of the request handlers that label checkouts."""
        self._gathered: dict[str, None] | None = None
        """Under pytest-xdist, on the controller: the aliases the workers that measured used."""

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
        self._current = item.nodeid
        try:
            return (yield)
        finally:
            self._current = None
            requests = list(self._requests.get(item.nodeid, ()))
            for ledger, token in reversed(tokens):
                ledger.task_finished(item.nodeid, token)
                # A request's connections are judged at the end of the test, as the test's own.
                for label in requests:
                    ledger.task_finished(label)
            try:
                if plan.check:
                    self.checked += 1
                    # A test that checked nothing out cannot have leaked: not even a look.
                    if sum(ledger.checkouts for ledger in ledgers.values()) > before:
                        item.stash[_FOUND] = self._examine(item.nodeid, ledgers, plan)
            finally:
                self._requests.pop(item.nodeid, None)

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

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        output = getattr(session.config, "workeroutput", None)
        if output is not None and self.checking:
            # A pytest-xdist worker: its terminal is not shown, the controller sums and prints.
            output[_WORKER_OUTPUT] = {
                "started": self._ledgers is not None or self._unavailable is not None,
                "aliases": list(self._ledgers or ()),
                "checked": self.checked,
                "failures": [list(failure) for failure in self.failures],
                "unavailable": self._unavailable,
            }

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """pytest-xdist's controller, as each worker ends: add what it measured."""
        output = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
        if not output or not output["started"]:
            return
        if self._gathered is None:
            self._gathered = {}
        self._gathered.update(dict.fromkeys(output["aliases"]))
        self.checked += output["checked"]
        self.failures += [(nodeid, headline) for nodeid, headline in output["failures"]]
        self._unavailable = self._unavailable or output["unavailable"]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        started = self._ledgers is not None or self._gathered is not None
        if not self.checking or (not started and self._unavailable is None):
            return  # off, or no test was checked
        terminalreporter.write_sep("-", "pooldoctor")
        if self._unavailable is not None:
            terminalreporter.write_line(f"nothing checked: {self._unavailable}")
            return
        measured = self._ledgers if self._ledgers is not None else self._gathered
        aliases = ", ".join(repr(alias) for alias in measured or ()) or "no alias"
        terminalreporter.write_line(
            f"{_plural(self.checked, 'test')} checked on {aliases}; "
            f"{_plural(len(self.failures), 'test')} lost pool slots or left connections "
            "checked out in other threads"
        )
        # Under xdist, in node id order rather than the order the workers happened to end in.
        failures = self.failures if self._gathered is None else sorted(self.failures)
        for nodeid, headline in failures:
            terminalreporter.write_line(f"  {nodeid}: {headline.removeprefix('pooldoctor: ')}")

    def pytest_unconfigure(self) -> None:
        for ledger in (self._ledgers or {}).values():
            ledger.uninstall()
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

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
        sites: list[LeakSite] = []
        requests: list[RequestLeak] = []
        # The test's own label, then each of its requests' (a request's checkouts carry its own)
        labels = [(nodeid, None), *list(self._requests.get(nodeid, {}).items())]
        for label, request in labels:
            found = ledger.leak_sites(
                pool, self.cwd, task=label, ignore_held_by=threading.current_thread()
            )
            sites.extend(found)
            if request is not None and found:
                requests.append(
                    RequestLeak(
                        request,
                        lost=sum(s.count for s in found if s.kind is LeakKind.LOST),
                        pinned=sum(s.count for s in found if s.kind is LeakKind.PINNED),
                    )
                )
        # in the order a single call would give: kind, most connections first, then place
        sites.sort(key=lambda s: (s.kind.value, -s.count, s.file or "", s.line or 0))
        rows, lost, _ = ledger.snapshot(pool)
        return AliasCensus(
            alias=alias,
            pooled=self._pooled[alias],
            sites=tuple(sites),
            held=tuple(row for row in rows if row.held),
            pool=census.pool_stats(pool),
            lost_in_session=lost,
            requests=tuple(requests),
        )

    def request_label(self, method: str, path: str) -> str | None:
        """The label for the checkouts of a request the running test makes (None between
        tests' calls: fixtures are not judged)."""
        nodeid = self._current
        if nodeid is None:
            return None
        request = f"{method} {path}"
        label = f"{nodeid} during {request}"
        self._requests.setdefault(nodeid, {})[label] = request
        return label

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
        self._patched = _label_requests(self)
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
_WORKER_OUTPUT = "pooldoctor"
"""The key of a pytest-xdist worker's ``workeroutput`` that carries what it measured."""


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


# -- requests ------------------------------------------------------------------------------------


def _label_requests(doctor: Doctor) -> list[tuple[type, str, Any]]:
    """Make the handlers that run a test's requests in-process label their checkouts with the
    request (:meth:`Doctor.request_label`); returns what to restore.

    The label is a context variable (the ledger's ``CURRENT_TASK``), set around the handler's call
    rather than by receivers of ``request_started`` and ``request_finished``: the call's context is
    the one asgiref copies into the threads the view's ORM runs on, as it does the test's own
    label, and a streamed response, read by the test after the call, is labelled chunk by chunk.
    A thread started without the context (``live_server``'s) keeps the test's label."""
    from django.core.handlers.asgi import ASGIHandler
    from django.test.client import AsyncClientHandler, ClientHandler

    from pooldoctor.core.census import CURRENT_TASK

    client_call = ClientHandler.__call__
    async_client_call = AsyncClientHandler.__call__
    asgi_call = ASGIHandler.__call__

    def labelled_client_call(handler: Any, environ: dict[str, Any]) -> Any:
        label = doctor.request_label(
            environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        )
        if label is None:
            return client_call(handler, environ)
        token = CURRENT_TASK.set(label)
        try:
            response = client_call(handler, environ)
        finally:
            CURRENT_TASK.reset(token)
        return _label_streaming(response, label)

    async def labelled_async_client_call(handler: Any, scope: dict[str, Any]) -> Any:
        label = doctor.request_label(scope.get("method", ""), scope.get("path", ""))
        if label is None:
            return await async_client_call(handler, scope)
        token = CURRENT_TASK.set(label)
        try:
            response = await async_client_call(handler, scope)
        finally:
            CURRENT_TASK.reset(token)
        return _label_streaming(response, label)

    async def labelled_asgi_call(
        handler: Any, scope: dict[str, Any], receive: Any, send: Any
    ) -> Any:
        # The ASGI handler sends a streamed response itself, before it returns.
        label = None
        if scope.get("type") == "http":
            label = doctor.request_label(scope.get("method", ""), scope.get("path", ""))
        if label is None:
            return await asgi_call(handler, scope, receive, send)
        token = CURRENT_TASK.set(label)
        try:
            return await asgi_call(handler, scope, receive, send)
        finally:
            CURRENT_TASK.reset(token)

    patched: list[tuple[type, str, Any]] = []
    for owner, wrapper in (
        (ClientHandler, labelled_client_call),
        (AsyncClientHandler, labelled_async_client_call),
        (ASGIHandler, labelled_asgi_call),
    ):
        original = owner.__dict__["__call__"]
        functools.update_wrapper(wrapper, original)
        patched.append((owner, "__call__", original))
        setattr(owner, "__call__", wrapper)  # noqa: B010 - the attribute, not a call
    return patched


def _label_streaming(response: Any, label: str) -> Any:
    """A streamed response's content is read after the handler returned: label its reads too."""
    if not getattr(response, "streaming", False):
        return response
    content = response.streaming_content
    if getattr(response, "is_async", False):
        response.streaming_content = _LabelledAsyncIterator(content, label)
    else:
        response.streaming_content = _LabelledIterator(content, label)
    return response


class _LabelledIterator:
    """The chunks of ``inner``, each read under ``label``. A class, not a generator: no ``close``
    of its own to add to the response's closers (the client's wrapper closes the response)."""

    def __init__(self, inner: Iterator[Any], label: str) -> None:
        from pooldoctor.core.census import CURRENT_TASK

        self._inner = inner
        self._label = label
        self._var = CURRENT_TASK

    def __iter__(self) -> _LabelledIterator:
        return self

    def __next__(self) -> Any:
        token = self._var.set(self._label)
        try:
            return next(self._inner)
        finally:
            self._var.reset(token)


class _LabelledAsyncIterator:
    """The chunks of an async ``inner``, each read under ``label``."""

    def __init__(self, inner: AsyncIterator[Any], label: str) -> None:
        from pooldoctor.core.census import CURRENT_TASK

        self._inner = inner
        self._label = label
        self._var = CURRENT_TASK

    def __aiter__(self) -> _LabelledAsyncIterator:
        return self

    async def __anext__(self) -> Any:
        token = self._var.set(self._label)
        try:
            return await anext(self._inner)
        finally:
            self._var.reset(token)


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
