"""What a Celery prefork child gets of the pool its parent had open at the fork, measured.

The run-time twin of scan's PD313: scan reads the Celery version and the project's handlers;
this runs them. In a short-lived process (``python -m pooldoctor.hosts.celery.fork``, spec on
stdin) the project is loaded as a subject process loads it, with its own Celery app (found as
Celery's Django guide lays a project out: the settings' package imports its ``celery`` module).
The parent then does what a prefork worker's parent does:

1. calls the Django fix-up's own ``worker_init`` receiver (:meth:`DjangoFixup.on_worker_init`)
   with a prefork worker as sender, which installs its worker part (``DjangoWorkerFixup``) and
   closes the parent's connections as a real worker does at start;
2. opens the pool with one read-only query (``SELECT 1``) and returns the connection to it: a
   pool open at the fork, as a query at import, in ``AppConfig.ready()`` or in a project's
   ``worker_init`` handler leaves it (``simulate --prefork`` warms its parent the same way);
3. forks; the child sends ``worker_process_init`` with the sender this Celery's
   ``celery.concurrency.prefork.process_initializer`` uses, so every receiver runs: the
   project's and the fix-up's ``on_worker_process_init``.

The child then looks, without creating one, at the pool Django keeps for the alias
(``DatabaseWrapper._connection_pools``): still the parent's object and not closed means every
child shares the parent's pool and its sockets. The child writes what it found to a pipe and
leaves with ``os._exit`` (no atexit handler, no finaliser touches the parent's connections); it
does nothing to them beyond what the receivers do. Both processes are bounded in time.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import warnings
from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.core.model import ForkCheck
from pooldoctor.core.project import ProjectSpec
from pooldoctor.hosts.celery.apps import find_app, receiver_name

# The whole measurement: interpreter start, Django and the project's import, one query, a fork.
TIMEOUT = 30.0
# The child runs the worker_process_init receivers only.
CHILD_TIMEOUT = 10.0
HOSTNAME = "pooldoctor-fork@localhost"


def measure(
    spec: ProjectSpec, application_name: str, app_hint: str = "", timeout: float = TIMEOUT
) -> ForkCheck | None:
    """Fork once in a fresh process and report what the child kept; None when the project has no
    Celery app or no pool there. Raises nothing: a measurement that failed is a ForkCheck whose
    detail says why. ``app_hint``: :func:`locate_app`'s answer."""
    payload = json.dumps(
        {"project": spec.to_dict(), "application_name": application_name, "app": app_hint}
    )
    args = [sys.executable, "-m", "pooldoctor.hosts.celery.fork"]
    proc = subprocess.Popen(args, cwd=spec.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **lifeline.popen_options())  # fmt: skip
    try:
        out, err = proc.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = "", f"no answer within {timeout:g} s"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:
        found = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = next((line for line in reversed(err.splitlines()) if line.strip()), "")
        found = {"app": "?", "detail": f"the fork check did not finish: {last or 'no output'}"}
    if found.get("app") is None:
        return None
    return ForkCheck(
        alias=spec.alias,
        celery=str(found.get("celery", "")),
        app=str(found["app"]),
        django_fixup=bool(found.get("django_fixup")),
        receivers=tuple(found.get("receivers", ())),
        kept_pool=bool(found.get("kept_pool")),
        detail=str(found["detail"]),
        errors=tuple(found.get("errors", ())),
    )


def main() -> int:
    lifeline.arm()  # ends this process and its fork when pooldoctor ends, kill -9 too
    spec = json.loads(sys.stdin.read())
    out, sys.stdout = sys.stdout, sys.stderr  # the project's prints must not mix with the answer
    found = run(ProjectSpec.from_dict(spec["project"]), spec["application_name"], spec["app"])
    out.write(json.dumps(found, sort_keys=True) + "\n")
    out.flush()
    return 0


def run(spec: ProjectSpec, application_name: str, app_hint: str = "") -> dict[str, Any]:
    """The parent's side: load the project, open the pool, fork, read what the child found."""
    import celery
    import django
    from django.db import connections

    from pooldoctor.core import project

    project.prepare_sys_path(spec)
    os.environ["DJANGO_SETTINGS_MODULE"] = spec.settings
    project.import_settings(spec.settings)
    entry = project.database_settings(spec.alias)
    project.apply_overrides(entry, spec, application_name)
    django.setup()
    app, where = find_app(spec.settings, app_hint)
    if app is None or not entry.get("OPTIONS", {}).get("pool"):
        return {"app": None}
    found: dict[str, Any] = {"app": where, "celery": celery.__version__}
    fixup = next(
        (f for f in getattr(app, "_fixups", ()) if type(f).__name__ == "DjangoFixup"), None
    )
    found["django_fixup"] = fixup is not None
    if fixup is not None:
        fixup.on_worker_init(sender=_PreforkWorker(app))
    connection = connections[spec.alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        connection.close()  # back to the pool, which stays open
        pools = type(connection)._connection_pools
        parent_pool = pools.get(spec.alias)
        if parent_pool is None:
            return {**found, "detail": "the parent's query opened no pool"}
        return {**found, **_fork(spec.alias, id(parent_pool))}
    finally:
        connection.close()
        with contextlib.suppress(Exception):  # a pool the child's receivers broke
            connection.close_pool()


def _fork(alias: str, parent_pool: int) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # The pool's worker threads run in the parent, as they do in a real worker's parent.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        try:
            signal.alarm(int(CHILD_TIMEOUT))
            try:
                answer = _child(alias, parent_pool)
            except Exception as exc:
                answer = {"detail": f"the check in the child raised {type(exc).__name__}: {exc}"}
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(json.dumps(answer))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        ready, _, _ = select.select([pipe], [], [], CHILD_TIMEOUT + 1)
        text = pipe.read() if ready else ""
    deadline = time.monotonic() + 2
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    if not text:
        return {"detail": f"the forked child sent no answer within {CHILD_TIMEOUT:g} s"}
    found: dict[str, Any] = json.loads(text)
    return found


def _child(alias: str, parent_pool: int) -> dict[str, Any]:
    """In the forked child: what Celery's prefork initializer signals, then what is left."""
    from celery import signals
    from django.db import connections

    receivers = [receiver_name(r) for r in signals.worker_process_init._live_receivers(None)]
    responses = signals.worker_process_init.send(sender=_process_init_sender())
    errors = [f"{receiver_name(r)}: {type(e).__name__}: {e}" for r, e in responses
              if isinstance(e, Exception)]  # fmt: skip
    pool = type(connections[alias])._connection_pools.get(alias)
    if pool is None:
        detail = "no pool: it was discarded"
    elif id(pool) != parent_pool:
        detail = "a pool of its own"
    elif pool.closed:
        detail = "the parent's pool, closed"
    else:
        detail = "the parent's pool, open, with the parent's connections"
    kept = pool is not None and id(pool) == parent_pool and not pool.closed
    return {"receivers": receivers, "errors": errors, "kept_pool": kept, "detail": detail}


def _process_init_sender() -> str | None:
    """The sender this Celery's prefork initializer passes: None before 5.6, the hostname after."""
    from celery.concurrency import prefork

    source = inspect.getsource(prefork.process_initializer)
    sent = re.search(r"worker_process_init\.send\(sender=(\w+)\)", source)
    return HOSTNAME if sent and sent.group(1) == "hostname" else None


class _PreforkWorker:
    """What the fix-up reads of the worker that sends ``worker_init``: its app and its pool class
    (``WorkController.pool_cls`` once the worker is set up: prefork's TaskPool)."""

    def __init__(self, app: Any) -> None:
        from celery.concurrency import get_implementation

        self.app = app
        self.pool_cls = get_implementation("prefork")


if __name__ == "__main__":
    raise SystemExit(main())
