"""``pooldoctor scan`` on the web fixture projects (tests/projects/web_*), through the real CLI:
the web-side checks in JSON and SARIF."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import pooldoctor

PROJECTS = Path(__file__).resolve().parents[1] / "projects"


def _findings(project: str) -> list[dict]:  # type: ignore[type-arg]
    proc = pooldoctor("scan", "--format", "json", cwd=PROJECTS / project)
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)["findings"]  # type: ignore[no-any-return]


def test_web_asgi_json() -> None:
    findings = _findings("web_asgi")

    assert [(f["code"], f["severity"], f["file"], f["line"]) for f in findings] == [
        ("PD316", "error", "mysite/settings.py", 16),
        ("PD307", "error", "shop/api.py", 12),
    ]
    assert "(uvicorn at Procfile:2)" in findings[0]["message"]
    assert findings[0]["fix"].startswith("set CONN_MAX_AGE = 0")


def test_web_preload_json() -> None:
    findings = _findings("web_preload")

    assert [(f["code"], f["file"], f["line"]) for f in findings] == [
        ("PD315", "gunicorn.conf.py", 3),
        ("PD314", "shop/views.py", 6),
    ]
    assert "at mysite/wsgi.py:11" in findings[0]["message"]


def test_sarif_carries_the_web_rules_and_results() -> None:
    proc = pooldoctor("scan", "--format", "sarif", cwd=PROJECTS / "web_asgi")
    run = json.loads(proc.stdout)["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}

    assert {"PD307", "PD315", "PD316"} <= set(rules)
    results = [
        (r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["region"]["startLine"])
        for r in run["results"]
    ]
    assert results == [("PD316", "error", 16), ("PD307", "error", 12)]


def test_list_checks_shows_the_web_checks() -> None:
    listing = pooldoctor("scan", "--list-checks", cwd=PROJECTS).stdout

    assert "PD307  error    thread-insensitive-orm-in-view:" in listing
    assert "PD315  error    gunicorn-preload-with-import-query:" in listing
    assert "PD316  error    asgi-persistent-connections:" in listing
