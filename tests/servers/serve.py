"""Running ``pooldoctor simulate --server`` for real, and watching the processes it starts.

Every run goes through the real CLI with a marker in its environment, which the server it starts
inherits (gunicorn's forked workers, uvicorn's spawned ones, daphne): while the run goes on, the
server's processes carrying the marker are recorded; after it, whatever carries the marker and is
still alive (after a bounded wait) is what the run left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conftest import PROJECTS, pooldoctor

WEBPROJ = PROJECTS / "webproj"
MARKER = "POOLDOCTOR_SERVER_TEST"
SERVER_MODULE = "pooldoctor.hosts.servers"
POLL = 0.05
SETTLE = 10.0


@dataclasses.dataclass(frozen=True)
class Served:
    """One finished ``pooldoctor simulate --server`` run."""

    code: int
    stdout: str
    stderr: str
    server_seen: frozenset[int]
    """The server's processes (master and workers) seen while the run went on."""
    left: dict[int, str]
    """Processes of the run still alive once the run was over (pid -> command line)."""
    seconds: float = 0.0

    @property
    def report(self) -> dict[str, Any]:
        assert self.stdout.startswith("{"), f"no report (exit {self.code}); {self.stderr}"
        return dict(json.loads(self.stdout))

    def result(self, subject: str) -> dict[str, Any]:
        results = {r["subject"]: r for r in self.report["results"]}
        assert subject in results, f"{subject} not in {sorted(results)}"
        return results[subject]

    def codes(self) -> set[str]:
        return {f["code"] for f in self.report["findings"]}

    def __str__(self) -> str:
        if not self.stdout.startswith("{"):
            return f"exit {self.code}; stderr: {self.stderr}"
        report = self.report
        lines = [f"exit {self.code}: {report['verdict']}: {report['headline']}"]
        lines += [f"  {r['subject']}: {r['verdict']}: {r['summary']} (stop: {r['stop_detail']})"
                  for r in report["results"]]  # fmt: skip
        return "\n".join(lines)


def processes(marker: str) -> dict[int, str]:
    """Live processes carrying the marker: pid -> command line."""
    entry = f"{MARKER}={marker}".encode()
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if entry not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                continue
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state not in ("Z", "X"):
            found[pid] = cmdline.strip()
    return found


def server_processes(marker: str) -> set[int]:
    """The server's processes: the master pooldoctor started (``-m pooldoctor.hosts.servers``),
    the workers it forked (same command line) and those uvicorn spawned (multiprocessing)."""
    return {pid for pid, cmd in processes(marker).items()
            if SERVER_MODULE in cmd or "multiprocessing" in cmd}  # fmt: skip


def serve(database_url: str, *args: str, env: dict[str, str] | None = None,
          cwd: Path = WEBPROJ) -> Served:  # fmt: skip
    marker = uuid.uuid4().hex
    seen: set[int] = set()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(
            pooldoctor, "simulate", *args, "--database", database_url, "--format", "json",
            cwd=cwd, env={**(env or {}), MARKER: marker}, timeout=240,
        )  # fmt: skip
        while not future.done():
            seen |= server_processes(marker)
            time.sleep(POLL)
        proc = future.result()
    seconds = time.monotonic() - started
    left = settle(lambda: processes(marker))
    return Served(proc.returncode, proc.stdout, proc.stderr, frozenset(seen), left, seconds)


def settle(left: Callable[[], dict[int, str]]) -> dict[int, str]:
    """What is still there once it had SETTLE seconds to go away."""
    deadline = time.monotonic() + SETTLE
    remaining = left()
    while remaining and time.monotonic() < deadline:
        time.sleep(POLL)
        remaining = left()
    return remaining
