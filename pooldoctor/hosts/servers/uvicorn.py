"""uvicorn: one process, or with ``--workers N`` a supervisor that *spawns* its workers (each a
fresh interpreter that imports the application itself): nothing opened at import is inherited,
so the fork hazard does not apply. What shows here is the ASGI request path: a connection Django
keeps (``CONN_MAX_AGE``) on the request's thread-sensitive thread, which ends with the request.
"""

from __future__ import annotations

from pathlib import Path

from pooldoctor.hosts.servers import APPLICATION, Server, ServerOptions


class Uvicorn(Server):
    name = "uvicorn"
    distribution = "uvicorn"

    def concurrency(self, options: ServerOptions) -> str:
        return f"--workers {options.workers} (spawned)"

    def arguments(self, port: int, options: ServerOptions, directory: Path,
                  apply_fix: bool) -> list[str]:  # fmt: skip
        return ["--host", "127.0.0.1", "--port", str(port), "--workers", str(options.workers),
                "--log-level", "warning", "--no-access-log", "--lifespan", "on",
                APPLICATION]  # fmt: skip
