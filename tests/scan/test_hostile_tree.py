"""``pooldoctor scan`` on a real working tree: editor lock files, symlink loops, symlinks out of
the tree, a FIFO named ``tasks.py``, sockets, devices, generated modules of megabytes, Latin-1,
files mid-edit. Each is skipped and listed with its reason in every format; none crashes or hangs
the scan, and the good files of the same tree are still scanned.

The trees are real files in ``tmp_path``; the CLI runs in a subprocess with a timeout, so that a
scan that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from conftest import pooldoctor

from pooldoctor.commands import report as saved
from pooldoctor.commands.scan import parse_size, run_scan, select_checks
from pooldoctor.reporters.scan import ScanFormat, as_json
from pooldoctor.reporters.scan import render as render_scan
from pooldoctor.scan import files
from pooldoctor.scan.checks import all_checks
from pooldoctor.scan.model import SkippedFile, SkipReason

# PD306 wherever it is scanned: a finding proves the file was read.
ASYNC_TASK = (
    "from celery import shared_task\n\n\n@shared_task\nasync def refresh(pk):\n    return pk\n"
)
TIMEOUT = 60
"""Seconds before a scan counts as hung (it takes well under one)."""


def scan(cwd: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``pooldoctor scan --format json`` in ``cwd``: exit code and report."""
    proc = pooldoctor("scan", "--format", "json", *args, cwd=cwd, timeout=TIMEOUT)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def skipped(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {s["path"]: (s["reason"], s["detail"]) for s in report["skipped"]}


def flagged(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["file"], f["code"]) for f in report["findings"]]


def hostile_tree(base: Path) -> Path:
    """A project with one of everything a working tree can hold, and two good modules."""
    project, elsewhere = base / "project", base / "elsewhere"
    (project / "app").mkdir(parents=True)
    (project / "pkg").mkdir()
    elsewhere.mkdir()
    (elsewhere / "secret.py").write_text(ASYNC_TASK)
    (project / "app" / "tasks.py").write_text(ASYNC_TASK)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "alias.py").symlink_to("app/tasks.py")  # inside: read once, as app/tasks.py
    (project / ".#tasks.py").symlink_to("user@host.1234")  # Emacs's lock file: dangling
    (project / "loop.py").symlink_to("loop.py")
    (project / "pkg" / "up").symlink_to("..")  # a directory loop
    (project / "secret.py").symlink_to("../elsewhere/secret.py")
    (project / "vendor").symlink_to("../elsewhere")
    os.mkfifo(project / "tasks.py")
    (project / "generated.py").write_text(ASYNC_TASK + "#" * 3000 + "\n")
    (project / "broken.py").write_text("import os\n\ndef f(:\n    pass\n")
    (project / "latin.py").write_bytes(b"# caf\xe9\nx = 1\n")
    declared = b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + ASYNC_TASK.encode()
    (project / "legacy.py").write_bytes(declared)  # Latin-1 and says so: valid Python
    return project


EXPECTED_SKIPS = {
    ".#tasks.py": ("not-regular", "dangling symlink to user@host.1234"),
    "broken.py": ("unparseable", "SyntaxError at line 3: invalid syntax"),
    "generated.py": ("too-large", "3,084 bytes, above max-file-size (2,048 bytes)"),
    "latin.py": (
        "undecodable",
        "byte 0xe9 at line 1 is not UTF-8 (and no coding line names another encoding)",
    ),
    "loop.py": ("not-regular", "symlink loop (points to loop.py)"),
    "secret.py": ("not-regular", "symlink to ../elsewhere/secret.py, outside the scanned tree"),
    "tasks.py": ("not-regular", "a FIFO (named pipe)"),
    "vendor": ("not-regular", "symlink to the directory ../elsewhere, outside the scanned tree"),
}


def test_a_hostile_tree_is_scanned_to_the_end(tmp_path: Path) -> None:
    # GIVEN a working tree with one of each hazard, next to two good modules
    project = hostile_tree(tmp_path)
    # WHEN it is scanned (opening the FIFO would hang it; the dangling link used to crash it)
    code, report = scan(project, "--max-file-size", "2k")
    # THEN each hazard is listed once, with its reason and detail, sorted by path
    assert skipped(report) == EXPECTED_SKIPS
    assert [s["path"] for s in report["skipped"]] == sorted(EXPECTED_SKIPS)
    # AND the good modules are still scanned: once each (alias.py is app/tasks.py), including the
    # Latin-1 one that declares its encoding; nothing out of the tree is read
    assert flagged(report) == [("app/tasks.py", "PD306"), ("legacy.py", "PD306")]
    assert report["files_scanned"] == 3  # app/tasks.py, legacy.py, pkg/__init__.py
    assert code == 1


def test_identical_trees_give_identical_reports(tmp_path: Path) -> None:
    project = hostile_tree(tmp_path)
    args = ("scan", "--format", "json", "--max-file-size", "2k")
    first = pooldoctor(*args, cwd=project, timeout=TIMEOUT)
    second = pooldoctor(*args, cwd=project, timeout=TIMEOUT)
    assert first.stdout == second.stdout


def test_an_editor_lock_file_is_listed_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(ASYNC_TASK)
    (tmp_path / ".#tasks.py").symlink_to("user@host.1234")

    code, report = scan(tmp_path)

    assert skipped(report) == {".#tasks.py": EXPECTED_SKIPS[".#tasks.py"]}
    assert flagged(report) == [("tasks.py", "PD306")]
    assert code == 1


def test_a_fifo_named_tasks_py_is_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "tasks.py")
    (tmp_path / "app.py").write_text(ASYNC_TASK)

    # The CLI: it ends (opening the FIFO would block until a writer came: never)
    _, report = scan(tmp_path)
    assert skipped(report) == {"tasks.py": ("not-regular", "a FIFO (named pipe)")}
    assert flagged(report) == [("app.py", "PD306")]
    # In-process: not even a non-blocking open is tried
    opened = _opened_paths(tmp_path)
    assert str(tmp_path / "app.py") in opened
    assert str(tmp_path / "tasks.py") not in opened


def _opened_paths(root: Path, max_file_size: int = files.DEFAULT_MAX_FILE_SIZE) -> list[str]:
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files.os, "open", recording_open)
        run_scan(root, [], select_checks(), max_file_size=max_file_size)
    return opened


def test_a_socket_is_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative name: socket paths are limited to ~100 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("worker.py")
        _, report = scan(tmp_path)
    assert skipped(report) == {"worker.py": ("not-regular", "a socket")}


def test_a_device_is_never_opened(tmp_path: Path) -> None:
    try:  # /dev/null's numbers: harmless even if it were opened
        os.mknod(tmp_path / "celery.py", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD (root, outside most containers)")

    _, report = scan(tmp_path)

    assert skipped(report) == {"celery.py": ("not-regular", "a character device")}
    assert str(tmp_path / "celery.py") not in _opened_paths(tmp_path)


def test_symlink_loops_end_and_scan_each_file_once(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "tasks.py").write_text(ASYNC_TASK)
    (tmp_path / "app" / "again").symlink_to("..")  # app/again/app/again/... if followed
    (tmp_path / "app" / "same").symlink_to(".")
    (tmp_path / "a.py").symlink_to("b.py")  # a two-link file loop
    (tmp_path / "b.py").symlink_to("a.py")

    _, report = scan(tmp_path)

    assert skipped(report) == {
        "a.py": ("not-regular", "symlink loop (points to b.py)"),
        "b.py": ("not-regular", "symlink loop (points to a.py)"),
    }
    assert flagged(report) == [("app/tasks.py", "PD306")]
    assert report["files_scanned"] == 1


def test_a_symlink_out_of_the_tree_is_never_followed(tmp_path: Path) -> None:
    # GIVEN a project whose symlinks lead out of it: to a module, a directory, a system file
    project = hostile_tree(tmp_path)
    (project / "hostname.py").symlink_to("/etc/hostname")
    # WHEN only app/ is scanned, app/ is the tree: a link in it to the project's pkg/ leads out
    (project / "app" / "shared.py").symlink_to("../pkg/__init__.py")
    _, whole = scan(project, "--max-file-size", "2k")
    _, part = scan(project, "app")
    # THEN nothing outside was read, and each link is listed with where it points
    assert ("secret.py", "PD306") not in flagged(whole)
    assert skipped(whole)["hostname.py"] == (
        "not-regular",
        "symlink to /etc/hostname, outside the scanned tree",
    )
    assert skipped(part) == {
        "app/shared.py": (
            "not-regular",
            "symlink to ../pkg/__init__.py, outside the scanned tree",
        )
    }
    assert flagged(part) == [("app/tasks.py", "PD306")]


def test_a_symlink_given_by_name_is_read(tmp_path: Path) -> None:
    # Asked for explicitly, a symlink to a file elsewhere is the user's choice.
    (tmp_path / "real.py").write_text(ASYNC_TASK)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "link.py").symlink_to("../real.py")
    _, report = scan(tmp_path / "project", "link.py")
    assert report["skipped"] == []
    assert report["files_scanned"] == 1
    assert len(report["findings"]) == 1


def test_a_file_above_the_cap_is_skipped_without_being_read(tmp_path: Path) -> None:
    # GIVEN a module of 1,084 bytes with a finding, and a cap of 1k (1,024 bytes)
    (tmp_path / "generated.py").write_text(ASYNC_TASK + "#" * 1000 + "\n")
    (tmp_path / "small.py").write_text(ASYNC_TASK)
    # WHEN scanned with --max-file-size 1k
    _, report = scan(tmp_path, "--max-file-size", "1k")
    # THEN it is listed with its size and the cap, and its finding is not reported
    assert report["skipped"] == [
        {
            "path": "generated.py",
            "reason": "too-large",
            "detail": "1,084 bytes, above max-file-size (1,024 bytes)",
        }
    ]
    assert flagged(report) == [("small.py", "PD306")]
    # AND it was never even opened: its size alone decided (a 5 MB module costs nothing)
    opened = _opened_paths(tmp_path, max_file_size=1024)
    assert str(tmp_path / "generated.py") not in opened
    # AND under the default cap (1M) it is scanned
    assert len(scan(tmp_path)[1]["findings"]) == 2


def test_a_lock_file_above_the_python_cap_is_still_read(tmp_path: Path) -> None:
    # GIVEN a requirements file of 3,000 bytes that pins Celery 5.5, and a cap of 1k
    pins = "".join(f"package-{n}==1.0\n" for n in range(200)) + "celery==5.5.3\n"
    (tmp_path / "requirements.txt").write_text(pins)
    # WHEN scanned, THEN it is not skipped: only Python files are held to --max-file-size
    _, report = scan(tmp_path, "--max-file-size", "1k")
    assert report["skipped"] == []


def test_the_cap_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "generated.py").write_text(ASYNC_TASK + "#" * 1000 + "\n")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.pooldoctor]\nmax-file-size = "1k"\n')
    assert [s["path"] for s in scan(tmp_path)[1]["skipped"]] == ["generated.py"]
    pyproject.write_text("[tool.pooldoctor]\nmax-file-size = 1024\n")  # bytes
    assert [s["path"] for s in scan(tmp_path)[1]["skipped"]] == ["generated.py"]
    # The option wins over the file.
    assert scan(tmp_path, "--max-file-size", "2k")[1]["skipped"] == []


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("500k", 500 * 1024),
        ("500K", 500 * 1024),
        ("2M", 2 * 1024 * 1024),
        ("2MB", 2 * 1024 * 1024),
        ("64KiB", 64 * 1024),
        ("1.5M", 1536 * 1024),
        ("1g", 1024**3),
        ("100b", 100),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12x", "0", "-5", "", "k", "1e9", "2 MM", "9" * 400])
def test_bad_sizes(text: str) -> None:
    assert parse_size(text) is None


@pytest.mark.parametrize("value", ["12x", "0", "-1"])
def test_a_bad_max_file_size_is_one_line_and_exit_2(tmp_path: Path, value: str) -> None:
    proc = pooldoctor("scan", f"--max-file-size={value}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"pooldoctor: error: --max-file-size {value!r} is not a size "
        "(give bytes or a number with k or M (1024-based): 1048576, 500k, 2M)\n"
    )


def test_a_bad_max_file_size_in_pyproject_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pooldoctor]\nmax-file-size = [1]\n")
    proc = pooldoctor("scan", cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert "[tool.pooldoctor] max-file-size = [1] is not a size" in proc.stderr


def test_a_syntax_error_is_listed_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "views.py").write_text("def view(request):\n    return (\n\nx = 1\n")
    (tmp_path / "nul.py").write_bytes(b"x = 1\x00\n")
    _, report = scan(tmp_path)
    assert skipped(report) == {
        "views.py": ("unparseable", "SyntaxError at line 2: '(' was never closed"),
        "nul.py": ("unparseable", _null_bytes_message()),
    }
    assert report["files_scanned"] == 0


def _null_bytes_message() -> str:
    try:
        compile("x = 1\x00\n", "nul.py", "exec")
    except SyntaxError as exc:  # Python 3.12+
        return f"SyntaxError: {exc.msg}"
    except ValueError as exc:  # Python 3.11
        return str(exc)
    raise AssertionError("null bytes compiled")


def test_latin_1(tmp_path: Path) -> None:
    # Without a coding line a Latin-1 module is not Python (Python refuses to import it); with
    # one it is, and it is scanned. Other files must be UTF-8.
    (tmp_path / "plain.py").write_bytes(b"x = 1\nname = 'Jos\xe9'\n")
    (tmp_path / "declared.py").write_bytes(b"# coding: latin-1\n# Jos\xe9\n" + ASYNC_TASK.encode())
    (tmp_path / "requirements.txt").write_bytes(b"celery==5.5.3  # Jos\xe9\n")
    (tmp_path / "bad_cookie.py").write_bytes(b"# coding: klingon\nx = 1\n")
    _, report = scan(tmp_path)
    assert skipped(report) == {
        "plain.py": (
            "undecodable",
            "byte 0xe9 at line 2 is not UTF-8 (and no coding line names another encoding)",
        ),
        "requirements.txt": ("undecodable", "byte 0xe9 at line 1 is not UTF-8"),
        "bad_cookie.py": ("undecodable", "unknown encoding: klingon"),
    }
    assert flagged(report) == [("declared.py", "PD306")]


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_bytes(b"\xef\xbb\xbf" + ASYNC_TASK.encode())
    _, report = scan(tmp_path)
    assert report["skipped"] == []
    assert flagged(report) == [("tasks.py", "PD306")]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), "No such file or directory"),
    ],
)
def test_a_failed_open_is_a_skipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: OSError, expected: str
) -> None:
    # GIVEN open() refuses one file (as chmod 000 does for anyone but root, a failing disk, a file
    # removed between the listing and the read)
    (tmp_path / "settings.py").write_text("DEBUG = True\n")
    (tmp_path / "tasks.py").write_text(ASYNC_TASK)
    real_open = os.open

    def refusing_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path).endswith("settings.py"):
            raise failure
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", refusing_open)
    # WHEN scanned
    result = run_scan(tmp_path, [], select_checks())
    # THEN that file is listed, the others scanned
    assert result.skipped == (SkippedFile("settings.py", SkipReason.UNREADABLE, expected),)
    assert [f.file for f in result.findings] == ["tasks.py"]


def test_an_unlistable_directory_is_a_skipped_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "tasks.py").write_text(ASYNC_TASK)
    (tmp_path / "tasks.py").write_text(ASYNC_TASK)
    real_scandir = os.scandir

    def refusing_scandir(path: Any) -> Any:
        if os.fspath(path).endswith("private"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(files.os, "scandir", refusing_scandir)
    result = run_scan(tmp_path, [], select_checks())
    assert result.skipped == (
        SkippedFile(
            "private", SkipReason.UNREADABLE, "cannot list the directory: Permission denied"
        ),
    )
    assert [f.file for f in result.findings] == ["tasks.py"]


def test_excluded_paths_are_not_listed(tmp_path: Path) -> None:
    project = hostile_tree(tmp_path)
    _, report = scan(project, "--max-file-size", "2k", "--exclude", "*.py", "--exclude", "vendor")
    assert report["skipped"] == []


# Every format: the same skipped entries, where each format puts them.


@pytest.fixture(name="project")
def project_fixture(tmp_path: Path) -> Path:
    return hostile_tree(tmp_path)


def render_cli(project: Path, fmt: str) -> str:
    proc = pooldoctor(
        "scan", "--format", fmt, "--max-file-size", "2k", cwd=project, timeout=TIMEOUT
    )
    assert proc.returncode == 1, proc.stderr
    return proc.stdout


def test_text_lists_the_skipped_files(project: Path) -> None:
    lines = render_cli(project, "text").splitlines()
    start = lines.index("skipped 8 files:")
    assert lines[start + 1 :] == [
        "  .#tasks.py: not a regular file: dangling symlink to user@host.1234",
        "  broken.py: does not parse: SyntaxError at line 3: invalid syntax",
        "  generated.py: too large: 3,084 bytes, above max-file-size (2,048 bytes)",
        "  latin.py: cannot be decoded: byte 0xe9 at line 1 is not UTF-8 (and no coding line "
        "names another encoding)",
        "  loop.py: not a regular file: symlink loop (points to loop.py)",
        "  secret.py: not a regular file: symlink to ../elsewhere/secret.py, outside the "
        "scanned tree",
        "  tasks.py: not a regular file: a FIFO (named pipe)",
        "  vendor: not a regular file: symlink to the directory ../elsewhere, outside the "
        "scanned tree",
        "settings: none found (checks that need a pool assumed none)",
        "2 findings in 3 files",
    ]
    assert lines[0].startswith("app/tasks.py:5:1: PD306 error: ")


def test_json_lists_the_skipped_files(project: Path) -> None:
    report = json.loads(render_cli(project, "json"))
    entry = report["skipped"][0]
    assert set(entry) == {"path", "reason", "detail"}
    assert entry["path"] == ".#tasks.py"
    assert entry["reason"] == "not-regular"
    assert entry["detail"] == "dangling symlink to user@host.1234"
    assert skipped(report) == EXPECTED_SKIPS


def test_sarif_puts_skipped_files_in_the_tool_execution_notifications(project: Path) -> None:
    sarif = json.loads(render_cli(project, "sarif"))
    run = sarif["runs"][0]
    assert len(run["invocations"]) == 1
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is True
    notifications = invocation["toolExecutionNotifications"]
    assert len(notifications) == len(EXPECTED_SKIPS)
    by_uri = {
        unquote(n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]): n
        for n in notifications
    }
    assert set(by_uri) == set(EXPECTED_SKIPS)
    broken = by_uri["broken.py"]
    assert broken["level"] == "warning"  # source meant to be scanned was not
    assert broken["descriptor"] == {"id": "unparseable"}
    assert broken["message"]["text"] == (
        "Not scanned: does not parse: SyntaxError at line 3: invalid syntax"
    )
    location = broken["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "broken.py", "uriBaseId": "%SRCROOT%"}
    fifo = by_uri["tasks.py"]
    assert fifo["level"] == "note"  # left out on purpose
    assert fifo["descriptor"] == {"id": "not-regular"}
    assert fifo["message"]["text"] == "Not scanned: not a regular file: a FIFO (named pipe)"
    levels = {uri: n["level"] for uri, n in by_uri.items()}
    assert levels == {
        path: "warning" if reason in {"unparseable", "undecodable", "unreadable"} else "note"
        for path, (reason, _) in EXPECTED_SKIPS.items()
    }
    # The findings are where they always were.
    assert [r["ruleId"] for r in run["results"]] == ["PD306", "PD306"]


def test_github_annotates_each_skipped_file(project: Path) -> None:
    lines = render_cli(project, "github").splitlines()
    assert [line for line in lines if "title=pooldoctor skipped" in line] == [
        "::notice file=.#tasks.py,title=pooldoctor skipped this file (not-regular)::Not scanned: "
        "not a regular file: dangling symlink to user@host.1234",
        "::warning file=broken.py,title=pooldoctor skipped this file (unparseable)::Not scanned: "
        "does not parse: SyntaxError at line 3: invalid syntax",
        "::notice file=generated.py,title=pooldoctor skipped this file (too-large)::Not scanned: "
        "too large: 3,084 bytes, above max-file-size (2,048 bytes)",
        "::warning file=latin.py,title=pooldoctor skipped this file (undecodable)::Not scanned: "
        "cannot be decoded: byte 0xe9 at line 1 is not UTF-8 (and no coding line names another "
        "encoding)",
        "::notice file=loop.py,title=pooldoctor skipped this file (not-regular)::Not scanned: "
        "not a regular file: symlink loop (points to loop.py)",
        "::notice file=secret.py,title=pooldoctor skipped this file (not-regular)::Not scanned: "
        "not a regular file: symlink to ../elsewhere/secret.py, outside the scanned tree",
        "::notice file=tasks.py,title=pooldoctor skipped this file (not-regular)::Not scanned: "
        "not a regular file: a FIFO (named pipe)",
        "::notice file=vendor,title=pooldoctor skipped this file (not-regular)::Not scanned: "
        "not a regular file: symlink to the directory ../elsewhere, outside the scanned tree",
    ]
    assert sum(line.startswith("::error file=") for line in lines) == 2  # the findings


@pytest.mark.parametrize("fmt", list(ScanFormat))
def test_a_saved_scan_re_renders_its_skipped_files(project: Path, fmt: ScanFormat) -> None:
    # GIVEN a scan saved with --format json
    path = project.parent / "scan.json"
    proc = pooldoctor("scan", "--format", "json", "--max-file-size", "2k", "-o", str(path),
                      cwd=project, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    # WHEN pooldoctor report renders it
    again = pooldoctor("report", str(path), "--format", fmt.value, cwd=project)
    # THEN it is what scan itself prints, skipped files and all
    assert again.returncode == 1, again.stderr
    direct = render_cli(project, fmt.value)
    if fmt is ScanFormat.SARIF:  # the saved JSON does not say where the scan ran: no file:// base
        log = json.loads(direct)
        del log["runs"][0]["originalUriBaseIds"]
        assert json.loads(again.stdout) == log
    else:
        assert again.stdout == direct
    assert "generated.py" in again.stdout


def test_a_report_saved_before_skipped_files_still_loads(project: Path) -> None:
    result = run_scan(project, [], all_checks(), max_file_size=2048)
    data = json.loads(as_json(result))
    assert len(data.pop("skipped")) == len(EXPECTED_SKIPS)

    old = saved.loads(json.dumps(data), "old.json")

    assert old.report.skipped == ()  # type: ignore[union-attr]
    assert old.render("text", "warning").endswith("2 findings in 3 files\n")


def test_a_loaded_scan_keeps_its_skipped_files(project: Path) -> None:
    result = run_scan(project, [], all_checks(), max_file_size=2048)
    back = saved.loads(as_json(result), "scan.json")
    assert back.report.skipped == result.skipped  # type: ignore[union-attr]
    unplaced = replace(result, scanned=())  # a saved JSON does not say where the scan ran
    for fmt in ScanFormat:
        assert back.render(fmt.value, "warning") == render_scan(unplaced, fmt, all_checks())


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    # Linux names are bytes: a module and a dangling link whose names are Latin-1.
    root = os.fsencode(tmp_path)
    with open(root + b"/caf\xe9.py", "w") as module:
        module.write(ASYNC_TASK)
    os.symlink(b"nowhere-\xff", root + b"/lock-\xe9.py")
    for fmt in ScanFormat:  # every format can print them
        proc = pooldoctor("scan", "--format", fmt.value, cwd=tmp_path, timeout=TIMEOUT)
        assert proc.returncode == 1, proc.stderr
    _, report = scan(tmp_path)
    assert flagged(report) == [("caf\\xe9.py", "PD306")]
    assert skipped(report) == {
        "lock-\\xe9.py": ("not-regular", "dangling symlink to nowhere-\\xff"),
    }
