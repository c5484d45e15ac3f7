"""check's run-time twin of scan's PD313: a prefork child of the project's own Celery app, forked
once from a parent whose pool is open, keeps that pool or not (PD207).

Measured, not looked up: on Celery 5.5 the Django fix-up's child handler closes the inherited
connection's socket but keeps the pool; from 5.6 it calls close_pool(). Each test picks its
expectation from ``celery.__version__``, so the file passes on Celery 5.5 and on 5.7.
"""

from __future__ import annotations

import json
import time
from typing import Any

import celery
import pytest
from conftest import PROJECTS, pooldoctor, pooldoctor_backends

from pooldoctor.core import findings
from pooldoctor.core.model import ForkCheck
from pooldoctor.core.project import ProjectSpec, parse_database_url
from pooldoctor.hosts.celery import CeleryHost, apps, fork

GUIDEPROJ = PROJECTS / "guideproj"
CELERY_VERSION = tuple(int(part) for part in celery.__version__.split(".")[:2])
FIXUP_DISCARDS_POOL = CELERY_VERSION >= (5, 6)
FIXUP = "celery.fixups.django.DjangoWorkerFixup.on_worker_process_init"
HANDLER = "guideproj.celery.discard_inherited_pool"
SIMULATE = (
    "pooldoctor simulate --prefork --settings guideproj.settings --alias default "
    "--app guideproj.celery:app"
)


def _spec(database_url: str) -> ProjectSpec:
    return ProjectSpec(settings="guideproj.settings", alias="default", pythonpath=(),
                       cwd=str(GUIDEPROJ), database=parse_database_url(database_url))  # fmt: skip


@pytest.mark.parametrize("discard", [False, True], ids=["no-handler", "handler"])
def test_a_forked_child_keeps_the_pool_only_where_nothing_discards_it(
    database_url: str, discard: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the guide-style project (pool on), with or without its worker_process_init handler
    monkeypatch.setenv("GUIDEPROJ_DISCARD_POOL", "1" if discard else "0")
    name = f"pooldoctor:forktest{int(discard)}:fork"
    # WHEN a child is forked from a parent whose pool is open
    started = time.monotonic()
    found = fork.measure(_spec(database_url), name)
    seconds = time.monotonic() - started
    # THEN the project's app, the fix-up and every receiver that ran are named
    assert found is not None
    assert (found.app, found.celery, found.django_fixup) == (
        "guideproj.celery:app", celery.__version__, True)  # fmt: skip
    assert found.receivers == ((HANDLER, FIXUP) if discard else (FIXUP,))
    assert found.errors == ()
    # AND the child kept the parent's pool exactly where neither the handler nor the fix-up
    #   discards it: Celery < 5.6 without the handler
    assert found.kept_pool is (not discard and not FIXUP_DISCARDS_POOL), found
    assert found.detail == (
        "the parent's pool, open, with the parent's connections" if found.kept_pool
        else "no pool: it was discarded")  # fmt: skip
    assert seconds < fork.TIMEOUT
    # AND nothing is left on the server
    assert [b for b in pooldoctor_backends(database_url) if b.startswith(name)] == []


def _check(database_url: str, discard: bool) -> dict[str, Any]:
    env = {"GUIDEPROJ_DISCARD_POOL": "1" if discard else "0"}
    proc = pooldoctor("check", "--settings", "guideproj.settings", "--modes", "async-to-sync",
                      "--tasks", "3", "--database", database_url, "--format", "json",
                      cwd=GUIDEPROJ, env=env)  # fmt: skip
    assert proc.stdout.startswith("{"), proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_check_reports_pd207_where_the_child_kept_the_pool(database_url: str) -> None:
    # GIVEN the guide-style project without a handler of its own
    report = _check(database_url, discard=False)
    pd207 = [f for f in report["findings"] if f["code"] == "PD207"]
    if FIXUP_DISCARDS_POOL:
        # THEN (Celery >= 5.6) the fix-up's close_pool() in the child discards it: nothing
        assert pd207 == [], pd207
        return
    # THEN (Celery < 5.6) check says what the child kept, whose code ran, and how to see it
    (finding,) = pd207
    assert finding["severity"] == "error"
    assert finding["message"] == (
        "a prefork child of guideproj.celery:app kept the pool its parent opened (the parent's "
        f"pool, open, with the parent's connections): worker_process_init receivers ran: [{FIXUP}]"
        f"; Celery {celery.__version__}'s Django fix-up did not discard it; every worker process "
        "shares the parent's connections for 'default'"
    )
    assert finding["fix"].endswith(f"with: {SIMULATE}")


def test_check_with_the_projects_handler_reports_no_pd207(database_url: str) -> None:
    report = _check(database_url, discard=True)
    assert [f for f in report["findings"] if f["code"] == "PD207"] == []


def test_no_celery_app_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN settings with no guide-style celery module and no Celery app created
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a process was started")

    monkeypatch.setattr(fork, "measure", boom)
    monkeypatch.setattr(apps, "locate_app", lambda settings: None)
    spec = ProjectSpec(settings="nosuchproject.settings", alias="default", pythonpath=(), cwd=".")
    # THEN the check is skipped before any process
    assert CeleryHost().fork_check(spec, "pooldoctor:x:fork") is None
    assert apps._packages("a.b.settings") == ["a.b", "a"]
    assert apps._find_spec("nosuchproject.celery") is False


def test_pd207_text_from_a_measurement() -> None:
    measured = ForkCheck(alias="replica", celery="5.5.3", app="shop.celery:app",
                         django_fixup=True, receivers=("shop.signals.setup_logging", FIXUP),
                         kept_pool=True, detail="the parent's pool, open, with the parent's "
                         "connections")  # fmt: skip
    (finding,) = findings.shared_pool(measured, "shop.settings.prod", "replica")
    assert finding.code == "PD207"
    assert f"receivers ran: [shop.signals.setup_logging, {FIXUP}]" in finding.message
    assert "Celery 5.5.3's Django fix-up did not discard it" in finding.message
    assert "connections['replica'].close_pool()" in finding.fix
    assert finding.fix.endswith(
        "pooldoctor simulate --prefork --settings shop.settings.prod --alias replica "
        "--app shop.celery:app"
    )
    kept_nothing = ForkCheck("default", "5.7.0", "shop.celery:app", True, (FIXUP,), False, "")
    assert findings.shared_pool(kept_nothing, "shop.settings", "default") == []
    assert findings.shared_pool(None, "shop.settings", "default") == []
