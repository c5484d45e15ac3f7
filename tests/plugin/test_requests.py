"""Requests through Django's test ``Client``, ``AsyncClient`` and the in-process ASGI handler are
judged like any other checkout: a request that leaves a connection with a thread other than the
test's own fails the test, naming the request and the view's line; clean views pass.

Each leak is checked against a measurement that uses nothing of pooldoctor: psycopg_pool's own
counters with the pool, the server's sessions (``pg_stat_activity``) without one.
"""

from __future__ import annotations

import json

import pytest

from .project import RECIPES, line_of, run

VIEWS = """
from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse

from probeapp.models import Database


def sync_view(request):
    return HttpResponse(str(Database.objects.count()))  # sync view


async def async_view(request):
    return HttpResponse(str(await Database.objects.acount()))  # async view


def count():
    return Database.objects.count()  # thread-insensitive


async def insensitive_view(request):
    return HttpResponse(str(await sync_to_async(count, thread_sensitive=False)()))


async def streaming_view(request):
    async def chunks():
        yield str(await Database.objects.acount())  # streamed

    return StreamingHttpResponse(chunks())
"""

URLS = """
from django.urls import path

import views

urlpatterns = [
    path("sync/", views.sync_view),
    path("async/", views.async_view),
    path("insensitive/", views.insensitive_view),
    path("stream/", views.streaming_view),
]
"""

# Records what each test's call did by a measure of its own, in slots.json or sessions.json.
RECORDER = """
import json
from pathlib import Path


def record(name, key, value):
    path = Path(name)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data))
"""

# With the pool: the slots psycopg_pool counts in use after the call, less those before it.
POOL_CONFTEST = (
    RECORDER
    + """
import pytest
from django.db import connections


def in_use():
    stats = connections["default"].pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = in_use()
    try:
        return (yield)
    finally:
        record("slots.json", item.name, in_use() - before)
"""
)

CLIENT_TESTS = (
    RECIPES
    + """
from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import TestCase


@pytest.fixture(autouse=True)
def give_the_process_wide_thread_connection_back():
    # So that every test that uses it checks a connection out (see test_leaks.py)
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/sync/", "/async/"])
def test_client_clean(client, path):
    assert int(client.get(path).content) > 0


@pytest.mark.django_db
def test_client_leaks(client):
    assert int(client.get("/insensitive/", {"page": 2}).content) > 0


class TestAsyncMethods(TestCase):
    async def test_async_client_clean(self):
        assert int((await self.async_client.get("/sync/")).content) > 0

    async def test_async_client_leaks(self):
        assert int((await self.async_client.post("/insensitive/")).content) > 0


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_async_client_streams(async_client):
    response = await async_client.get("/stream/")
    assert int(b"".join([chunk async for chunk in response.streaming_content])) > 0


@pytest.mark.django_db
@pytest.mark.pooldoctor(enabled=False)
def test_reads_the_requests_in_its_census(client, pooldoctor_census):
    from pooldoctor.pytest_plugin import RequestLeak

    client.get("/sync/")
    client.get("/insensitive/")
    client.get("/insensitive/")
    census = pooldoctor_census.take()
    assert census.requests == (RequestLeak("GET /insensitive/", lost=2, pinned=0),)
    [site] = census.sites
    assert (site.file, site.function, site.count) == ("views.py", "count", 2)
    assert site.tasks == (
        "test_requests.py::test_reads_the_requests_in_its_census during GET /insensitive/",
    )


@pytest.mark.django_db
def test_leaks_itself_after_a_clean_request(client):
    assert int(client.get("/sync/").content) > 0
    assert asyncio.run(count_in_context()) > 0
"""
)


def _write_site(project: pytest.Pytester, settings: str = "") -> None:
    project.makepyfile(views=VIEWS, urls=URLS)
    path = project.path / "settings.py"
    path.write_text(path.read_text() + '\nROOT_URLCONF = "urls"\n' + settings)


def test_client_and_async_client_requests_are_judged_naming_the_request(
    project: pytest.Pytester,
) -> None:
    # GIVEN views that are clean (sync, and async through the thread-sensitive ORM), one whose
    # ORM runs in a thread-insensitive executor thread that ends with the request, and an async
    # streamed one, requested through Client, AsyncClient in TestCase and in pytest-asyncio
    # tests; a test that leaks by itself after a clean request, and one that reads the requests
    # in its census; in a pool of 8 slots
    _write_site(project, '_DATABASE["OPTIONS"]["pool"]["max_size"] = 8\n')
    project.makeconftest(POOL_CONFTEST)
    views = project.path / "views.py"
    module = project.makepyfile(test_requests=CLIENT_TESTS)
    insensitive = line_of(views, "# thread-insensitive")
    streamed = line_of(views, "# streamed")

    # WHEN they run with pooldoctor on
    result = run(project, "--pooldoctor")

    # THEN each leaking request fails its test, the headline naming the request (method and
    # path, no query string), the site naming the view's line and the request; the test's own
    # leak is not put on its clean request; the clean views pass
    result.assert_outcomes(passed=4, failed=4)
    result.stdout.fnmatch_lines(
        [
            "*_ test_client_leaks _*",
            "pooldoctor: this test lost 1 pool slot of 'default' and left 0 connections checked "
            "out in other threads, during GET /insensitive/",
            f"LOST    views.py:{insensitive} in count() via asyncio default executor",
            "        (thread ended * ms * the test returned; connection garbage-collected while "
            "checked out)",
            "        x1 connection, from test_requests.py::test_client_leaks during GET "
            "/insensitive/",
            f"        stack: * < count (views.py:{insensitive}) < * < insensitive_view "
            "(views.py:*) *",
            "requests that left connections of 'default' behind: GET /insensitive/ (1 lost)",
            "*_ TestAsyncMethods.test_async_client_leaks _*",
            "pooldoctor: this test lost 1 pool slot of 'default' and left 0 connections checked "
            "out in other threads, during POST /insensitive/",
            f"LOST    views.py:{insensitive} in count() via asyncio default executor",
            "        x1 connection, from test_requests.py::TestAsyncMethods::"
            "test_async_client_leaks during POST /insensitive/",
            "requests that left connections of 'default' behind: POST /insensitive/ (1 lost)",
            "*_ test_async_client_streams _*",
            "pooldoctor: this test lost 0 pool slots of 'default' and left 1 connection checked "
            "out in other threads, during GET /stream/",
            f"PINNED  views.py:{streamed} in chunks() via process-wide sync_to_async executor",
            "        x1 connection, from test_requests.py::test_async_client_streams during GET "
            "/stream/",
            "requests that left connections of 'default' behind: GET /stream/ (1 pinned)",
            "*_ test_leaks_itself_after_a_clean_request _*",
            "pooldoctor: this test lost 1 pool slot of 'default' and left 0 connections checked "
            "out in other threads",
            f"LOST    test_requests.py:{line_of(module, '# leaks')} in count_in_context() via "
            "ThreadSensitiveContext executor",
            "        x1 connection, from test_requests.py::test_leaks_itself_after_a_clean_request",
            "threads holding connections of 'default': *",
        ]
    )
    output = result.stdout.str()
    start = output.index("_ test_leaks_itself_after_a_clean_request _")
    assert "GET /sync/" not in output[start : output.index("- pooldoctor -", start)]
    result.stdout.fnmatch_lines(
        [
            "FAILED test_requests.py::test_client_leaks - pooldoctor: * during GET /insensitive/",
        ]
    )
    # AND psycopg_pool's own counters agree, test by test: the slots still out after the call
    # are those pooldoctor found lost or pinned, and none for a clean view
    slots = json.loads((project.path / "slots.json").read_text())
    assert slots == {
        "test_client_clean[/sync/]": 0,
        "test_client_clean[/async/]": 0,
        "test_client_leaks": 1,
        "test_async_client_clean": 0,
        "test_async_client_leaks": 1,
        "test_async_client_streams": 1,
        "test_reads_the_requests_in_its_census": 2,
        "test_leaks_itself_after_a_clean_request": 1,
    }


# Without a pool: CONN_MAX_AGE from the environment, and an application_name of this process's
# own, so that the server's sessions of the project can be counted.
NO_POOL = """
import os

for _entry in DATABASES.values():
    _entry["OPTIONS"].pop("pool", None)
    _entry["OPTIONS"]["application_name"] = f"pooldoctor-requests-{os.getpid()}"
    _entry["CONN_MAX_AGE"] = int(os.environ["POOLDOCTOR_TEST_CONN_MAX_AGE"])
"""

# The server's sessions, counted as tests/oracle.py does: with the collector off a connection
# nobody closed stays open and listed; one closed properly is waited out of the server's list.
SESSIONS_CONFTEST = (
    RECORDER
    + """
import gc
import time

import psycopg
import pytest
from django.conf import settings
from django.db import connection

APP = settings.DATABASES["default"]["OPTIONS"]["application_name"]


def server_sessions():
    params = connection.get_connection_params()
    params["application_name"] = "pooldoctor-requests-observer"
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
    deadline = time.monotonic() + 5
    with psycopg.connect(**params) as conn:
        while True:
            server = {row[0] for row in conn.execute(query, (APP,)).fetchall()}
            here = {
                obj.info.backend_pid
                for obj in gc.get_objects()
                if isinstance(obj, psycopg.Connection) and not obj.closed
            }
            if server <= here or time.monotonic() > deadline:
                return len(server)
            time.sleep(0.02)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    gc.disable()
    try:
        before = server_sessions()
        try:
            return (yield)
        finally:
            record("sessions.json", item.name, server_sessions() - before)
    finally:
        gc.enable()
"""
)

ASGI_TESTS = """
import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application


async def get(path):
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
    }
    application = ApplicationCommunicator(get_asgi_application(), scope)
    await application.send_input({"type": "http.request", "body": b""})
    start, body = await application.receive_output(5), b""
    while True:
        message = await application.receive_output(5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await application.wait(5)
    return start["status"], body


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/sync/", "/async/", "/stream/"])
def test_asgi(path):
    status, body = async_to_sync(get)(path)
    assert status == 200 and int(body) > 0


@pytest.mark.django_db
def test_client_in_the_tests_thread(client):
    assert int(client.get("/sync/").content) > 0
"""


@pytest.mark.parametrize("conn_max_age", [60, 0])
def test_asgi_requests_without_a_pool_leave_sessions_open_with_conn_max_age(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, conn_max_age: int
) -> None:
    # GIVEN no pool, CONN_MAX_AGE from the parameter, and a sync, an async and a streamed view
    # requested through the in-process ASGI handler (a thread of its own per request), and the
    # sync view through Client (in the test's thread, inside pytest-django's transaction)
    monkeypatch.setenv("POOLDOCTOR_TEST_CONN_MAX_AGE", str(conn_max_age))
    _write_site(project, NO_POOL)
    project.makeconftest(SESSIONS_CONFTEST)
    views = project.path / "views.py"
    project.makepyfile(test_asgi=ASGI_TESTS)

    # WHEN they run with pooldoctor on
    result = run(project, "--pooldoctor")

    sessions = json.loads((project.path / "sessions.json").read_text())
    if conn_max_age:
        # THEN with CONN_MAX_AGE each ASGI request leaves its thread's session open when the
        # thread ends, and fails naming the request and the view's line; the server lists one
        # more session of the project after each of those calls, none after the Client's
        result.assert_outcomes(passed=1, failed=3)
        for path, marker, function in (
            ("/sync/", "# sync view", "sync_view"),
            ("/async/", "# async view", "async_view"),
            ("/stream/", "# streamed", "chunks"),
        ):
            result.stdout.fnmatch_lines(
                [
                    f"*_ test_asgi[[]{path}[]] _*",
                    "pooldoctor: this test lost 1 open connection of 'default' and left 0 "
                    f"connections checked out in other threads, during GET {path}",
                    f"LOST    views.py:{line_of(views, marker)} in {function}() via "
                    "ThreadSensitiveContext executor",
                    f"        x1 connection, from test_asgi.py::test_asgi[[]{path}[]] during GET "
                    f"{path}",
                    f"requests that left connections of 'default' behind: GET {path} (1 lost)",
                ]
            )
        expected = 1
    else:
        # THEN without it each request's connection is closed at request_finished: all pass,
        # and the server lists no session more after any of them
        result.assert_outcomes(passed=4)
        result.stdout.no_fnmatch_line("pooldoctor: *")
        expected = 0
    assert sessions == {
        "test_asgi[/sync/]": expected,
        "test_asgi[/async/]": expected,
        "test_asgi[/stream/]": expected,
        "test_client_in_the_tests_thread": 0,
    }
