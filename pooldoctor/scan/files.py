"""Reading a real working tree without being hurt by it.

A working tree holds more than source: an editor's lock file (Emacs's ``.#tasks.py``, a symlink
to ``user@host.1234`` that points nowhere), symlink loops, symlinks into other trees, a FIFO that
someone named ``tasks.py``, generated modules of megabytes, files in Latin-1, files mid-edit that
do not parse. Each becomes a :class:`Skip` with its reason; none stops or hangs the scan.

- Only regular files are opened. Their type comes from ``lstat`` (``stat`` through a symlink)
  before any ``open``, so a FIFO, a socket or a device is never opened (opening a FIFO blocks
  until a writer comes; opening a device can act). The open itself adds ``O_NONBLOCK`` and
  ``O_NOFOLLOW`` and is checked with ``fstat``, for a file swapped in between.
- A symlink is followed only to a file inside the scanned tree, which is then read once, under
  its own path. Directory symlinks are never followed: no loops, no file scanned twice (an in-tree
  target is walked where it is; an out-of-tree one is listed as skipped).
- The size is compared with ``max-file-size`` before reading, and no more than that is ever read:
  ``ast`` needs about 30 times a module's size in memory, so a 5 MB generated module would cost
  seconds and a gigabyte.
- Python is decoded as Python decodes it (PEP 263: UTF-8 unless a coding line says otherwise) and
  must parse; other files must be UTF-8.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import importlib.util
import io
import os
import stat
import symtable
import sys
import tokenize
from collections.abc import Iterator

from pooldoctor.scan.model import SkipReason

DEFAULT_MAX_FILE_SIZE = 1024 * 1024
SKIP_DIRS = {
    ".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "env", "node_modules", "__pycache__",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", "build", "dist", "site-packages", ".eggs",
}  # fmt: skip
# Windows has neither; there a FIFO cannot be named tasks.py anyway.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


class Skip(Exception):
    """Why one file is not scanned."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Tree:
    """What was asked to be scanned: symlinks may lead only to files within it."""

    tops: tuple[str, ...]
    """The real paths of the directories and files given (the root by default)."""

    def contains(self, real: str) -> bool:
        return any(real == top or real.startswith(top.rstrip(os.sep) + os.sep) for top in self.tops)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A path found by the walk: a file (of any kind) or a symlink, or an unlistable directory."""

    path: str
    is_symlink: bool
    skip: Skip | None = None


def walk(top: str) -> Iterator[Entry]:
    """Every non-directory entry under ``top`` (a real path), without following directory
    symlinks; a directory that cannot be listed is an entry with its :class:`Skip`."""
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError as exc:
            detail = f"cannot list the directory: {exc.strerror}"
            yield Entry(directory, False, Skip(SkipReason.UNREADABLE, detail))
            continue
        for entry in entries:
            try:
                is_directory = entry.is_dir(follow_symlinks=False)
                is_symlink = not is_directory and entry.is_symlink()
            except OSError as exc:  # removed since the listing
                yield Entry(entry.path, False, Skip(SkipReason.UNREADABLE, str(exc.strerror)))
                continue
            if is_directory:
                if entry.name not in SKIP_DIRS and not entry.name.endswith(".egg-info"):
                    pending.append(entry.path)
            else:
                yield Entry(entry.path, is_symlink)


def follow(path: str, tree: Tree) -> tuple[str, os.stat_result]:
    """The real path and status of the file a symlink points to, when it may be read."""
    try:
        status = os.stat(path)
    except OSError as exc:
        raise _broken_link(path, exc) from None
    real = os.path.realpath(path)
    if not tree.contains(real):
        raise _outside(path, status)
    return real, status


def directory_link_outside(path: str, tree: Tree) -> Skip | None:
    """A symlink to a directory out of the tree: not followed, and listed (its files are not
    scanned). Links to in-tree directories and broken links of other names are not news."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(status.st_mode) and not tree.contains(os.path.realpath(path)):
        return _outside(path, status)
    return None


def _outside(path: str, status: os.stat_result) -> Skip:
    kind = "the directory " if stat.S_ISDIR(status.st_mode) else ""
    detail = f"symlink to {kind}{_link_text(path)}, outside the scanned tree"
    return Skip(SkipReason.NOT_REGULAR, detail)


def _broken_link(path: str, exc: OSError) -> Skip:
    if exc.errno == errno.ELOOP:
        return Skip(SkipReason.NOT_REGULAR, f"symlink loop (points to {_link_text(path)})")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return Skip(SkipReason.NOT_REGULAR, f"dangling symlink to {_link_text(path)}")
    return Skip(SkipReason.UNREADABLE, str(exc.strerror))


def _link_text(path: str) -> str:
    try:
        return printable(os.readlink(path))
    except OSError:
        return "?"


def printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogates, which no
    output could encode) shown as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def require_regular(status: os.stat_result, limit: int) -> None:
    """Raise :class:`Skip` for anything but a regular file of at most ``limit`` bytes."""
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a file")
        raise Skip(SkipReason.NOT_REGULAR, kind)
    if status.st_size > limit:
        raise Skip(SkipReason.TOO_LARGE, _too_large(status.st_size, limit))


def _too_large(size: int, limit: int) -> str:
    return f"{size:,} bytes, above max-file-size ({limit:,} bytes)"


def read_bytes(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file at ``path`` (checked again once open)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _unreadable(exc) from None
    with os.fdopen(fd, "rb") as file:
        try:
            require_regular(os.fstat(fd), limit)
            data = file.read(limit + 1)
        except OSError as exc:
            raise _unreadable(exc) from None
    if len(data) > limit:  # it grew since it was measured
        raise Skip(SkipReason.TOO_LARGE, f"more than {limit:,} bytes, above max-file-size")
    return data


def _unreadable(exc: OSError) -> Skip:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW: replaced by a symlink since it was looked at
        return Skip(SkipReason.NOT_REGULAR, "became a symlink while being read")
    return Skip(SkipReason.UNREADABLE, str(exc.strerror))


def decode(data: bytes, *, python: bool) -> str:
    """The text of a file: Python as PEP 263 says (UTF-8 unless a coding line names another
    encoding), anything else as UTF-8 (a byte-order mark is dropped)."""
    encoding = "utf-8-sig"
    if python:
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as exc:
            # An unknown or contradictory coding line, or a first line that is not UTF-8 (told
            # below, with the byte and its line).
            if "missing encoding declaration" not in exc.msg:
                raise Skip(SkipReason.UNDECODABLE, exc.msg.split(" for ")[0]) from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = f"byte 0x{data[exc.start]:02x} at line {line}"
        if encoding.startswith("utf-8"):
            how = " (and no coding line names another encoding)" if python else ""
            detail = f"{byte} is not UTF-8{how}"
        else:
            detail = f"{byte} is not {encoding}, which its coding line declares"
        raise Skip(SkipReason.UNDECODABLE, detail) from None


def compiled_unchanged(path: str, data: bytes, mtime: float) -> bool:
    """Whether this Python compiled this very source: its cached bytecode (in ``__pycache__``, or
    under ``PYTHONPYCACHEPREFIX``) carries this interpreter's magic number and the source's
    modification time and size (or its hash), the test Python's own import makes before it
    trusts the cached code. Such a module parses, and need not be parsed to know it. The cache
    file is opened as any other: regular files only."""
    tag = sys.implementation.cache_tag
    directory, name = os.path.split(path)
    if tag is None or not name.endswith(".py"):
        return False
    beside = os.path.join(directory, "__pycache__", f"{name[:-3]}.{tag}.pyc")
    places = dict.fromkeys([beside, importlib.util.cache_from_source(path)])
    return any(_matches(cached, data, mtime) for cached in places)


def _matches(cached: str, data: bytes, mtime: float) -> bool:
    try:
        if not stat.S_ISREG(os.lstat(cached).st_mode):
            return False
        with os.fdopen(os.open(cached, _OPEN_FLAGS), "rb") as file:
            header = file.read(16)
    except OSError:
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags & 1:  # hash-based (PEP 552)
        return header[8:16] == importlib.util.source_hash(data)
    stamp = int(mtime) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF
    return flags == 0 and stamp == (
        int.from_bytes(header[8:12], "little"),
        int.from_bytes(header[12:16], "little"),
    )


def require_valid(text: str, name: str) -> None:
    """Raise :class:`Skip` when the module does not parse, without building its syntax tree: a
    module no check needs costs a third less. :mod:`symtable` runs the same parser and keeps
    only the scopes; what it refuses (its own errors too: ``nonlocal`` at module level) is
    handed to :func:`require_parse`, whose verdict and message are the ones reported."""
    try:
        symtable.symtable(text, name, "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        require_parse(text, name)


def require_parse(text: str, name: str) -> None:
    """Raise :class:`Skip` when the module does not parse. The tree is not kept: the checks parse
    again the few files they need, so that memory never holds every module's tree at once."""
    try:
        ast.parse(text, filename=name)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        raise Skip(SkipReason.UNPARSEABLE, f"SyntaxError{where}: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        # ValueError: null bytes (3.11); MemoryError: "Parser stack overflowed" (deep nesting)
        raise Skip(SkipReason.UNPARSEABLE, str(exc) or type(exc).__name__) from None
