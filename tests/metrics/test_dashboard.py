"""The Grafana dashboard in monitoring/grafana asks only for series the exporter emits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pooldoctor.reporters.openmetrics import SPECS, sample_names

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "pooldoctor-dashboard.json"
)
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset"}  # fmt: skip
LABELS = {"node", "pid", "alias", "site", "outcome"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data["panels"]:
        yield panel
        yield from panel.get("panels", ())  # a collapsed row's


def queries(data: dict[str, Any]) -> list[str]:
    """Every PromQL expression: the panels' targets and the variables' queries."""
    out = [t["expr"] for p in panels(data) for t in p.get("targets", ())]
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            out.append(query["query"] if isinstance(query, dict) else query)
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside label matchers, range
    brackets and by/without lists, that are not functions, keywords or (label_values') labels."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges, $__rate_interval
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*(\s*\()?", expr):
        word = match.group(0).rstrip("( \t")
        if match.group(1) or word in KEYWORDS or word in LABELS:
            continue  # a function call, a keyword, a label (label_values' second argument)
        names.add(word)
    return names


def test_the_name_parser_finds_metrics_and_nothing_else() -> None:
    expr = ('sum by (node, pid) (rate(pooldoctor_checkouts_total{node=~"$node"}[$__rate_interval]))'
            " / on (node) group_left max(up_total offset 5m)")  # fmt: skip
    assert metric_names(expr) == {"pooldoctor_checkouts_total", "up_total"}
    assert metric_names("label_values(pooldoctor_tasks_total, node)") == {"pooldoctor_tasks_total"}


def test_every_query_reads_only_series_the_exporter_emits() -> None:
    data = dashboard()
    found = queries(data)
    assert len(found) >= 10
    for expr in found:
        names = metric_names(expr)
        assert names, expr
        assert names <= sample_names(), f"{expr}: {sorted(names - sample_names())} not exported"


def test_every_family_is_on_the_dashboard() -> None:
    used = set().union(*(metric_names(e) for e in queries(dashboard())))
    assert {spec.sample for spec in SPECS} <= used


def test_it_is_an_importable_dashboard_with_a_prometheus_datasource_variable() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] and data["schemaVersion"] >= 36
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(data)]
    assert len(ids) == len(set(ids))
    for panel in panels(data):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["title"] and panel["targets"]
        for target in panel["targets"]:
            # every series is filtered by the node and alias variables
            assert '{node=~"$node", alias=~"$alias"}' in target["expr"]


@pytest.mark.parametrize("title", ["Lost connections by leak site", "Pool size, available, waiting",
                                   "Checkouts vs returns", "Held and inherited connections",
                                   "Tasks by outcome"])  # fmt: skip
def test_the_issue_panels_are_there(title: str) -> None:
    assert title in {p["title"] for p in panels(dashboard())}
