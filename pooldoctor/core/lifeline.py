"""Nothing pooldoctor starts outlives it, ``kill -9`` included.

pooldoctor keeps the write end of one pipe for as long as it lives and never passes it on; every
process it starts gets the read end (``Popen(pass_fds=...)``, named in ``POOLDOCTOR_LIFELINE``)
and calls :func:`arm` first thing. The kernel closes the write end when pooldoctor dies, however
it dies, so a read that returns end-of-file means exactly that: the child runs its registered
clean-up (bounded) and SIGKILLs its own process group (children are started with
``start_new_session=True``: the group is the child and everything it forked, a Celery worker's
prefork children included).

The temporary directories pooldoctor creates (:func:`temporary_directory`) name their owner (pid
and process start time, so that a reused pid is not taken for it). A janitor process, holding the
same pipe, removes its owner's directories when the pipe ends, after stopping what still runs in
them (the embedded PostgreSQL, which its own tools start detached) and running the directory's
removal hook (:func:`on_removal`: deleting a broker queue once the worker that could declare it
again is gone). :func:`reap_stale` does the same for directories whose owner is dead, should even
the janitor have been killed.

``python -m pooldoctor.core.lifeline janitor PID START TMPDIR`` is the janitor; this module
imports nothing but the standard library, so it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ENV = "POOLDOCTOR_LIFELINE"
OWNER_FILE = ".pooldoctor-owner"
HOOK_FILE = ".pooldoctor-on-removal"
HOOK_LIMIT = 15.0
"""How long a removal hook may take (an interpreter start, Celery's import, a broker's reply)."""
PREFIX = "pooldoctor-"
CLEANUP_LIMIT = 3.0
"""How long a dying child's clean-up may take (deleting its broker queue) before the kill."""
GRACE = CLEANUP_LIMIT + 2.0
"""How long the janitor lets armed processes end themselves (after their clean-up)."""
POLL = 0.05

_lock = threading.Lock()
_pipe: tuple[int, int, int] | None = None
"""(pid that made it, read end, write end): a forked child must not use its parent's."""
_janitors: dict[Path, subprocess.Popen[bytes]] = {}
"""This process's janitor for each temp dir it made directories in (TMPDIR may change)."""
_janitors_pid = 0


def _forget_after_fork() -> None:
    # A child forked without exec (multiprocessing, a project's own fork) gets a copy of every fd:
    # holding the write end, it would keep the pipe open after pooldoctor's death.
    global _pipe, _janitors, _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    if _pipe is not None:
        for fd in _pipe[1:]:
            with contextlib.suppress(OSError):
                os.close(fd)
    _pipe, _janitors = None, {}


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_after_fork)


def _ends() -> tuple[int, int]:
    global _pipe
    with _lock:
        if _pipe is None or _pipe[0] != os.getpid():
            read, write = os.pipe()  # both non-inheritable: exec'd children never get either
            _pipe = (os.getpid(), read, write)
        return _pipe[1], _pipe[2]


def popen_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``Popen`` keyword arguments that hand the child the read end: ``pass_fds`` and ``env``
    (``env``, or this process's environment, plus the variable naming the fd)."""
    read, _ = _ends()
    return {"pass_fds": (read,), "env": {**(os.environ if env is None else env), ENV: str(read)}}


def _inherited() -> int | None:
    value = os.environ.pop(ENV, None)  # the child's own children are not handed it this way
    if value is None or not value.isdigit():
        return None
    fd = int(value)
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
    except OSError:
        return None
    os.set_inheritable(fd, False)
    return fd


def arm(on_death: Callable[[], object] | None = None) -> bool:
    """In a child pooldoctor started: end this process's group when pooldoctor ends, after
    ``on_death`` (given at most :data:`CLEANUP_LIMIT` seconds). False when not started so."""
    fd = _inherited()
    if fd is None:
        return False
    if on_death is None:
        _parent_death_signal()  # it would kill this process before its clean-up could run
    _start_thread(lambda: _watch(fd, on_death))
    return True


def _parent_death_signal() -> None:
    # Linux only, and only a shortcut: PR_SET_PDEATHSIG fires when the *thread* that started this
    # process ends, not the process (pooldoctor starts children from short-lived pool threads
    # only when it also ends them before the thread does). The pipe is the guarantee.
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _start_thread(target: Callable[[], None]) -> None:
    # Celery's gevent pool monkey-patches threading before the worker module is imported: a green
    # thread blocked in os.read would block every greenlet. Take a real one.
    start = None
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        start = monkey.get_original("_thread", "start_new_thread")
    if start is not None:
        start(target, ())
    else:
        threading.Thread(target=target, name="pooldoctor-lifeline", daemon=True).start()


def _watch(fd: int, on_death: Callable[[], object] | None) -> None:
    try:
        while os.read(fd, 1):
            pass  # nobody writes: only end-of-file comes
    except OSError:
        pass  # closed under us: treat as the end too
    if on_death is not None:
        done = threading.Event()

        def run() -> None:
            with contextlib.suppress(BaseException):
                on_death()
            done.set()

        _start_thread(run)
        done.wait(CLEANUP_LIMIT)
    pid = os.getpid()
    # Only a group leader kills its group: a process not started in a session of its own shares
    # its group with someone else's processes.
    if os.getpgrp() == pid:
        os.killpg(pid, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)


def wait_for_eof(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 1):
            pass


# ---- Temporary directories and their owners ------------------------------------------------


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), or None
    where there is no /proc; with the pid it names one process for the machine's uptime."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[19])


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: the pid is all there is to go by
    return state not in ("Z", "X") and (start is None or start_time(pid) == start)


def temporary_directory(prefix: str) -> Path:
    """``tempfile.mkdtemp`` that records this process as the owner and makes sure a janitor
    removes the directory if this process dies without doing so."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    owner = {"pid": os.getpid(), "start": start_time(os.getpid())}
    (path / OWNER_FILE).write_text(json.dumps(owner))
    _ensure_janitor(path.parent)
    return path


def _ensure_janitor(root: Path) -> None:
    global _janitors_pid
    with _lock:
        if _janitors_pid != os.getpid():
            _janitors.clear()
            _janitors_pid = os.getpid()
        janitor = _janitors.get(root)
        if janitor is not None and janitor.poll() is None:
            return
    pid = os.getpid()
    # Its own session: a Ctrl-C or a kill of pooldoctor's process group does not reach it.
    _janitors[root] = subprocess.Popen(
        [sys.executable, "-m", "pooldoctor.core.lifeline", "janitor", str(pid),
         str(start_time(pid) or ""), str(root)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, **popen_options(),
    )  # fmt: skip


def on_removal(directory: Path, argv: list[str] | None) -> None:
    """Have ``argv`` run when a janitor or a reaper removes ``directory``, once nothing runs in it
    any more: for what the run made outside it. None: no longer needed (the owner did it)."""
    hook = directory / HOOK_FILE
    if argv is None:
        hook.unlink(missing_ok=True)
    else:
        hook.write_text(json.dumps(argv))


def _run_hook(directory: Path) -> None:
    try:
        argv = json.loads((directory / HOOK_FILE).read_text())
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=HOOK_LIMIT, check=False)  # fmt: skip


def _owner(directory: Path) -> tuple[int, int | None] | None:
    try:
        found = json.loads((directory / OWNER_FILE).read_text())
        return int(found["pid"]), found.get("start")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def owned(root: Path | None = None) -> Iterator[tuple[Path, int, int | None]]:
    """pooldoctor's directories in ``root`` (the temp dir) that name their owner, this user's."""
    base = Path(root or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for path in base.glob(PREFIX + "*"):
            owner = _owner(path)
            with contextlib.suppress(OSError):
                if owner is not None and path.lstat().st_uid == os.getuid():
                    yield path, owner[0], owner[1]


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + os.sep)


def processes_of(directory: Path) -> dict[int, bool]:
    """Processes that belong to ``directory``, and whether each is armed (ends itself): a
    PostgreSQL server's (the postmaster its postmaster.pid names, and any PostgreSQL program
    working in it: a server lives in its data directory) and pooldoctor's own children given a
    TMPDIR in it (Celery workers). Nobody else's: a shell ``cd``'d there is left alone."""
    where = os.path.realpath(directory)
    found: dict[int, bool] = {}
    for pidfile in Path(where).glob("**/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().split()[0])
            if _command(pid) in (None, "postgres"):
                found[pid] = False
    if Path("/proc/self").is_dir():
        for pid in _pids():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            armed = any(e.startswith(ENV.encode() + b"=") for e in environ)
            tmpdir = next((e[7:].decode(errors="replace") for e in environ
                           if e.startswith(b"TMPDIR=")), "")  # fmt: skip
            if armed and tmpdir and _inside(os.path.realpath(tmpdir), where):
                found[pid] = True
            elif _inside(cwd, where) and (armed or _command(pid) in POSTGRES_PROGRAMS):
                found[pid] = armed
    return {pid: armed for pid, armed in found.items() if _alive(pid, None)}


POSTGRES_PROGRAMS = ("postgres", "initdb", "pg_ctl")


def _pids() -> list[int]:
    me = os.getpid()
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != me]


def _command(pid: int) -> str | None:
    """The program's name (/proc/PID/comm: a server's processes keep ``postgres`` whatever
    their title), or None where that cannot be known."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None if not Path("/proc/self").is_dir() else ""


def remove(directory: Path, grace: float = 0.0) -> bool:
    """Stop what runs in ``directory`` and delete it. Armed processes get ``grace`` seconds to
    end themselves (their clean-up first); the others (a server) are killed at once. Returns
    whether a process had to be stopped."""
    stopped = False
    deadline = time.monotonic() + grace
    for attempt in range(3):
        while True:
            running = processes_of(directory)
            unarmed = [pid for pid, armed in running.items() if not armed]
            late = time.monotonic() >= deadline
            victims = list(running) if late else unarmed
            for pid in victims:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            stopped = stopped or bool(victims)
            if not running:
                break
            time.sleep(POLL)
            if late and time.monotonic() > deadline + 5:
                break  # unkillable (D state): remove what can be
        if attempt == 0:
            _run_hook(directory)
        shutil.rmtree(directory, ignore_errors=True)
        if not directory.exists():
            break
        time.sleep(POLL * (attempt + 1))  # something still wrote in it: once more
    return stopped


def reap(root: Path | None = None, owner: tuple[int, int | None] | None = None,
         grace: float = 0.0) -> list[tuple[Path, bool]]:  # fmt: skip
    """Remove pooldoctor's directories whose owner is dead (or, with ``owner``, that owner's):
    each directory and whether a process in it had to be stopped."""
    removed = []
    for path, pid, start in owned(root):
        if owner is not None and (pid, start) != owner:
            continue
        if owner is None and _alive(pid, start):
            continue
        removed.append((path, remove(path, grace)))
    return removed


def reap_stale(stream: Any = None) -> list[Path]:
    """At a command's start: remove what runs killed before their clean-up left behind, saying
    so in one line on stderr."""
    removed = reap()
    if removed:
        what = ", ".join(f"{p}{' (stopped what ran in it)' if s else ''}" for p, s in removed)
        print(f"pooldoctor: removed what killed runs left behind: {what}",
              file=stream or sys.stderr)  # fmt: skip
    return [p for p, _ in removed]


def _janitor_main(argv: list[str]) -> int:
    pid, start, root = int(argv[0]), int(argv[1]) if argv[1] else None, Path(argv[2])
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    fd = _inherited()
    if fd is None:
        return 2
    wait_for_eof(fd)
    reap(root, (pid, start), grace=GRACE)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["janitor"]:
        raise SystemExit(_janitor_main(sys.argv[2:]))
    raise SystemExit("usage: python -m pooldoctor.core.lifeline janitor PID START TMPDIR")
