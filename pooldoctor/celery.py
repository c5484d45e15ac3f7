"""The worker side of ``pooldoctor inspect``, as the project imports it: one line in its Celery
module, after the app is created::

    import pooldoctor.celery
    pooldoctor.celery.install(app)

The code lives with the Celery host (:mod:`pooldoctor.hosts.celery.install`); this module is the
stable public name.
"""

from __future__ import annotations

from pooldoctor.hosts.celery.install import COMMAND, install, node_directory

__all__ = ["COMMAND", "install", "node_directory"]
