"""gunicorn: a master that forks its workers (``sync``, ``gthread`` or uvicorn's worker class).

With ``--preload`` the master imports the application before it forks, so whatever the project's
import opens (a query in ``wsgi.py``, in a module it imports, in ``AppConfig.ready()``) is inherited
by every worker: the same sockets in several processes, each reading the other's replies. The fix
pooldoctor runs to prove it is a ``post_fork`` hook in a configuration file it writes in the run's
own directory: each worker closes what it inherited before it serves a request.
"""

from __future__ import annotations

from pathlib import Path

from pooldoctor.hosts.servers import APPLICATION, Server, ServerOptions

WORKER_CLASSES = {"sync": "sync", "gthread": "gthread", "uvicorn": "uvicorn.workers.UvicornWorker"}
THREADS = 4
"""Threads per gthread worker."""

POST_FORK_FIX = """\
# gunicorn.conf.py (gunicorn -c gunicorn.conf.py ...)
def post_fork(server, worker):
    # What the master opened before the fork (a query at import with --preload) is shared by
    # every worker: drop it in each worker before it serves a request.
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        if hasattr(conn, "close_pool"):  # Django 5.1+: the pool and its idle connections
            conn.close_pool()
"""


class Gunicorn(Server):
    name = "gunicorn"
    distribution = "gunicorn"

    def interface(self, options: ServerOptions) -> str:
        return "asgi" if options.worker_class == "uvicorn" else "wsgi"

    def forks(self, options: ServerOptions) -> bool:
        return True

    def concurrency(self, options: ServerOptions) -> str:
        threads = f" --threads {THREADS}" if options.worker_class == "gthread" else ""
        preload = " --preload" if options.preload else ""
        return f"-k {options.worker_class} -w {options.workers}{threads}{preload}"

    def fix(self) -> tuple[str, str]:
        return "post-fork-drop-connections", POST_FORK_FIX

    def arguments(self, port: int, options: ServerOptions, directory: Path,
                  apply_fix: bool) -> list[str]:  # fmt: skip
        config = directory / "gunicorn.conf.py"
        # Always a file of pooldoctor's own: never the project's gunicorn.conf.py from its cwd.
        config.write_text(POST_FORK_FIX if apply_fix else "")
        args = ["--config", str(config), "--bind", f"127.0.0.1:{port}",
                "--workers", str(options.workers),
                "--worker-class", WORKER_CLASSES[options.worker_class],
                "--timeout", str(max(30, int(options.task_timeout * 3))),
                "--graceful-timeout", "2", "--log-level", "warning",
                "--worker-tmp-dir", str(directory / "tmp")]  # fmt: skip
        if options.worker_class == "gthread":
            args += ["--threads", str(THREADS)]
        if options.preload:
            args.append("--preload")
        return [*args, APPLICATION]
