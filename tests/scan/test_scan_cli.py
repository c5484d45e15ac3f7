"""``pooldoctor scan`` end to end: the real CLI on the fixture projects and on small trees."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import FIXTURES, LEAKY_WRAPPER, ROOT, by_subject, check_json, pooldoctor, write_tree

from pooldoctor.scan.checks import all_checks


def _scan_json(cwd: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = pooldoctor("scan", *args, "--format", "json", cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_leaky_fixture_is_flagged_where_check_measures_a_leak(database_url: str) -> None:
    # GIVEN the fixture whose wrapper check measures as leaking, and the fixed one
    leaky = by_subject(
        check_json("--settings", "mysite.settings", "--modes", "async-to-sync",
                   "--wrapper", "mysite.celeryapp:async_task_wrapper",
                   cwd=FIXTURES / "leaky", database_url=database_url)[1]
    )  # fmt: skip
    _, fixed_report = check_json(
        "--settings", "mysite.settings", "--modes", "async-to-sync",
        "--wrapper", "mysite.celeryapp:async_task_wrapper",
        cwd=FIXTURES / "fixed", database_url=database_url,
    )  # fmt: skip
    assert leaky["mysite.celeryapp:async_task_wrapper"]["verdict"] == "leak"
    assert by_subject(fixed_report)["mysite.celeryapp:async_task_wrapper"]["verdict"] == "clean"
    # WHEN scan reads the same two projects
    code, leaky_scan = _scan_json(FIXTURES / "leaky")
    _, fixed_scan = _scan_json(FIXTURES / "fixed")
    # THEN scan flags the measured leak in the wrapper's own file, and not in the fixed one
    flagged = {(f["code"], f["file"]) for f in leaky_scan["findings"]}
    assert ("PD303", "mysite/celeryapp.py") in flagged
    assert "confirm with: pooldoctor check --wrapper mysite.celeryapp:" in next(
        f["message"] for f in leaky_scan["findings"] if f["code"] == "PD303"
    )
    assert not [f for f in fixed_scan["findings"] if f["code"].startswith("PD30")]
    assert code == 1


def test_configuration_findings_agree_with_check(database_url: str) -> None:
    # The settings audit of check and of scan use the same codes for the same facts.
    _, report = check_json(
        "--settings",
        "mysite.settings",
        "--modes",
        "async-to-sync",
        cwd=FIXTURES / "fixed",
        database_url=database_url,
    )
    measured = {f["code"] for f in report["findings"] if f["code"] in {"PD103", "PD105"}}
    _, scanned = _scan_json(FIXTURES / "fixed")
    read = {f["code"] for f in scanned["findings"] if f["code"] in {"PD103", "PD105"}}
    assert measured == read == {"PD103", "PD105"}


def test_json_is_sorted_relative_and_byte_identical(tmp_path: Path) -> None:
    write_tree(tmp_path, {"b/wrap.py": LEAKY_WRAPPER, "a/wrap.py": LEAKY_WRAPPER})
    first = pooldoctor("scan", "--format", "json", cwd=tmp_path).stdout
    second = pooldoctor("scan", "--format", "json", cwd=tmp_path).stdout
    assert first == second
    data = json.loads(first)
    assert data["schema"] == 1
    assert data["files_scanned"] == 2
    assert [f["file"] for f in data["findings"]] == ["a/wrap.py", "b/wrap.py"]
    assert set(data["findings"][0]) == {"code", "severity", "file", "line", "column", "message",
                                        "fix"}  # fmt: skip


def test_exit_codes_follow_fail_on(tmp_path: Path) -> None:
    write_tree(tmp_path, {"wrap.py": LEAKY_WRAPPER})
    assert pooldoctor("scan", cwd=tmp_path).returncode == 1
    assert pooldoctor("scan", "--fail-on", "never", cwd=tmp_path).returncode == 0
    assert pooldoctor("scan", "--ignore", "PD303", cwd=tmp_path).returncode == 0
    clean = write_tree(tmp_path / "clean", {"ok.py": "import asyncio\n"})
    assert pooldoctor("scan", cwd=clean).returncode == 0


def test_inline_suppression_and_pyproject_config(tmp_path: Path) -> None:
    suppressed = LEAKY_WRAPPER.replace(
        "async with ThreadSensitiveContext():",
        "async with ThreadSensitiveContext():  # pooldoctor: ignore[PD303]",
    )
    write_tree(tmp_path / "one", {"wrap.py": suppressed})
    assert _scan_json(tmp_path / "one")[1]["findings"] == []
    config = '[tool.pooldoctor]\nignore = ["PD3"]\n'
    write_tree(tmp_path / "two", {"wrap.py": LEAKY_WRAPPER, "pyproject.toml": config})
    assert _scan_json(tmp_path / "two")[1]["findings"] == []


def test_sarif_and_github_formats(tmp_path: Path) -> None:
    write_tree(tmp_path, {"wrap.py": LEAKY_WRAPPER})
    sarif = json.loads(pooldoctor("scan", "--format", "sarif", cwd=tmp_path).stdout)
    run = sarif["runs"][0]
    assert sarif["version"] == "2.1.0"
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {c.code for c in all_checks()}
    result = run["results"][0]
    assert result["ruleId"] == "PD303"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "wrap.py"
    assert location["region"]["startLine"] == 8
    github = pooldoctor("scan", "--format", "github", cwd=tmp_path).stdout
    assert github.startswith("::error file=wrap.py,line=8,col=")
    assert ",title=PD303::" in github


def test_list_checks_lists_every_code_once() -> None:
    proc = pooldoctor("scan", "--list-checks", cwd=FIXTURES)
    codes = [line.split()[0] for line in proc.stdout.splitlines()]
    assert codes == sorted({c.code for c in all_checks()})
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--select", "PD399"], "unknown check code 'PD399'"),
        (["no/such/dir"], "does not exist"),
    ],
)
def test_bad_input_is_a_usage_error(args: list[str], expected: str) -> None:
    proc = pooldoctor("scan", *args, cwd=FIXTURES)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_never_imports_the_project(tmp_path: Path) -> None:
    # A module that would fail loudly if imported is only read.
    write_tree(
        tmp_path, {"boom.py": "raise SystemExit('imported!')\n" + textwrap.dedent(LEAKY_WRAPPER)}
    )
    proc = pooldoctor("scan", cwd=tmp_path)
    assert "imported!" not in proc.stdout + proc.stderr
    assert "PD303" in proc.stdout


def test_pre_commit_hook_definition_runs_scan() -> None:
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "id: pooldoctor-scan" in text
    assert "entry: pooldoctor scan" in text
