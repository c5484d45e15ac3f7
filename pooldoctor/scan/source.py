"""Files to scan: discovery, reading, and inline suppressions.

Python files must parse with :mod:`ast` (checked as they are read); the tree is kept only for the
checks that ask for it, and nothing is imported. Other files (requirements, lock files,
Procfiles, Dockerfiles, shell scripts, compose files, pyproject.toml) are read as text for the
project-wide facts. What cannot or must not be read (:mod:`.files` tells) is listed with its
reason instead.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import functools
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from pooldoctor.scan import files
from pooldoctor.scan.files import DEFAULT_MAX_FILE_SIZE, Entry, Skip, Tree
from pooldoctor.scan.model import SkippedFile, SkipReason

TEXT_NAMES = re.compile(
    r"^(requirements.*\.(txt|in)|constraints.*\.txt|pyproject\.toml|setup\.cfg|Pipfile(\.lock)?|"
    r"poetry\.lock|uv\.lock|Procfile.*|Dockerfile.*|.*\.dockerfile|docker-compose.*\.ya?ml|"
    r"compose.*\.ya?ml|.*\.sh|Makefile|.*\.service|supervisord?.*\.conf|.*\.ini|heroku\.ya?ml|"
    r"postgresql.*\.conf|(?:celery|gunicorn|uwsgi|worker)[\w.-]*\.conf|"
    # any YAML (Kubernetes manifests have no fixed name) but lock files such as pnpm-lock.yaml
    r"(?![\w.-]*lock\.ya?ml$)[\w.-]*\.ya?ml)$"
)
TEXT_LIMIT = 16 * 1024 * 1024
"""The size cap of the deployment and dependency files (never below ``--max-file-size``)."""
SUPPRESS = re.compile(r"#\s*pooldoctor:\s*ignore(?:\[(?P<codes>[A-Z0-9, ]+)\])?")


class SourceFile:
    """One file of the project, read once."""

    def __init__(self, path: Path, relative: str, text: str) -> None:
        self.path = path
        self.relative = relative
        self.text = text
        self.is_python = is_python(path.name)

    @functools.cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @functools.cached_property
    def tree(self) -> ast.Module | None:
        """The module's AST (discovery skipped the modules that do not parse)."""
        if not self.is_python:
            return None
        try:
            return ast.parse(self.text, filename=self.relative)
        except (SyntaxError, ValueError):
            return None

    @property
    def parsed(self) -> bool:
        """Whether :attr:`tree` was asked for (the scan then knows the module parses)."""
        return "tree" in self.__dict__

    @functools.cached_property
    def module_name(self) -> str:
        """The dotted module name of the path: ``mysite/tasks.py`` → ``mysite.tasks``."""
        parts = list(Path(self.relative).with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    def suppressed(self, line: int, code: str) -> bool:
        if not 1 <= line <= len(self.lines):
            return False
        match = SUPPRESS.search(self.lines[line - 1])
        if match is None:
            return False
        codes = match["codes"]
        return codes is None or code in {c.strip() for c in codes.split(",")}


@dataclasses.dataclass(frozen=True)
class RawFile:
    """A file as read: its bytes, not yet decoded or parsed (what a worker process is given)."""

    path: str
    """Where it was found (a symlink's own place)."""
    relative: str
    data: bytes
    mtime: float = 0.0
    """When it was last modified, as ``stat`` said before it was read."""

    @property
    def is_python(self) -> bool:
        return is_python(os.path.basename(self.path))

    def decode(self) -> SourceFile:
        """The file as text (raises :class:`Skip` when it cannot be decoded)."""
        text = files.decode(self.data, python=self.is_python)
        return SourceFile(Path(self.path), self.relative, text)


@dataclasses.dataclass(frozen=True)
class Collection:
    files: tuple[RawFile, ...]
    """Read, in path order."""
    skipped: tuple[SkippedFile, ...]
    """What could not or must not be read, in the order met."""


@dataclasses.dataclass(frozen=True)
class Discovery:
    files: tuple[SourceFile, ...]
    """Read, decoded and (for Python) known to parse, in path order."""
    skipped: tuple[SkippedFile, ...]
    """Sorted by path."""


def is_python(name: str) -> bool:
    """``Path(name).suffix == ".py"``, without building a Path (asked of every file)."""
    return name.endswith(".py") and name != ".py"


def wanted(name: str, directory: str) -> bool:
    """A Python module or a file that holds project facts (requirements, locks, Procfiles...)."""
    # requirements/base.txt, requirements/production.in (cookiecutter-django, pip-tools)
    pinned = directory == "requirements" and Path(name).suffix in {".txt", ".in"}
    # supervisor/celery.conf, /etc/supervisor.d/web.conf laid out in the repository
    supervised = directory.startswith("supervisor") and name.endswith(".conf")
    return is_python(name) or bool(TEXT_NAMES.match(name)) or pinned or supervised


def discover(
    root: Path,
    paths: Sequence[Path],
    exclude: Iterable[str] = (),
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
) -> Discovery:
    """Every Python or known text file under ``paths``, relative to ``root``, decoded and known
    to parse, and the ones that were skipped. The scan itself decodes and parses in worker
    processes (:func:`collect` only reads)."""
    collection = collect(root, paths, exclude, max_file_size)
    found: list[SourceFile] = []
    skipped = list(collection.skipped)
    for raw in collection.files:
        try:
            source = raw.decode()
            if source.is_python:
                files.require_parse(source.text, source.relative)
        except Skip as skip:
            skipped.append(SkippedFile(raw.relative, skip.reason, skip.detail))
            continue
        found.append(source)
    return Discovery(tuple(found), tuple(sorted(set(skipped))))


def collect(
    root: Path,
    paths: Sequence[Path],
    exclude: Iterable[str] = (),
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
) -> Collection:
    """Every Python or known text file under ``paths``, relative to ``root``, read (each once:
    a file reached twice, by two paths or a symlink to a file in the tree, is read under its
    own path), and the ones that could not or must not be read."""
    reading = Reading(root, paths, exclude, max_file_size)
    found = tuple(reading)
    return Collection(found, tuple(reading.skipped))


class Reading:
    """The files under ``paths``, listed when made and read as they are iterated (in path
    order), so that the scan can parse the first ones while it reads the rest."""

    def __init__(
        self,
        root: Path,
        paths: Sequence[Path],
        exclude: Iterable[str] = (),
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    ) -> None:
        self.reader = _Reader(
            real_root=os.path.realpath(root),
            tree=Tree(tuple(os.path.realpath(p) for p in paths)),
            patterns=tuple(exclude),
            limit=max_file_size,
        )
        self.skipped: list[SkippedFile] = []
        """What could not or must not be read, in the order met (complete once iterated)."""
        self.entries: list[tuple[Entry, Path, str]] = []
        for start in paths:
            real_start = os.path.realpath(start)
            if os.path.isdir(real_start):
                entries: Iterable[Entry] = files.walk(real_start)
            else:  # a file given by name: its own place, even when it is a symlink
                directory = os.path.realpath(os.path.dirname(os.path.abspath(start)))
                place = os.path.join(directory, os.path.basename(start))
                entries = [Entry(place, os.path.islink(place))]
            self.entries += [(e, start, real_start) for e in sorted(entries, key=_path_order)]

    def __len__(self) -> int:
        """About how many files will be read (the names that are wanted)."""
        return sum(1 for e, _, _ in self.entries if _wanted_path(e.path))

    def __iter__(self) -> Iterator[RawFile]:
        for entry, start, real_start in self.entries:
            read = self.reader.read(entry, start, real_start)
            if isinstance(read, RawFile):
                yield read
            elif read is not None:
                self.skipped.append(read)


def _wanted_path(path: str) -> bool:
    return wanted(os.path.basename(path), os.path.basename(os.path.dirname(path)))


@dataclasses.dataclass
class _Reader:
    real_root: str
    tree: Tree
    patterns: tuple[str, ...]
    limit: int
    seen: set[tuple[int, int]] = dataclasses.field(default_factory=set)
    """Device and inode of every file read or skipped: each is reported once."""

    def read(self, entry: Entry, start: Path, real_start: str) -> RawFile | SkippedFile | None:
        """The file, or why it was skipped, or None for a path that is not for the scan."""
        relative = self.shown(entry.path, start, real_start)
        if self.excluded(relative):
            return None
        if entry.skip is not None:
            return SkippedFile(relative, entry.skip.reason, entry.skip.detail)
        name = os.path.basename(entry.path)
        if not wanted(name, os.path.basename(os.path.dirname(entry.path))):
            outside = entry.is_symlink and files.directory_link_outside(entry.path, self.tree)
            return SkippedFile(relative, outside.reason, outside.detail) if outside else None
        try:
            where = entry.path
            if entry.is_symlink:
                where, status = files.follow(entry.path, self.tree)
                relative = self.shown(where, start, real_start)
                if stat.S_ISDIR(status.st_mode) or self.excluded(relative):
                    return None  # an in-tree directory is walked where it is
            else:
                status = os.lstat(where)
            if (status.st_dev, status.st_ino) in self.seen:
                return None
            self.seen.add((status.st_dev, status.st_ino))
            python = is_python(name)
            # Lock files of large projects pass 1 MB, and only regexes read them (PD313's
            # Celery version): the cap is there for what is parsed.
            limit = self.limit if python else max(self.limit, TEXT_LIMIT)
            files.require_regular(status, limit)
            data = files.read_bytes(where, limit)
        except Skip as skip:
            return SkippedFile(relative, skip.reason, skip.detail)
        except OSError as exc:  # removed since the listing
            return SkippedFile(relative, SkipReason.UNREADABLE, str(exc.strerror))
        return RawFile(entry.path, relative, data, status.st_mtime)

    def shown(self, path: str, start: Path, real_start: str) -> str:
        """``path`` relative to the root; outside it, under ``start`` as given."""
        inside = _under(path, self.real_root)
        if inside and os.sep == "/":
            return files.printable(inside)  # a real path's tail: already as Path would write it
        if inside is None:
            inside = (start / (_under(path, real_start) or "")).as_posix()
        return files.printable(Path(inside).as_posix())  # forward slashes on Windows too

    def excluded(self, relative: str) -> bool:
        name = os.path.basename(relative)
        return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p) for p in self.patterns)


def _path_order(entry: Entry) -> list[str]:
    """Sorts as ``Path(entry.path)`` does (by its parts), without building the Path: the walk
    yields real paths, which need no normalising."""
    return os.path.normcase(entry.path).split(os.sep)


def _under(path: str, top: str) -> str | None:
    """``path`` relative to ``top`` (both real), or None when it is not inside."""
    if path == top:
        return ""
    prefix = top.rstrip(os.sep) + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else None
