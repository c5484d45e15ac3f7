"""Run every selected check over every file and collect the findings, sorted and suppressed.

Each file is read once. Two passes follow, in worker processes when there are enough files to
pay for starting them (one per CPU), each returning small frozen results, never syntax trees:

1. each file is decoded and known to parse (or listed as skipped) and gives its share of the
   project-wide facts; a module is parsed only when a fact's words are in its text, else merely
   checked to parse, which costs a third less;
2. the files holding one of a check's ``NEEDS`` are parsed again and checked against the facts
   of the whole project. The rest, most files of most projects, are never parsed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pooldoctor.config import tool_config
from pooldoctor.errors import UsageError
from pooldoctor.scan.checks import Check, Prefilter, all_checks
from pooldoctor.scan.databases import PoolState
from pooldoctor.scan.facts import Facts, FileFacts, combine, file_facts
from pooldoctor.scan.files import (
    DEFAULT_MAX_FILE_SIZE,
    Skip,
    compiled_unchanged,
    require_parse,
    require_valid,
)
from pooldoctor.scan.model import (
    DatabaseSummary,
    ScanFinding,
    ScanResult,
    SettingsSummary,
    SkippedFile,
)
from pooldoctor.scan.settings import ProjectModules, ProjectSettings
from pooldoctor.scan.source import RawFile, Reading, SourceFile

if TYPE_CHECKING:
    import concurrent.futures
    import multiprocessing.context

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")
_UNITS = {"": 1, "b": 1}
_UNITS.update({f"{p}{s}": 1024**n for n, p in enumerate("kmg", 1) for s in ("", "b", "ib")})
SIZE_TIP = "give bytes or a number with k or M (1024-based): 1048576, 500k, 2M"
FILES_PER_PROCESS = 100
"""Below this many files for each worker process, starting the processes costs more than they
save (a module takes about a millisecond)."""
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def select_checks(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[Check]:
    checks = all_checks()
    known = [c.code for c in checks]
    chosen, dropped = set(select), set(ignore)
    for code in chosen | dropped:
        if not any(k.startswith(code) for k in known):
            close = difflib.get_close_matches(code, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"unknown check code {code!r}", f"{hint}see pooldoctor scan --list-checks"
            )
    # A prefix selects a family: --select PD3 is every PD3xx check.
    return [
        c
        for c in checks
        if (not chosen or any(c.code.startswith(s) for s in chosen))
        and not any(c.code.startswith(i) for i in dropped)
    ]


def parse_size(text: str) -> int | None:
    """Bytes in ``1048576``, ``500k``, ``2M``, ``1.5MB``, ``64KiB``; None when it is not a size."""
    match = _SIZE.fullmatch(text.lower())
    if match is None or match[2] not in _UNITS:
        return None
    try:
        size = int(float(match[1]) * _UNITS[match[2]])
    except OverflowError:  # more digits than a float holds
        return None
    return size if size > 0 else None


def max_file_size(given: str | None, root: Path) -> int:
    """``--max-file-size``, else ``max-file-size`` in ``[tool.pooldoctor]`` of the root's
    pyproject.toml (a size string or a number of bytes), else 1 MB."""
    if given is not None:
        size = parse_size(given)
        if size is None:
            raise UsageError(f"--max-file-size {given!r} is not a size", SIZE_TIP)
        return size
    path, config = tool_config(root)
    value = config.get("max-file-size")
    if value is None:
        return DEFAULT_MAX_FILE_SIZE
    size = parse_size(str(value)) if isinstance(value, str | int) else None
    if size is None:
        raise UsageError(
            f"{path}: [tool.pooldoctor] max-file-size = {value!r} is not a size", SIZE_TIP
        )
    return size


def run_scan(
    root: Path,
    paths: Sequence[Path],
    checks: Sequence[Check],
    exclude: Iterable[str] = (),
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    jobs: int | None = None,
) -> ScanResult:
    """``jobs``: worker processes; None for one per CPU when there are enough files, 1 for none
    (the result is the same, byte for byte)."""
    reading = Reading(root, paths or [root], exclude, max_file_size)
    chosen = tuple(checks)
    with _Workers(jobs) as workers:
        raws: list[RawFile] = []

        def kept(files: Iterable[RawFile]) -> Iterator[RawFile]:
            for raw in files:
                raws.append(raw)
                yield raw

        # The workers parse the first files while the rest are read.
        first = functools.partial(_read, prefilter=Prefilter.of(chosen))
        outcomes = workers.map(first, kept(reading), len(reading))
        skipped = [*reading.skipped, *(o.skipped for o in outcomes if o.skipped)]
        read = [o for o in outcomes if o.facts is not None]
        # The settings are evaluated here, over the files read: only the few modules they
        # import are parsed (again).
        texts = {r.relative: (lambda r=r: r.decode().text) for r in raws if r.is_python}
        facts = combine((o.facts for o in read if o.facts is not None), ProjectModules(texts))
        wanted = [(f, o.wanted) for f, o in zip(raws, outcomes, strict=True) if o.wanted]
        raws.clear()  # the bytes of the files no check wants
        second = functools.partial(_check, facts=facts, checks=chosen)
        found = workers.map(second, wanted, len(wanted))
    return ScanResult(
        root=str(root),
        findings=tuple(sorted({f for findings in found for f in findings})),
        files_scanned=len(read),
        skipped=tuple(sorted(set(skipped))),
        scanned=tuple(sorted({_directory(root, p) for p in paths or [root]})),
        settings=_summary(facts.settings),
    )


def _summary(settings: ProjectSettings) -> SettingsSummary:
    databases = []
    for alias in settings.databases:
        place = alias.pool_place or alias.place
        where = f"{place.file}:{place.line}" if place else ""
        because = alias.because if alias.pool is PoolState.UNKNOWN else ""
        databases.append(
            DatabaseSummary(alias.settings, alias.alias, alias.pool.value, where, because)
        )
    named = tuple(r.where for r in settings.references)
    return SettingsSummary(settings.modules, named, tuple(databases))


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """What the first pass learns of one file."""

    skipped: SkippedFile | None = None
    facts: FileFacts | None = None
    wanted: tuple[int, ...] = ()
    """The checks (their places in the list) whose ``NEEDS`` its text holds: the second pass
    runs them."""


def _read(raw: RawFile, prefilter: Prefilter) -> _Outcome:
    """Decode the file, know that it parses, and take its share of the facts."""
    try:
        source = raw.decode()
        facts = _module_facts(source, raw) if source.is_python else file_facts(source)
    except Skip as skip:
        return _Outcome(skipped=SkippedFile(raw.relative, skip.reason, skip.detail))
    return _Outcome(facts=facts, wanted=prefilter.wanting(source.text))


def _module_facts(source: SourceFile, raw: RawFile) -> FileFacts:
    """A module's facts, once it is known to parse: from its tree when a fact needed one, else
    from the bytecode Python cached for it, else checked without building a tree."""
    try:
        facts = file_facts(source)
    except (MemoryError, RecursionError):
        require_parse(source.text, source.relative)  # the parser's, and so the module's, fault
        raise
    if source.parsed:
        if source.tree is None:
            require_parse(source.text, source.relative)  # raises, with the error's line
    elif not compiled_unchanged(raw.path, raw.data, raw.mtime):
        require_valid(source.text, source.relative)
    return facts


def _check(
    file: tuple[RawFile, tuple[int, ...]], facts: Facts, checks: Sequence[Check]
) -> tuple[ScanFinding, ...]:
    """Run the checks whose ``NEEDS`` the file's text holds (a module is parsed at most once,
    and only if one of them asks for its tree)."""
    raw, wanted = file
    found: list[ScanFinding] = []
    source = raw.decode()  # the first pass decoded it: it cannot fail now
    for check in (checks[i] for i in wanted):
        for hit in check.run(source, facts):
            if source.suppressed(hit.line, check.code):
                continue
            found.append(
                ScanFinding(
                    file=source.relative,
                    line=hit.line,
                    column=code_point_column(source, hit.line, hit.column),
                    code=check.code,
                    severity=check.severity,
                    message=hit.message,
                    fix=check.fix,
                )
            )
    return tuple(found)


@functools.cache
def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may run on (containers, taskset)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _Workers:
    """Worker processes, started the first time a pass has enough files to pay for them."""

    def __init__(self, jobs: int | None) -> None:
        self.jobs = jobs
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.processes = 1

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def map(
        self, function: Callable[[_Item], _Result], items: Iterable[_Item], count: int
    ) -> list[_Result]:
        """``function`` of each of the (about ``count``) items, in order."""
        if self.pool is None:
            enough = min(_cpus(), count // FILES_PER_PROCESS)
            processes = self.jobs if self.jobs is not None else enough
            if processes < 2 or not self._start(processes):
                with _quiet():
                    return [function(item) for item in items]
        chunk = max(1, count // (self.processes * 4))  # a few chunks each: sizes differ
        return list(self.pool.map(function, items, chunksize=chunk))  # type: ignore[union-attr]

    def _start(self, processes: int) -> bool:
        from concurrent.futures import ProcessPoolExecutor  # only when it pays: 15 ms

        context = _context()
        if context.get_start_method() != "fork" and not _main_importable():
            return False  # a fresh worker re-imports __main__: not a REPL's or stdin's
        try:
            self.pool = ProcessPoolExecutor(processes, context, initializer=_silence)
        except (OSError, ImportError, NotImplementedError):  # no sem_open (some sandboxes)
            return False
        self.processes = processes
        return True


def _context() -> multiprocessing.context.BaseContext:
    """fork where it is safe (Linux, one thread: nothing to re-import), else a fresh
    interpreter per worker."""
    import multiprocessing

    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _main_importable() -> bool:
    main = sys.modules.get("__main__")
    if getattr(main, "__spec__", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    return isinstance(path, str) and os.path.isfile(path)


def _silence() -> None:
    """A worker process's warnings filter: see :func:`_quiet`."""
    warnings.simplefilter("ignore", SyntaxWarning)
    warnings.simplefilter("ignore", DeprecationWarning)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The scanned project's SyntaxWarnings (``"\\d"`` in a string) are not the scan's to print."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def code_point_column(source: SourceFile, line: int, column: int) -> int:
    """A 1-based column of a Python file's syntax tree (a UTF-8 byte offset, as ``col_offset``
    is) in Unicode code points, the unit every report declares; other files' columns already
    are."""
    if not source.is_python or not 1 <= line <= len(source.lines):
        return column
    before = source.lines[line - 1].encode("utf-8", "surrogateescape")[: column - 1]
    return len(before.decode("utf-8", "ignore")) + 1


def _directory(root: Path, path: Path) -> str:
    """The absolute directory a scanned path stands for (where its files' shown paths start)."""
    where = os.path.normpath(os.path.join(root, path))
    return where if os.path.isdir(where) else os.path.dirname(where)
