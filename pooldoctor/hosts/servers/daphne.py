"""daphne: one process, one Twisted reactor, the ASGI application imported in it (no fork, no
workers). What shows here is the ASGI request path, as under uvicorn.
"""

from __future__ import annotations

from pathlib import Path

from pooldoctor.hosts.servers import APPLICATION, Server, ServerOptions


class Daphne(Server):
    name = "daphne"
    distribution = "daphne"

    def processes(self, options: ServerOptions) -> int:
        return 1

    def concurrency(self, options: ServerOptions) -> str:
        return "1 process"

    def arguments(self, port: int, options: ServerOptions, directory: Path,
                  apply_fix: bool) -> list[str]:  # fmt: skip
        return ["--bind", "127.0.0.1", "--port", str(port), "--verbosity", "0", APPLICATION]
