"""The request path in process: the request modes and the project's own URLs (``check --url``),
sent through the project's ASGI (or WSGI) application, judged as the independent measurement
judges them, in the three connection set-ups."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECTS, by_subject, check_json, pooldoctor, pooldoctor_backends
from test_bad_input import _wait_for
from test_verdicts_match_oracle import CONFIGURATIONS, _oracle

from pooldoctor.core.probes import all_modes

REQUEST_MODES = [m.name for m in all_modes() if m.request]
WEB = PROJECTS / "webproj"


def test_the_request_modes_are_listed_and_not_run_by_default(database_url: str) -> None:
    # GIVEN the request modes, WHEN check runs with no --url and no --modes
    listing = pooldoctor("check", "--list-modes", cwd=WEB).stdout
    _, report = check_json("--settings", "webproj.settings", cwd=WEB, database_url=database_url)
    # THEN they are listed, and only the task modes ran
    assert len(REQUEST_MODES) == 5
    assert all(name in listing for name in REQUEST_MODES)
    assert not set(REQUEST_MODES) & set(by_subject(report))


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_every_request_mode_matches_the_independent_measurement(
    config: str, database_url: str
) -> None:
    env = CONFIGURATIONS[config]
    # GIVEN the extras project (no URLconf of its own) in one of the three set-ups
    _, report = check_json("--settings", "extras.settings", "--modes", ",".join(REQUEST_MODES),
                           cwd=PROJECTS / "extras", database_url=database_url, env=env)  # fmt: skip
    # WHEN the oracle sends the same requests through Django's ASGI handler, counting only the
    #   pool's counters or the server's sessions
    expected = {name: _oracle(name, env, database_url) for name in REQUEST_MODES}
    # THEN the verdicts agree, mode by mode. The thread-insensitive view's connections sit on the
    #   loop's default executor threads, whose number grows when a call is submitted before the
    #   last one's thread is back (a race of the executor's own): pinned or growing, never clean.
    got = {n: r["verdict"] for n, r in by_subject(report).items()}
    racy = "thread-insensitive-view"
    assert {got.pop(racy), expected.pop(racy)} <= {"leak", "pinned"}
    assert got == expected
    if config == "persistent":  # one server session per request (the thread dies with it)
        assert expected["sync-view"] == expected["async-view"] == "leak"


def _url_check(settings: str, database_url: str, *args: str) -> tuple[int, dict]:
    urls = ("--url", "/databases/", "--url", "/async-databases/")
    return check_json("--settings", f"webproj.{settings}", *urls, *args, cwd=WEB,
                      database_url=database_url)  # fmt: skip


def test_a_url_under_asgi_with_conn_max_age_leaks_a_session_per_request(database_url: str) -> None:
    # GIVEN CONN_MAX_AGE = 60 without a pool, WHEN the project's URLs are requested 12 times
    code, report = _url_check("settings_age60", database_url)
    urls = {n: r for n, r in by_subject(report).items() if r["kind"] == "url"}
    # THEN each URL lost a server connection per request, the project's verdict is leak (exit 1)
    assert code == 1 and report["verdict"] == "leak"
    assert set(urls) == {"GET /databases/", "GET /async-databases/"}
    for result in urls.values():
        assert result["verdict"] == "leak" and result["lost_slots"] == 12
        # and the leak site is the project's own view
        assert any(s["file"].endswith("webproj/views.py") for s in result["leak_sites"])
    # and the fix, CONN_MAX_AGE = 0, was measured on the same URLs in the same run: clean
    for result in urls.values():
        fix = result["fix"]
        assert fix["subject"] == "conn-max-age-0" and fix["applied_to"] == result["subject"]
        assert fix["measured"] == "clean", fix["detail"]
    assert any(f["code"] == "PD201" and "CONN_MAX_AGE" in f["fix"] for f in report["findings"])
    # and the request modes ran beside them
    assert set(REQUEST_MODES) <= set(by_subject(report))
    # and nothing of this run's is left on the server, once the server saw the sockets close
    assert _wait_for(lambda: pooldoctor_backends(database_url) == [], seconds=10)


@pytest.mark.parametrize("settings", ["settings", "settings_age0"])
def test_a_url_is_clean_with_the_pool_or_conn_max_age_0(settings: str, database_url: str) -> None:
    code, report = _url_check(settings, database_url, "--concurrency", "4", "--requests", "8")
    urls = [r for r in report["results"] if r["kind"] == "url"]
    assert code == 0 and report["verdict"] == "clean"
    assert [r["verdict"] for r in urls] == ["clean", "clean"]
    assert [r["fix"] for r in urls] == [None, None]  # nothing to fix, nothing rerun
    # 8 requests, 4 at a time: a census after each round of 4
    assert all(len(r["evidence"]["census"]) == 2 for r in urls)


def test_a_url_through_the_wsgi_application_with_persistent_threads(database_url: str) -> None:
    # GIVEN CONN_MAX_AGE = 60 served by 2 long-lived WSGI threads: each keeps one connection
    _, report = _url_check("settings_age60", database_url, "--wsgi", "webproj.wsgi:application",
                           "--modes", "sync-view", "--concurrency", "2")  # fmt: skip
    sync = by_subject(report)["GET /databases/"]
    # THEN nothing is lost: the next request on the same thread reuses the connection
    assert sync["lost_slots"] == 0, sync["summary"]
    assert sync["verdict"] in ("clean", "pinned")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "databases/"], "--url 'databases/' is not a path"),
        (["--url", "/nowhere/"], "no pattern of the project's URLconf matches '/nowhere/'"),
        (["--url", "/databases/", "--header", "nocolon"], "is not 'NAME: VALUE'"),
        (["--method", "POST"], "--method only apply to --url"),
        (["--url", "/databases/", "--asgi", "a:b", "--wsgi", "c:d"], "--asgi and --wsgi"),
        (["--url", "/databases/", "--user", "1"], "django.contrib.auth is not in INSTALLED_APPS"),
        (["--url", "/databases/", "--asgi", "webproj.nothere:application"], "cannot import"),
    ],
)
def test_bad_request_options_are_one_clear_line(
    args: list[str], message: str, database_url: str, tmp_path: Path
) -> None:
    proc = pooldoctor("check", "--settings", "webproj.settings", "--database", database_url,
                      *args, cwd=WEB)  # fmt: skip
    assert proc.returncode in (2, 3), proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
