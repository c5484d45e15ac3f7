"""GIVEN a bad --app or a broker that is down, WHEN ``pooldoctor inspect`` runs (a real
subprocess), THEN one line says what is wrong with a tip, within seconds, with the documented
exit code, no traceback and no password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PASSWORD = "s3cret-broker-pw"
APP = f"""
from celery import Celery

app = Celery("unreach", broker="redis://:{PASSWORD}@127.0.0.1:1/0")
amqp = Celery("unreach", broker="amqp://guest:{PASSWORD}@127.0.0.1:1//")
not_an_app = 42
"""


def run(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run([sys.executable, "-m", "pooldoctor", "inspect", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "unreach.py").write_text(APP)
    return tmp_path


@pytest.mark.parametrize(
    ("app", "code", "message"),
    [
        ("nosuch:app", 3, "--app nosuch:app: cannot import module 'nosuch'"),
        ("unreach:nope", 3, "--app unreach:nope: 'unreach' has no attribute 'nope'"),
        ("unreach:not_an_app", 3, "--app unreach:not_an_app is a int, not a Celery app"),
        ("unreach", 2, "--app 'unreach' is not MODULE:ATTR"),
    ],
)
def test_bad_app(project: Path, app: str, code: int, message: str) -> None:
    proc = run("--app", app, cwd=project)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"pooldoctor: error: {message}")
    assert "(" in line and "Traceback" not in proc.stderr


def test_missing_settings_module(project: Path) -> None:
    proc = run("--app", "unreach:app", "--settings", "nosuch.settings", cwd=project)
    assert proc.returncode == 3
    assert "settings module 'nosuch.settings' not found" in proc.stderr


@pytest.mark.parametrize("app", ["unreach:app", "unreach:amqp"])
def test_unreachable_broker_is_a_clear_error_within_the_timeout(project: Path, app: str) -> None:
    started = time.monotonic()
    proc = run("--app", app, "--timeout", "1", cwd=project)
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("pooldoctor: error: cannot reach the app's broker ")
    assert ":***@127.0.0.1:1/" in line
    assert "start the broker, or fix the app's broker_url" in line
    assert PASSWORD not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s"


def test_debug_shows_the_traceback_still_without_the_password(project: Path) -> None:
    proc = run("--app", "unreach:app", "--timeout", "1", "--debug", cwd=project)
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("pooldoctor: error: cannot reach")
