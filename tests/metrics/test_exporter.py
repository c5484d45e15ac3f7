"""The exporter without a worker: snapshot files written by hand, scraped over HTTP, written to a
text file, registered in a project's own registry (multiprocess mode included)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from inspection.replies import SITE, process
from prometheus_client.parser import text_string_to_metric_families

from pooldoctor.hosts import live as pooldoctor_live
from pooldoctor.hosts.celery import install as pooldoctor_celery
from pooldoctor.hosts.celery.metrics import Exporter


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pooldoctor_celery.Installation:
    """A prefork node's main process whose children (this test's process, and a dead one) wrote
    their snapshots."""
    monkeypatch.setattr(pooldoctor_live.tempfile, "gettempdir", lambda: str(tmp_path))
    found = pooldoctor_celery.Installation("default", tracking=True)
    found.hostname, found.pool_kind, found.main_pid = "w@h", "prefork", -1
    directory = pooldoctor_celery.node_directory("w@h")
    directory.mkdir(parents=True)
    live = process(os.getpid(), lost=3, sites=[SITE])
    live["updated"] = live["started"] = 0.0
    (directory / f"{os.getpid()}.json").write_text(json.dumps(live))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (directory / f"{dead.stdout.strip()}.json").write_text(json.dumps(process(1, lost=9)))
    return found


def lost_by_pid(text: str) -> dict[str, float]:
    """``pid -> lost connections`` (all sites), read by prometheus-client's text parser."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "pooldoctor_lost_connections_total":
                out[s.labels["pid"]] = out.get(s.labels["pid"], 0) + s.value
    return out


def test_a_scrape_reads_the_live_childrens_snapshots(node: pooldoctor_celery.Installation) -> None:
    from prometheus_client import generate_latest

    exporter = Exporter(node, port=None)
    text = generate_latest(exporter.registry()).decode()
    assert lost_by_pid(text) == {str(os.getpid()): 3}
    assert 'site="mysite/celeryapp.py:14"' in text
    # the dead child's file is gone, as the census command removes it
    assert [p.name for p in pooldoctor_celery.node_directory("w@h").iterdir()] == [
        f"{os.getpid()}.json"
    ]


def test_the_metrics_are_served_on_the_port_and_the_port_is_freed_at_shutdown(
    node: pooldoctor_celery.Installation,
) -> None:
    exporter = Exporter(node, port=0, addr="127.0.0.1")  # 0: any free port
    exporter.start(worker=None)
    assert exporter.url is not None and exporter.url.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(exporter.url, timeout=10) as response:
            text = response.read().decode()
        assert lost_by_pid(text) == {str(os.getpid()): 3}
    finally:
        exporter.stop()
    port = int(exporter.url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:  # nobody listens any more (TIME_WAIT is bound over, as servers do)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_port_in_use_is_one_warning_and_the_worker_runs_on(
    node: pooldoctor_celery.Installation, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        exporter = Exporter(node, port=taken.getsockname()[1], addr="127.0.0.1")
        with caplog.at_level(logging.INFO):
            exporter.start(worker=None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot serve metrics on 127.0.0.1:" in warnings[0]
    assert "the worker runs on without them" in warnings[0]
    assert exporter.url is None
    exporter.stop()  # nothing to stop: no error


def test_the_text_file_is_the_whole_node_and_goes_at_shutdown(
    node: pooldoctor_celery.Installation, tmp_path: Path
) -> None:
    path = tmp_path / "textfile" / "pooldoctor.prom"
    path.parent.mkdir()
    exporter = Exporter(node, port=None, textfile=path)
    assert exporter.write_textfile()
    assert lost_by_pid(path.read_text()) == {str(os.getpid()): 3}
    assert sorted(p.name for p in path.parent.iterdir()) == ["pooldoctor.prom"]  # no temp left
    exporter.stop()
    assert not path.exists()


def test_the_main_process_rewrites_the_text_file_when_a_child_writes_its_snapshot(
    node: pooldoctor_celery.Installation, tmp_path: Path
) -> None:
    # GIVEN a worker that keeps a text file
    path = tmp_path / "pooldoctor.prom"
    directory = pooldoctor_celery.node_directory("w@h")
    exporter = Exporter(node, port=None, textfile=path)
    exporter.start(worker=None, directory=directory)
    try:
        assert wait_for_lost(path, 3)
        # WHEN a child writes a new snapshot (whole, then renamed, as children do)
        later = process(os.getpid(), lost=5, sites=[SITE])
        tmp = directory / f".{os.getpid()}.tmp"
        tmp.write_text(json.dumps(later))
        os.replace(tmp, directory / f"{os.getpid()}.json")
        # THEN the file follows
        assert wait_for_lost(path, 5)
    finally:
        exporter.stop()
    assert not path.exists()


def wait_for_lost(path: Path, lost: int, within: float = 10.0) -> bool:
    """Whether the text file says ``lost`` for this process within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and lost_by_pid(path.read_text()) == {str(os.getpid()): lost}:
            return True
        time.sleep(0.02)
    return False


def test_a_text_file_that_cannot_be_written_is_said_once(
    node: pooldoctor_celery.Installation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = Exporter(node, port=None, textfile=tmp_path / "missing" / "pooldoctor.prom")
    exporter.start(worker=None, directory=pooldoctor_celery.node_directory("w@h"))
    assert exporter._writer is not None
    exporter._writer.join(timeout=10)  # it gives up after the first failure
    assert not exporter._writer.is_alive()
    warnings = [r for r in caplog.records if "cannot write the worker's metrics" in r.getMessage()]
    assert len(warnings) == 1
    assert "the worker runs on without them" in warnings[0].getMessage()
    exporter.stop()


def test_install_rejects_nothing_and_starts_nothing_outside_a_worker() -> None:
    # A web process imports the Celery module too: metrics options there only check the extra
    code = (
        "import sys, threading; from celery import Celery; import pooldoctor.celery as p\n"
        "p.install(Celery('web'), metrics_port=1, metrics_textfile='/nonexistent/x.prom')\n"
        "print(threading.active_count(), 'prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1 False"


def test_the_collector_joins_a_projects_registry_in_multiprocess_mode(tmp_path: Path) -> None:
    # GIVEN a project whose worker already serves prometheus-client's multiprocess registry
    script = tmp_path / "project.py"
    script.write_text(
        textwrap.dedent(f"""\
        import json, os, tempfile
        tempfile.tempdir = {str(tmp_path)!r}
        from celery import Celery
        import pooldoctor.celery
        from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess
        from pooldoctor.hosts.celery import install

        app = Celery("project")
        pooldoctor.celery.install(app)
        found = install._INSTALLED[id(app)]
        found.hostname, found.pool_kind, found.main_pid = "w@h", "prefork", -1
        directory = install.node_directory("w@h")
        directory.mkdir(parents=True)
        (directory / f"{{os.getpid()}}.json").write_text(json.dumps({process(0, lost=2)!r}
            | {{"pid": os.getpid()}}))
        Counter("project_jobs", "The project's own counter").inc()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        # WHEN it registers pooldoctor's collector in that registry
        registry.register(pooldoctor.celery.metrics_collector(app))
        print(generate_latest(registry).decode())
    """)
    )
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    # THEN the same scrape has the project's series and pooldoctor's
    names = {s.name for f in text_string_to_metric_families(out.stdout) for s in f.samples}
    assert "project_jobs_total" in names
    assert sum(lost_by_pid(out.stdout).values()) == 2
    assert list(multiproc.iterdir())  # the project's counter really is in multiprocess mode


def test_metrics_collector_needs_install_first() -> None:
    from celery import Celery

    import pooldoctor.celery

    with pytest.raises(LookupError, match=r"install\(app\) before"):
        pooldoctor.celery.metrics_collector(Celery("never-installed", set_as_current=False))
