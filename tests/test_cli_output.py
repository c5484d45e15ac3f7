"""What every command prints besides its report: with ``-o FILE`` one summary line on stderr (so a
CI log says what the file says), nothing with ``-q``; simulate's progress (a live bar per subject
on a terminal only, a line per step with ``-v``); the text report of a simulation, whose subjects
are never cut; and the shell completion script click generates."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, PROJECTS, pooldoctor
from rich.console import Console

from pooldoctor.reporters.simulate import live_progress

LEAKY = FIXTURES / "leaky"
SETTINGS = ("--settings", "mysite.settings")
SMALL_SIMULATION = ("--modes", "async-to-sync", "--tasks", "4", "--workers", "1", "--pool", "solo")
LONG_TASK = "mysite.tasks." + "refresh_prices_for_every_currency_of_the_catalogue_x"


def _summary(stderr: str, output: Path) -> str:
    """The one line that says where the report went (and that it is the only such line)."""
    lines = [line for line in stderr.splitlines() if "report written to" in line]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pooldoctor: ") and lines[0].endswith(f"report written to {output}")
    return lines[0]


def test_scan_and_report_print_the_summary_with_output_and_nothing_with_q(tmp_path: Path) -> None:
    # GIVEN the leaky fixture project
    saved = tmp_path / "scan.json"
    # WHEN scan writes its report to a file
    proc = pooldoctor("scan", "-o", str(saved), cwd=LEAKY)
    # THEN stdout is empty and stderr is one line: how many findings, where
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    count = len(json.loads(saved.read_text())["findings"])
    assert count > 0
    assert proc.stderr.splitlines() == [
        f"pooldoctor: {count} findings in {json.loads(saved.read_text())['files_scanned']} files: "
        f"report written to {saved}"
    ]
    # AND report, rendering the saved report to a file, says the same in its own words
    sarif = tmp_path / "scan.sarif"
    proc = pooldoctor("report", str(saved), "-o", str(sarif), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert (
        _summary(proc.stderr, sarif) == f"pooldoctor: {count} findings: report written to {sarif}"
    )
    # AND with -q both are silent, the files written all the same
    saved.unlink()
    sarif.unlink()
    for args in (("scan", "-o", str(saved)), ("report", str(saved), "-o", str(sarif))):
        proc = pooldoctor("-q", *args, cwd=LEAKY)
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", ""), args
    assert saved.is_file() and sarif.is_file()


def test_scan_v_lists_the_skipped_files_on_stderr(tmp_path: Path) -> None:
    # GIVEN a file that does not parse, WHEN scan -v writes JSON
    (tmp_path / "broken.py").write_text("def f(:\n")
    proc = pooldoctor("-v", "scan", "--format", "json", cwd=tmp_path)
    # THEN the report has it, and so does stderr (the text report lists it itself)
    assert json.loads(proc.stdout)["skipped"][0]["path"] == "broken.py"
    assert "pooldoctor: skipped broken.py (unparseable): " in proc.stderr
    assert "skipped" not in pooldoctor("scan", "--format", "json", cwd=tmp_path).stderr


@pytest.mark.parametrize(
    "args", [("-q", "-v", "scan"), ("-q", "scan", "-v"), ("scan", "-v", "-q")], ids=" ".join
)
def test_q_and_v_together_are_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = pooldoctor(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "pooldoctor: error: -q and -v both given (choose one: -q for less, -v for more)"
    )


def test_q_and_v_after_the_command_act_as_before_it(tmp_path: Path) -> None:
    # GIVEN a file that does not parse and a report written to a file
    (tmp_path / "broken.py").write_text("def f(:\n")
    out = tmp_path / "scan.json"
    # WHEN -q comes after the command THEN nothing is said; WHEN -v does THEN the skip is
    quiet = pooldoctor("scan", "-q", "-o", str(out), cwd=tmp_path)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    loud = pooldoctor("scan", "-o", str(out), "-v", cwd=tmp_path)
    assert "pooldoctor: skipped broken.py (unparseable): " in loud.stderr
    assert loud.stderr.rstrip().endswith(f"report written to {out}")


def test_check_and_demo_print_the_summary_with_output(tmp_path: Path, database_url: str) -> None:
    output = tmp_path / "check.json"
    args = ("check", *SETTINGS, "--modes", "async-to-sync", "--tasks", "2",
            "--database", database_url, "-o", str(output))  # fmt: skip
    proc = pooldoctor(*args, cwd=LEAKY)
    verdict = json.loads(output.read_text())["verdict"]
    assert _summary(proc.stderr, output) == f"pooldoctor: {verdict}: report written to {output}"
    assert proc.stdout == ""
    quiet = pooldoctor("-q", *args, cwd=LEAKY)
    assert "report written" not in quiet.stderr, quiet.stderr
    assert json.loads(output.read_text())["verdict"] == verdict

    demo = tmp_path / "demo.txt"
    # a relative path is the user's, not the demo project's (where the measurement runs)
    proc = pooldoctor("demo", "--database", database_url, "-o", demo.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # --fail-on never
    assert _summary(proc.stderr, demo) == f"pooldoctor: leak: report written to {demo}"
    assert "pooldoctor demo" in demo.read_text() or "leak" in demo.read_text()


def test_inspect_prints_the_summary_with_output(tmp_path: Path, database_url: str) -> None:
    # GIVEN a broker with no worker of the named node, WHEN inspect writes its report to a file
    output = tmp_path / "inspect.json"
    env = {**os.environ, "INSPECTPROJ_BROKER": "redis://127.0.0.1:6379/14",
           "DATABASE_URL": database_url, "PYTHONPATH": str(LEAKY)}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pooldoctor", "inspect", "--app", "inspectproj.celery:app",
         "--settings", "inspectproj.settings", "--destination", "ghost-nobody@nowhere",
         "--timeout", "0.5", "-o", str(output)],
        cwd=PROJECTS / "inspectproj", capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    # THEN the missing node's error is the verdict, on stderr in one line
    assert proc.returncode == 1, proc.stderr
    assert json.loads(output.read_text())["verdict"] == "error"
    assert _summary(proc.stderr, output) == f"pooldoctor: error: report written to {output}"


def test_simulate_progress_summary_and_a_long_subject_in_its_table(
    tmp_path: Path, database_url: str
) -> None:
    output = tmp_path / "simulate.json"
    args = ("simulate", *SETTINGS, *SMALL_SIMULATION, "--database", database_url,
            "-o", str(output))  # fmt: skip
    # WHEN simulate runs with stderr not a terminal
    proc = pooldoctor(*args, cwd=LEAKY)
    # THEN no progress at all, and the one summary line
    assert proc.returncode == 0, proc.stderr
    assert "task " not in proc.stderr and "\x1b" not in proc.stderr, proc.stderr
    assert _summary(proc.stderr, output) == f"pooldoctor: clean: report written to {output}"

    # WHEN a terminal is forced (rich's FORCE_COLOR): a live bar for the subject, "task N/M"
    proc = pooldoctor(*args, cwd=LEAKY, env={"FORCE_COLOR": "1"})
    assert "async-to-sync" in proc.stderr and "task 4/4" in proc.stderr, proc.stderr

    # WHEN -v and no terminal: a plain line per step seen (records that land between two polls
    # are one step), from 0 (the worker starting) up to the last
    proc = pooldoctor("-v", *args, cwd=LEAKY)
    prefix = "pooldoctor: async-to-sync: task "
    steps = [line for line in proc.stderr.splitlines() if line.startswith(prefix)]
    done = [int(line.removeprefix(prefix).removesuffix("/4")) for line in steps]
    assert done[0] == 0 and done[-1] == 4 and done == sorted(set(done)), proc.stderr

    # WHEN -q: nothing on stderr, the report written
    proc = pooldoctor("-q", *args, cwd=LEAKY)
    assert (proc.returncode, proc.stderr) == (0, "")

    # AND GIVEN the saved report with a 60-character subject, WHEN report renders it as text
    # (the file path: 100 columns), THEN the subject is whole, on one line of the table
    data = json.loads(output.read_text())
    data["results"][0]["subject"] = LONG_TASK
    assert len(LONG_TASK) == 65
    saved = tmp_path / "long.json"
    saved.write_text(json.dumps(data))
    proc = pooldoctor("report", str(saved), cwd=tmp_path)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("mysite.tasks."))
    assert row.split()[:2] == [LONG_TASK, "clean"], proc.stdout
    assert "…" not in proc.stdout


def test_live_progress_shows_each_subject_and_its_count() -> None:
    # GIVEN a terminal (forced), WHEN two subjects' workers answer
    out = io.StringIO()
    screen = Console(file=out, force_terminal=True, width=120)
    with live_progress(screen, "task") as advance:
        advance(LONG_TASK, 0, 12)
        advance(LONG_TASK, 3, 12)
        advance("async-to-sync", 1, 4)
    # THEN each shows with its count, the long name whole
    text = out.getvalue()
    assert "task 3/12" in text and "task 1/4" in text
    assert LONG_TASK in text


def test_no_progress_without_a_terminal() -> None:
    # The same bar on a console that is not a terminal prints nothing (it is transient); the CLI
    # does not even start it (above, simulate with stderr not a terminal).
    out = io.StringIO()
    with live_progress(Console(file=out, width=120), "task") as advance:
        advance("async-to-sync", 3, 12)
    assert out.getvalue().strip() == ""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_script(shell: str, tmp_path: Path) -> None:
    # WHEN the documented variable asks for the script, THEN click writes it for pooldoctor
    proc = pooldoctor(cwd=tmp_path, env={"_POOLDOCTOR_COMPLETE": f"{shell}_source"})
    assert proc.returncode == 0, proc.stderr
    assert "_POOLDOCTOR_COMPLETE" in proc.stdout and "pooldoctor" in proc.stdout
    # AND the completion it drives names the commands
    words = {"COMP_WORDS": "pooldoctor sc", "COMP_CWORD": "1"}
    proc = pooldoctor(cwd=tmp_path, env={"_POOLDOCTOR_COMPLETE": "bash_complete", **words})
    assert proc.stdout.split() == ["plain,scan"]
