"""The worker side of ``pooldoctor inspect``, as the project imports it: one line in its Celery
module, after the app is created::

    import pooldoctor.celery
    pooldoctor.celery.install(app)

``install(app, metrics_port=9808)`` also serves the census as Prometheus metrics (or
``metrics_textfile=...`` writes them for node_exporter); ``metrics_collector(app)`` gives the
collector to register in a registry the project already serves.

The code lives with the Celery host (:mod:`pooldoctor.hosts.celery.install`); this module is the
stable public name.
"""

from __future__ import annotations

from pooldoctor.hosts.celery.install import COMMAND, install, metrics_collector, node_directory

__all__ = ["COMMAND", "install", "metrics_collector", "node_directory"]
