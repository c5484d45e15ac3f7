"""``[tool.pooldoctor]`` found as ruff and pytest find theirs: the nearest pyproject.toml with the
table from the current directory upward (up to the repository's top), paths in it relative to
its folder, and every key checked: a typo is one line and exit 2, not a silently ignored gate."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LEAKY_WRAPPER, pooldoctor, write_tree

from pooldoctor.config import rebase_globs, tool_config
from pooldoctor.errors import UsageError


def _listed(cwd: Path) -> list[str]:
    proc = pooldoctor("scan", "--list-checks", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return [line.split()[0] for line in proc.stdout.splitlines()]


def test_run_from_a_sub_folder_scan_reads_the_projects_table(tmp_path: Path) -> None:
    # GIVEN a project whose pyproject.toml selects PD303 only, and a sub-package with a
    # pyproject.toml of its own but no [tool.pooldoctor] (it must not hide the project's)
    write_tree(tmp_path, {
        "pyproject.toml": '[tool.pooldoctor]\nselect = ["PD303"]\n',
        "mysite/tasks/pyproject.toml": '[project]\nname = "tasks"\n',
        "mysite/tasks/deep/__init__.py": "",
    })  # fmt: skip
    # WHEN scan lists its checks from the root, a sub-folder and a sub-sub-folder
    # THEN each finds the project's table
    for cwd in (tmp_path, tmp_path / "mysite", tmp_path / "mysite/tasks/deep"):
        assert _listed(cwd) == ["PD303"], cwd


def test_the_search_stops_at_the_repositorys_top(tmp_path: Path) -> None:
    # GIVEN a pyproject.toml above a repository (a folder with .git), which has none of its own
    write_tree(tmp_path, {"pyproject.toml": '[tool.pooldoctor]\nselect = ["PD303"]\n',
                     "repo/app/__init__.py": ""})  # fmt: skip
    (tmp_path / "repo/.git").mkdir()
    # WHEN scan runs inside the repository, THEN the table outside it is not read
    listed = _listed(tmp_path / "repo/app")
    assert len(listed) > 1 and "PD303" in listed


def test_exclude_globs_are_relative_to_the_pyproject(tmp_path: Path) -> None:
    # GIVEN a project that excludes legacy/ of its app, by a path relative to its pyproject.toml,
    # and the same leaking wrapper in legacy/ and in current/
    write_tree(tmp_path, {
        "pyproject.toml": '[tool.pooldoctor]\nexclude = ["app/legacy/*"]\nselect = ["PD303"]\n',
        "app/legacy/wrap.py": LEAKY_WRAPPER,
        "app/current/wrap.py": LEAKY_WRAPPER,
    })  # fmt: skip
    # WHEN scan runs from the project's root and from app/
    for cwd, shown in ((tmp_path, "app/current/wrap.py"), (tmp_path / "app", "current/wrap.py")):
        proc = pooldoctor("scan", cwd=cwd)
        # THEN only current/ is reported, from both
        assert proc.returncode == 1, proc.stderr
        assert f"{shown}:" in proc.stdout, proc.stdout
        assert "legacy" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("command", ["scan", "check"])
def test_an_unknown_key_is_one_line_naming_it_with_the_known_ones(
    command: str, tmp_path: Path
) -> None:
    # GIVEN `wrapper` for `wrappers`: ignored, it would turn a CI gate into a no-op
    (tmp_path / "pyproject.toml").write_text('[tool.pooldoctor]\nwrapper = ["a.b:c"]\n')
    (tmp_path / "sub").mkdir()
    args = ("--settings", "mysite.settings") if command == "check" else ()
    # WHEN the command runs, from a sub-folder at that
    proc = pooldoctor(command, *args, cwd=tmp_path / "sub")
    # THEN exit 2 and one line: the key, a did-you-mean, every known key
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "[tool.pooldoctor] has an unknown key 'wrapper'" in proc.stderr
    assert "did you mean 'wrappers'?" in proc.stderr
    assert "known keys: exclude, ignore, max-file-size, select, wrappers" in proc.stderr
    assert str(tmp_path / "pyproject.toml") in proc.stderr


def test_an_unknown_key_far_from_any_known_one_has_no_guess(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pooldoctor]\ncolour = true\n")
    with pytest.raises(UsageError) as raised:
        tool_config(tmp_path)
    assert "unknown key 'colour'" in str(raised.value)
    assert "did you mean" not in str(raised.value)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('select = "PD3"', "select = 'PD3' is not a list of strings"),
        ("exclude = [1]", "exclude = [1] is not a list of strings"),
        ("wrappers = {a = 1}", "wrappers = {'a': 1} is not a list of strings"),
        ("max-file-size = true", "max-file-size = True is not a size"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line(tmp_path: Path, line: str, said: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.pooldoctor]\n{line}\n")
    proc = pooldoctor("scan", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert said in proc.stderr


def test_rebase_globs(tmp_path: Path) -> None:
    # Globs written relative to the pyproject's folder, for matching under app/ of it.
    patterns = ["app/legacy/*", "other/*", "*/migrations/*", "settings_local.py", "a*/gen/*"]
    assert rebase_globs(patterns, tmp_path, tmp_path) == patterns
    assert rebase_globs(patterns, tmp_path, tmp_path / "app") == [
        "legacy/*",
        "*/migrations/*",
        "settings_local.py",
        "gen/*",
    ]
    assert rebase_globs(["app/*", "app/x/*"], tmp_path, tmp_path / "app" / "deep") == ["*"]
    assert rebase_globs(["app/deep/x/*"], tmp_path, tmp_path / "app" / "deep") == ["x/*"]
