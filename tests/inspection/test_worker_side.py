"""The worker side of ``pooldoctor inspect``, asked directly with
``app.control.broadcast("pooldoctor_census")`` on real workers (Redis and RabbitMQ)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import pooldoctor
from pooldoctor.celery import COMMAND, node_directory

from .inspect_fleet import TASKS, Fleet, settled_census

PROCESS_FIELDS = {
    "pid", "main", "started", "updated", "tasks", "failed_tasks", "pool", "lost", "held",
    "opened", "inherited", "checkouts", "returns", "connections", "leak_sites", "timeline",
}  # fmt: skip


@pytest.fixture(scope="module")
def census(fleet: Fleet) -> dict[str, Any]:
    return settled_census(fleet)


def _children(fleet: Fleet, role: str) -> set[int]:
    """The pids of the prefork children of the node's worker, read from /proc."""
    main = fleet.procs[role].pid
    children = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry.name}/stat").read()  # noqa: SIM115
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == main:
            children.add(int(entry.name))
    return children


def test_GIVEN_installed_nodes_WHEN_asked_THEN_each_replies_with_its_prefork_children(
    fleet: Fleet, census: dict[str, Any]
) -> None:
    for role in ("leaky", "clean"):
        reply = census[fleet.name(role)]
        header = {k: v for k, v in reply.items() if k != "processes"}
        assert header == {
            "schema": 1,
            "pooldoctor": pooldoctor.__version__,
            "hostname": fleet.name(role),
            "pid": fleet.procs[role].pid,
            "pool": "prefork",
            "concurrency": 2,
            "alias": "default",
            "tracking": True,
        }
        processes = reply["processes"]
        assert {p["pid"] for p in processes} == _children(fleet, role)
        assert len(processes) == 2
        for process in processes:
            assert set(process) == PROCESS_FIELDS
            assert process["main"] is False
            assert process["started"] <= process["updated"]
        assert sum(p["tasks"] for p in processes) == TASKS
        assert sum(p["failed_tasks"] for p in processes) == 0


def test_GIVEN_the_recipe_wrapper_WHEN_asked_THEN_its_processes_report_lost_connections_and_the_task_line(  # noqa: E501
    fleet: Fleet, census: dict[str, Any]
) -> None:
    ran = [p for p in census[fleet.name("leaky")]["processes"] if p["tasks"]]
    assert ran, "no process of the leaky node ran a task"
    for process in ran:
        # One connection lost per task: the ThreadSensitiveContext executor ends holding it.
        assert process["lost"] == process["tasks"], process
        assert process["checkouts"] >= process["tasks"]
        sites = process["leak_sites"]
        assert [(s["kind"], s["file"], s["function"]) for s in sites] == [
            ("lost", "inspectproj/tasks.py", "read_catalog")
        ]
        assert sites[0]["line"] == _line_of("count = await model.objects.acount()")
        assert sites[0]["thread"] == "ThreadSensitiveContext executor"
        assert sites[0]["count"] == process["tasks"]
        assert all(t.startswith("inspectproj.leaky[") for t in sites[0]["tasks"])


def test_GIVEN_the_clean_wrapper_WHEN_asked_THEN_nothing_is_lost_or_held(
    fleet: Fleet, census: dict[str, Any]
) -> None:
    processes = census[fleet.name("clean")]["processes"]
    assert sum(p["checkouts"] for p in processes) >= TASKS
    for process in processes:
        assert (process["lost"], process["held"], process["leak_sites"]) == (0, 0, []), process
        assert not any(c["checked_out"] for c in process["connections"])
        assert process["returns"] == process["checkouts"]


def test_GIVEN_a_node_without_install_WHEN_asked_THEN_it_answers_ping_but_no_census(
    fleet: Fleet, census: dict[str, Any]
) -> None:
    plain = fleet.name("plain")
    assert plain in fleet.ping()
    # kombu's pidbox answers an unknown command with an error, not with silence.
    assert census[plain] == {"error": f"KeyError('{COMMAND}')"}


def test_GIVEN_a_child_killed_WHEN_asked_THEN_its_file_is_dropped_and_the_new_child_reported(
    fleet: Fleet, census: dict[str, Any]
) -> None:
    node = fleet.name("clean")
    before = {p["pid"] for p in census[node]["processes"]}
    victim = min(before)
    os.kill(victim, 9)
    # The pool replaces the child; the census must not report the dead one.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = fleet.census()[node]
        pids = {p["pid"] for p in reply["processes"]}
        gone = not (node_directory(node) / f"{victim}.json").exists()
        if victim not in pids and len(pids) == 2 and gone:
            break
    assert victim not in pids
    assert pids == _children(fleet, "clean")
    assert not (node_directory(node) / f"{victim}.json").exists()


def _line_of(text: str) -> int:
    source = (
        os.path.join(os.path.dirname(__file__), "..", "projects", "inspectproj", "inspectproj",
                     "tasks.py")
    )  # fmt: skip
    lines = open(source).read().splitlines()  # noqa: SIM115
    return next(i for i, line in enumerate(lines, start=1) if text in line)
