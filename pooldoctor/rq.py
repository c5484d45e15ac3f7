"""The worker side of ``pooldoctor inspect --runner rq``, as the project imports it: a worker
class made from the project's own, named in ``RQ["WORKER_CLASS"]`` or ``rqworker
--worker-class``::

    import pooldoctor.rq
    from rq import Worker

    CensusWorker = pooldoctor.rq.install(Worker)

The code lives with the RQ host (:mod:`pooldoctor.hosts.rq.install`); this module is the stable
public name.
"""

from __future__ import annotations

from pooldoctor.hosts.rq.install import install

__all__ = ["install"]
