"""inspectproj's two tasks: the same async ORM reads on the blog recipe's wrapper (which loses a
connection per task) and on a clean one. Each returns the pid of the process that ran it.

A batch of tasks sent together first meets at a rendezvous (a directory where each arrives as a
file named after its process), so that each holds its child until the others have started in
theirs: the pool then has to give the next one to an idle child. The pool decides, though; a
task whose partners do not come within RENDEZVOUS seconds goes on alone (they are queued behind
it in the same child), and the tests count who ran what from the pids the tasks return."""

import os
import time
from pathlib import Path

from inspectproj.catalog import catalog
from inspectproj.wrappers import clean_async_task
from mysite.celeryapp import async_task_wrapper as recipe

from metricsproj.celery import app

RENDEZVOUS = 5.0


def meet(directory: str, parties: int) -> None:
    Path(directory, str(os.getpid())).touch()
    deadline = time.monotonic() + RENDEZVOUS
    while len(os.listdir(directory)) < parties and time.monotonic() < deadline:
        time.sleep(0.01)


async def read_catalog(directory: str | None = None, parties: int = 1) -> int:
    if directory is not None:
        meet(directory, parties)
    model = catalog()
    await model.objects.acount()  # the line a leak site names
    await model.objects.aget(datname="template1")
    return os.getpid()


leaky = app.task(name="metricsproj.leaky")(recipe(read_catalog))
clean = app.task(name="metricsproj.clean")(clean_async_task(read_catalog))
