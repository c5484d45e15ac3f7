"""scan's "confirm with: pooldoctor check --wrapper MODULE:NAME" names the module as check imports
it from the project's root (the folder with manage.py, else the one above the settings package),
wherever scan runs from: not a path turned into dots (``/.tmp.proj.mysite.celeryapp``)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import LEAKY_WRAPPER, pooldoctor

FACTORY = """\
    import asyncio
    from celery import Celery

    app = Celery()

    def async_task(**options):
        def decorator(func):
            def run(*args):
                return asyncio.run(func(*args))
            return app.task(**options)(run)
        return decorator

    @async_task()
    async def refresh(pk):
        from mysite.models import Price
        return await Price.objects.aget(pk=pk)
"""


def _project(root: Path, *, manage: bool) -> Path:
    files = {
        "mysite/__init__.py": "",
        "mysite/settings.py": "DATABASES = {}\n",
        "mysite/celeryapp.py": LEAKY_WRAPPER,
        "mysite/tasks.py": FACTORY,
    }
    if manage:
        files["manage.py"] = "import django\n"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _hints(cwd: Path, *args: str) -> dict[str, str]:
    proc = pooldoctor("scan", *args, "--select", "PD303,PD301", "--format", "json", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    found = json.loads(proc.stdout)["findings"]
    return {
        f["code"]: f["message"].partition("--wrapper ")[2]
        for f in found
        if "--wrapper" in f["message"]
    }


@pytest.mark.parametrize("manage", [True, False], ids=["manage.py", "settings package"])
def test_the_hint_names_the_module_from_the_project_root_wherever_scan_runs(
    tmp_path: Path, manage: bool
) -> None:
    # GIVEN a project (with manage.py, or only its settings package) whose wrappers leak
    project = _project(tmp_path / "proj", manage=manage)
    (tmp_path / "elsewhere").mkdir()
    expected = {"PD303": "mysite.celeryapp:run_async", "PD301": "mysite.tasks:async_task()"}
    # WHEN scan runs from the project's root, from outside it (the project as an argument, by
    # absolute and relative path) and from inside its package
    runs = [
        (project, ()),
        (tmp_path / "elsewhere", (str(project),)),
        (tmp_path / "elsewhere", ("../proj",)),
        (project / "mysite", ()),
    ]
    for cwd, args in runs:
        # THEN every hint names the module as check, run from the project's root, imports it
        assert _hints(cwd, *args) == expected, (cwd, args)
