"""``python -m pooldoctor.hosts.servers SERVER ARGS...``: the server's own command line
(``gunicorn ARGS``, ``uvicorn ARGS``, ``daphne ARGS``), run as ``python -m SERVER ARGS`` runs it,
after arming pooldoctor's lifeline in this process: should pooldoctor die, even by ``kill -9``,
this process kills its whole group (the server's master and every worker it forked or spawned).
"""

from __future__ import annotations

import os
import runpy
import sys

from pooldoctor.core import lifeline
from pooldoctor.hosts.servers import MASTER_ENV


def main(argv: list[str]) -> None:
    name, *args = argv
    # A clean-up of its own (none needed) turns off the parent-death signal, which would kill
    # this process alone and orphan the workers: the pipe's end kills the whole group instead.
    lifeline.arm(on_death=lambda: None)
    os.environ[MASTER_ENV] = str(os.getpid())
    sys.argv = [name, *args]
    runpy.run_module(name, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
