"""What simulate's RQ workers run: ``python -m pooldoctor.hosts.rq.worker``.

It loads the project as ``manage.py rqworker`` does (its settings, with the run's queue added to
``RQ_QUEUES`` on the run's Redis), then runs django-rq's own ``rqworker`` command with
``--worker-class`` set to the project's worker class (``RQ["WORKER_CLASS"]``, when it is one of
the kind asked for) or RQ's (``Worker`` for ``--pool fork``, ``SimpleWorker`` for ``simple``),
with pooldoctor's hooks in front (:mod:`.workers`). RQ's worker runs one job at a time:
``--workers N`` is N such processes, each loading the project on its own, as a process manager
runs them (supervisor's ``numprocs``); the first starts the others before it loads anything of
the project's, in its process group, so that the fleet stops them all. ``--pool pool`` runs
django-rq's ``rqworker-pool --num-workers N`` instead: one process loads the project and forks
the N workers (RQ's ``WorkerPool``), which fork their horses.

Nothing here runs outside a worker started by :mod:`pooldoctor.hosts.fleet`.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Any

from pooldoctor.core import lifeline
from pooldoctor.hosts.probe_worker import PROBE_NAME, ProbeWorker
from pooldoctor.hosts.rq import WORKERS_FILE, RQHost, jobs, workers

SIBLING = "--sibling"
MODULE = "pooldoctor.hosts.rq.worker"


def start_siblings(count: int) -> list[subprocess.Popen[bytes]]:
    """The run's other worker processes: the same command, started before anything of the
    project's is loaded here (they share nothing with this one but the queue)."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", MODULE, SIBLING, str(index)], **lifeline.popen_options()
        )
        for index in range(1, count)
    ]


def worker_class(pool: str) -> type:
    """The project's worker class when it is of the kind asked for (its own overrides run),
    else RQ's class for the kind."""
    from django_rq.workers import get_worker_class
    from rq.worker import SimpleWorker, Worker

    wanted: type = SimpleWorker if pool == "simple" else Worker
    project = get_worker_class()
    if project is not wanted and issubclass(project, wanted):
        return project
    return wanted


def main(argv: list[str]) -> None:
    index = int(argv[argv.index(SIBLING) + 1]) if SIBLING in argv else 0
    probe = ProbeWorker()
    spec = probe.spec
    host = RQHost()
    lifeline.arm(on_death=lambda: host.purge(spec))
    if index == 0 and spec["pool"] != "pool":
        start_siblings(int(spec["workers"]))
    probe.configure()
    from django.conf import settings

    queues = dict(getattr(settings, "RQ_QUEUES", {}) or {})
    queues[spec["queue"]] = {"URL": spec["broker"]}
    settings.RQ_QUEUES = queues
    if not any(app == "django_rq" or app.startswith("django_rq.") for app in
               settings.INSTALLED_APPS):  # fmt: skip
        raise SystemExit("pooldoctor: the project's INSTALLED_APPS has no django_rq: simulate "
                         "runs RQ workers as django-rq's rqworker command")  # fmt: skip
    probe.setup()
    subject = spec["subject"]
    if subject["kind"] != "task" or subject.get("wrapper"):
        # The probe through a mode or a wrapper, or the project's async function through one;
        # the project's own job functions are imported by the worker when the job runs, as RQ
        # does (in each horse, for the fork worker).
        jobs.SUBJECT = probe.subject_task()
    workers.PROBE = probe
    workers.ALIAS = probe.alias
    base = worker_class(spec["pool"])
    workers.RUN = workers.build(base, bool(spec["apply_fix"]))
    if spec["pool"] not in host.forking:
        probe.process_started(forked=False)  # SimpleWorker runs each job in this process
    if spec["warm_parent"]:
        probe.warm_parent()  # start-up code that queried: AppConfig.ready(), a module import
    if spec["pool"] == "pool":
        # One process loads the project and forks the N workers (RQ's WorkerPool).
        command = ["manage.py", "rqworker-pool", spec["queue"], "--num-workers",
                   str(spec["workers"]), "--worker-class", workers.RUN_PATH]  # fmt: skip
    else:
        command = ["manage.py", "rqworker", spec["queue"], "--worker-class", workers.RUN_PATH,
                   "--name", f"{spec['queue']}-{index}"]  # fmt: skip
    told: list[bool] = []

    def ready(worker: Any) -> None:
        # Every worker (rqworker-pool's are named by RQ): the purge deletes its keys.
        with (probe.directory / WORKERS_FILE).open("a") as names:
            names.write(f"{worker.name}\n")
        if told:
            return
        told.append(True)
        facts = host.facts()
        name = subject["name"] if subject["kind"] == "task" and not subject.get("wrapper") else (
            PROBE_NAME)  # fmt: skip
        probe.ready({"task": name, "version": facts.version, "command": shlex.join(command),
                     "worker_class": f"{base.__module__}.{base.__qualname__}",
                     "django_integration": facts.django})  # fmt: skip

    workers.READY = ready
    from django.core.management import execute_from_command_line

    execute_from_command_line(command)


if __name__ == "__main__":
    main(sys.argv)
