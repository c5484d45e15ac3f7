"""``inspect --runner NAME`` without remote control: the nodes of a runner on this machine, read
from the files their processes write (``pooldoctor.hosts.live``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inspection.replies import SITE, process
from pooldoctor.hosts import live, runner_host


def _node(root: Path, name: str, runner: str, pid: int, *, forks: bool) -> Path:
    directory = root / live.ROOT_NAME / name
    directory.mkdir(parents=True)
    node = {"runner": runner, "hostname": name, "pid": pid, "pool": "fork", "concurrency": 1,
            "alias": "default", "tracking": True, "forks": forks, "started": 0.0}  # fmt: skip
    (directory / live.NODE_FILE).write_text(json.dumps(node))
    return directory


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(live.tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path


def test_a_live_node_answers_with_its_live_processes_files(root: Path) -> None:
    # GIVEN an RQ node whose main process is alive (this one) and whose forked horse (a child of
    # this test, alive) wrote its snapshot, beside the file of a horse that is gone
    horse = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        directory = _node(root, "rq-node@host", "rq", os.getpid(), forks=True)
        (directory / f"{horse.pid}.json").write_text(json.dumps(process(horse.pid, lost=2,
                                                                        sites=[SITE])))  # fmt: skip
        (directory / f"{dead.pid}.json").write_text(json.dumps(process(dead.pid, lost=9)))
        # WHEN inspect reads the RQ nodes
        replies = live.read_nodes("rq")
    finally:
        horse.kill()
        horse.wait()
    # THEN the node answers as a Celery node would, with the live horse's census only
    assert list(replies) == ["rq-node@host"]
    reply = replies["rq-node@host"]
    assert reply["runner"] == "rq" and reply["pid"] == os.getpid()
    assert [(p["pid"], p["lost"]) for p in reply["processes"]] == [(horse.pid, 2)]
    assert not (directory / f"{dead.pid}.json").exists()  # a dead horse's file is removed


def test_a_node_of_another_runner_or_a_killed_one_is_not_read(root: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _node(root, "huey@host", "huey", os.getpid(), forks=False)
    gone = _node(root, "gone@host", "rq", dead.pid, forks=True)
    (gone / f"{dead.pid}.json").write_text(json.dumps(process(dead.pid, lost=1)))
    assert live.read_nodes("rq") == {}
    assert not gone.exists()  # a node killed with kill -9: its files go with it
    assert list(live.read_nodes("huey")) == ["huey@host"]
    assert live.read_nodes("huey", ("other@host",)) == {}


def test_a_node_that_runs_tasks_in_its_main_process_reads_its_own_file(root: Path) -> None:
    # GIVEN a thread worker: the main process runs the tasks and writes its own snapshot
    directory = _node(root, "threads@host", "dramatiq", os.getpid(), forks=False)
    (directory / f"{os.getpid()}.json").write_text(json.dumps(process(os.getpid(), lost=1)))
    # THEN that snapshot is the node's process
    reply = live.read_nodes("dramatiq")["threads@host"]
    assert [(p["pid"], p["lost"]) for p in reply["processes"]] == [(os.getpid(), 1)]


def test_the_runner_host_asks_the_files(root: Path) -> None:
    _node(root, "rq-node@host", "rq", os.getpid(), forks=True)
    answers = runner_host("rq").ask(None, 1.0)
    assert answers.pinged == ("rq-node@host",)
    assert "snapshot files" in answers.broker and str(root) in answers.broker
