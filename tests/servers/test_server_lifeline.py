"""Nothing of a server run outlives pooldoctor, ``kill -9`` included: the server's master holds
pooldoctor's lifeline and kills its whole group (every worker it forked or spawned) when the pipe
ends; the janitor removes the run's directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import pooldoctor_backends

from .serve import MARKER, WEBPROJ, processes, server_processes, settle

GONE_WITHIN = 10.0
START_WITHIN = 60.0


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pdst-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_kill_9_of_pooldoctor_mid_load_leaves_nothing(server: str, srv_database_url: str,
                                                      tmp: Path) -> None:  # fmt: skip
    marker = uuid.uuid4().hex
    env = {**os.environ, "TMPDIR": str(tmp), MARKER: marker}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # GIVEN pooldoctor feeding a real server with 2 workers far more requests than it will live for
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldoctor", "simulate", "--settings", "webproj.settings",
         "--server", server, "--workers", "2", "--requests", "100000",
         "--database", srv_database_url],
        cwd=WEBPROJ, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_WITHIN
        # a master and its two workers up, and requests holding sessions on the database
        while len(server_processes(marker)) < 3 or not pooldoctor_backends(
            srv_database_url, this_database=True
        ):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server never came up"
            time.sleep(0.05)
        # WHEN pooldoctor is killed with no chance to clean up
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        # THEN its server, the server's workers, their sessions and the run's directory are gone
        left = settle(lambda: {
            **processes(marker),
            **{-i: s for i, s in enumerate(pooldoctor_backends(srv_database_url,
                                                                this_database=True))},
            **{-1000 - i: p.name for i, p in enumerate(tmp.glob("pooldoctor-*"))},
        })  # fmt: skip
        assert left == {}, f"left behind after kill -9: {left}"
        assert time.monotonic() - killed < GONE_WITHIN
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
