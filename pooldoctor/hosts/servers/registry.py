"""The servers ``simulate --server`` can run, by name."""

from __future__ import annotations

from pooldoctor.hosts.servers import Server
from pooldoctor.hosts.servers.daphne import Daphne
from pooldoctor.hosts.servers.gunicorn import Gunicorn
from pooldoctor.hosts.servers.uvicorn import Uvicorn


def servers() -> dict[str, Server]:
    return {s.name: s for s in (Gunicorn(), Uvicorn(), Daphne())}
