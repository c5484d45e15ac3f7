"""The census as metric families, on hand-built processes and replies: rendered in the OpenMetrics
text format and read back with prometheus-client's own parser."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

from inspection.replies import CLEAN, LEAKY, NOT_INSTALLED, NOW, process, reply, rows, session
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from pooldoctor.core.model import InspectReport, LeakKind, LeakSite, PoolStats, ProcessResult
from pooldoctor.core.model import Verdict as V
from pooldoctor.core.verdict.live import judge
from pooldoctor.reporters import openmetrics

POOL = PoolStats(min_size=0, max_size=4, size=3, available=1, waiting=2,
                 connections_opened=5, timeout=2.0)  # fmt: skip


def parse(text: str) -> dict[str, Any]:
    """``family name -> Metric``, read by prometheus-client's OpenMetrics parser (which refuses
    anything the format does not allow)."""
    return {m.name: m for m in text_string_to_metric_families(text)}


def values(metric: Any, *label_names: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels[n] for n in label_names): s.value
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def site(file: str | None, line: int | None, count: int, kind: LeakKind = LeakKind.LOST
         ) -> LeakSite:  # fmt: skip
    return LeakSite(kind=kind, file=file, line=line, function="run", thread="executor",
                    count=count, reason="thread ended")  # fmt: skip


def fleet_report() -> InspectReport:
    replies = {"leaky@host1": LEAKY, "clean@host2": CLEAN, "plain@host4": NOT_INSTALLED}
    return judge(replies, tuple(replies), (), rows(session(9001), session(9002)),
                 received_at=NOW, broker="redis://127.0.0.1:6379/0", timeout=2.0,
                 environment={}, seconds=1.0)  # fmt: skip


def test_the_fleet_renders_as_openmetrics_that_prometheus_client_parses() -> None:
    # GIVEN a leaking node, a clean one, and one without pooldoctor
    text = openmetrics.render(fleet_report())
    # THEN the text is OpenMetrics (ends with # EOF) and parses back family by family
    assert text.endswith("# EOF\n")
    metrics = parse(text)
    assert set(metrics) == {spec.name for spec in openmetrics.SPECS}
    lost = metrics["pooldoctor_lost_connections"]
    assert lost.type == "counter"
    assert values(lost, "node", "pid", "alias", "site") == {
        ("leaky@host1", "4243", "default", "mysite/celeryapp.py:14"): 3.0,
        ("leaky@host1", "4243", "default", "unknown"): 0.0,
        ("clean@host2", "5243", "default", "unknown"): 0.0,
    }
    assert values(metrics["pooldoctor_tasks"], "node", "outcome") == {
        ("leaky@host1", "ok"): 10.0, ("leaky@host1", "failed"): 0.0,
        ("clean@host2", "ok"): 10.0, ("clean@host2", "failed"): 0.0,
    }  # fmt: skip
    assert values(metrics["pooldoctor_checkouts"], "pid") == {("4243",): 10.0, ("5243",): 10.0}
    assert values(metrics["pooldoctor_returns"], "pid") == {("4243",): 7.0, ("5243",): 10.0}
    assert values(metrics["pooldoctor_connections_opened"], "pid") == {
        ("4243",): 4.0, ("5243",): 1.0,
    }  # fmt: skip
    assert values(metrics["pooldoctor_pool_max_size"], "pid") == {("4243",): 4.0, ("5243",): 4.0}
    assert values(metrics["pooldoctor_snapshot_age_seconds"], "pid") == {
        ("4243",): 2.0, ("5243",): 2.0,
    }  # fmt: skip
    # AND counters are counters, gauges gauges, every family with its help text
    for spec in openmetrics.SPECS:
        assert metrics[spec.name].type == spec.kind.value
        assert metrics[spec.name].documentation == spec.help
    # AND the node that could not be inspected has no series
    assert "plain@host4" not in text


def test_each_process_number_lands_in_its_own_family() -> None:
    p = ProcessResult(pid=7, verdict=V.PINNED, summary="", tasks=12, failed_tasks=3,
                      lost_slots=0, held_connections=2, connections_opened=6,
                      adopted_connections=1, checkouts=20, returns=18, pool=POOL,
                      updated_seconds_ago=1.5)  # fmt: skip
    registry_text = render_families([p], node="w@h", alias="replica")
    metrics = parse(registry_text)

    def one(name: str) -> float:
        (value,) = values(metrics[name], "node", "pid", "alias").values()
        return value

    assert values(metrics["pooldoctor_tasks"], "outcome") == {("ok",): 9.0, ("failed",): 3.0}
    assert (one("pooldoctor_held_connections"), one("pooldoctor_inherited_connections")) == (2, 1)
    assert [one(f"pooldoctor_pool_{n}") for n in ("size", "available", "waiting", "max_size")] == [
        3, 1, 2, 4,
    ]  # fmt: skip
    assert (one("pooldoctor_checkouts"), one("pooldoctor_returns")) == (20, 18)
    assert one("pooldoctor_snapshot_age_seconds") == 1.5
    assert {s.labels["alias"] for m in metrics.values() for s in m.samples} == {"replica"}


def render_families(processes: list[ProcessResult], **kwargs: Any) -> str:
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest

    class Collector:
        def collect(self) -> Any:
            return openmetrics.families(processes, **kwargs)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry).decode()


def test_the_site_label_is_bounded_and_the_sites_add_up_to_the_lost_slots() -> None:
    # GIVEN a process that lost 60 connections at 9 sites, one without a project frame, and 5
    # that no site explains (counted before tracking, say)
    sites = tuple(site(f"app/t{n}.py", 10 + n, 10 - n) for n in range(8))  # 10, 9, ..., 3
    sites += (site(None, None, 3), site("app/held.py", 1, 4, LeakKind.PINNED))
    lost = sum(s.count for s in sites if s.kind is LeakKind.LOST) + 5
    p = ProcessResult(pid=1, verdict=V.LEAK, summary="", lost_slots=lost, leak_sites=sites)
    # WHEN it is exported with the default bound
    by_site = values(parse(render_families([p], node="n", alias="default"))[
        "pooldoctor_lost_connections"], "site")  # fmt: skip
    # THEN the most frequent sites are named, the rest is 'other', the unexplained 'unknown'
    assert by_site == {
        ("app/t0.py:10",): 10, ("app/t1.py:11",): 9, ("app/t2.py:12",): 8, ("app/t3.py:13",): 7,
        ("app/t4.py:14",): 6, ("other",): 5 + 4 + 3, ("unknown",): 3 + 5,
    }  # fmt: skip
    assert len(by_site) == openmetrics.SITES + 2
    assert sum(by_site.values()) == p.lost_slots
    # AND a pinned site is not a loss
    assert not any("held.py" in s for (s,) in by_site)


def test_sites_never_add_up_to_more_than_the_lost_slots() -> None:
    # A process's counter never exceeds its own lost count, whatever the sites say
    p = ProcessResult(pid=1, verdict=V.LEAK, summary="", lost_slots=4,
                      leak_sites=(site("a.py", 1, 3), site("b.py", 2, 3)))  # fmt: skip
    assert openmetrics.lost_by_site(p) == {"a.py:1": 3, "b.py:2": 1}
    assert openmetrics.lost_by_site(p, sites=1) == {"a.py:1": 3, "other": 1}


def test_a_process_without_a_pool_has_no_pool_gauges() -> None:
    p = ProcessResult(pid=3, verdict=V.CLEAN, summary="", tasks=2, checkouts=2, returns=2)
    metrics = parse(render_families([p], node="n", alias="default"))
    for n in ("size", "available", "waiting", "max_size"):
        assert metrics[f"pooldoctor_pool_{n}"].samples == []
    assert values(metrics["pooldoctor_lost_connections"], "site") == {("unknown",): 0}


def test_the_main_process_of_a_solo_worker_is_one_series_like_a_child() -> None:
    solo = reply("solo@h", process(99, main=True, tasks=3), pool="solo")
    report = judge({"solo@h": solo}, ("solo@h",), (), rows(), received_at=NOW,
                   broker="b", timeout=1.0, environment={}, seconds=0.1)  # fmt: skip
    metrics = parse(openmetrics.render(report))
    assert values(metrics["pooldoctor_tasks"], "node", "pid", "outcome")[
        ("solo@h", "99", "ok")] == 3  # fmt: skip


def test_an_empty_fleet_still_renders_every_family() -> None:
    report = dataclasses.replace(fleet_report(), nodes=())
    metrics = parse(openmetrics.render(report))
    assert set(metrics) == {spec.name for spec in openmetrics.SPECS}
    assert all(m.samples == [] for m in metrics.values())


def test_sample_names_are_the_ones_a_scrape_shows() -> None:
    text = openmetrics.render(fleet_report())
    shown = {s.name for m in parse(text).values() for s in m.samples}
    assert shown <= openmetrics.sample_names()
    assert "pooldoctor_lost_connections_total" in openmetrics.sample_names()
    assert "pooldoctor_held_connections" in openmetrics.sample_names()


def test_pooldoctor_imports_without_prometheus_client_and_says_which_extra() -> None:
    # GIVEN an interpreter where prometheus_client cannot be imported
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import pooldoctor.celery, pooldoctor.reporters.openmetrics, "
        "pooldoctor.hosts.celery.metrics\n"
        "from celery import Celery\n"
        "pooldoctor.celery.install(Celery('plain'))\n"
        "try:\n"
        "    pooldoctor.celery.install(Celery('metrics'), metrics_port=9808)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # THEN the modules import, install() without metrics works, and with them it names the extra
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "MissingExtraError pooldoctor's metrics needs prometheus_client, which is not installed "
        "(pip install 'pooldoctor[metrics]')"
    )
