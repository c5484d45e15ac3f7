"""PD319: a Huey task that uses the ORM through a plain task(), not db_task()."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

PLAIN = """\
    from huey import crontab
    from huey.contrib.djhuey import db_task, periodic_task, task

    from .models import Order


    @task(retries=2)
    def mark_seen(pk):
        Order.objects.filter(pk=pk).update(seen=True)


    @db_task()
    def mark_paid(pk):
        Order.objects.filter(pk=pk).update(paid=True)


    @periodic_task(crontab(minute="*/5"))
    def expire():
        _expire_old()


    def _expire_old():
        for order in Order.objects.filter(expired=False):
            order.save()
"""


def test_plain_tasks_using_the_orm_are_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    findings = scan_source(tmp_path, {"shop/tasks.py": PLAIN}, "PD319")

    assert [(f.code, f.file, f.line, f.column) for f in findings] == [
        ("PD319", "shop/tasks.py", 8, 1),
        ("PD319", "shop/tasks.py", 18, 1),
    ]
    assert findings[0].message == (
        "Huey task 'mark_seen' uses the ORM (Order.objects at shop/tasks.py:9) but is a plain "
        "task(), not db_task(): nothing closes its connection, so the worker keeps it (with a "
        "pool, a slot) for its life, and a connection broken by a failed task or a server "
        "restart is handed to every later task on that worker"
    )
    assert "(Order.objects at shop/tasks.py:23, via expire() → _expire_old())" in (
        findings[1].message
    )
    assert "plain periodic_task()" in findings[1].message
    assert "db_task()" in findings[0].fix


@pytest.mark.parametrize(
    ("header", "decorator"),
    [
        ("from huey.contrib.djhuey import HUEY as huey", "@huey.task()"),
        ("from huey.contrib import djhuey", "@djhuey.periodic_task(crontab(hour=3))"),
        ("from huey import RedisHuey\n\nhuey = RedisHuey('shop')", "@huey.task()"),
        ("import huey.contrib.djhuey as dj", "@dj.task()"),
    ],
    ids=["djhuey-instance", "djhuey-module", "own-instance", "module-alias"],
)
def test_instance_decorators_are_flagged(
    tmp_path: Path, scan_source: ScanSource, header: str, decorator: str
) -> None:
    body = "def refresh(pk):\n    Order.objects.filter(pk=pk).update(seen=True)\n"
    source = f"{header}\n\n\n{decorator}\n{body}"
    [finding] = scan_source(tmp_path, {"shop/tasks.py": source}, "PD319")

    assert finding.message.startswith("Huey task 'refresh' uses the ORM (Order.objects at ")


@pytest.mark.parametrize(
    "source",
    [
        # db_task / db_periodic_task close the connection
        "from huey.contrib.djhuey import db_periodic_task\n\n\n@db_periodic_task(crontab())\n"
        "def refresh():\n    Order.objects.all().delete()\n",
        # close_db under the plain decorator
        "from huey.contrib.djhuey import close_db, task\n\n\n@task()\n@close_db\n"
        "def refresh():\n    Order.objects.all().delete()\n",
        # the task closes its own connection in a finally
        "from django.db import close_old_connections\nfrom huey.contrib.djhuey import task\n\n\n"
        "@task()\ndef refresh():\n    try:\n        Order.objects.all().delete()\n"
        "    finally:\n        close_old_connections()\n",
        # a post_execute hook closes every task's connection
        "from django.db import close_old_connections\nfrom huey.contrib.djhuey import HUEY, task"
        "\n\n\n@HUEY.post_execute()\ndef close(task, task_value, exc):\n"
        "    close_old_connections()\n\n\n@task()\ndef refresh():\n"
        "    Order.objects.all().delete()\n",
        # no ORM
        "from huey.contrib.djhuey import task\n\n\n@task()\ndef ping(url):\n"
        "    return requests.get(url).status_code\n",
        # a Celery task, not Huey's
        "from celery import shared_task\nimport huey\n\n\n@shared_task\ndef refresh():\n"
        "    Order.objects.all().delete()\n",
        # another library's task decorator in a module that mentions huey
        "from django.tasks import task\n\n# not huey\n\n@task()\ndef refresh():\n"
        "    Order.objects.all().delete()\n",
    ],
    ids=[
        "db-periodic-task",
        "close-db",
        "closes-in-finally",
        "post-execute-hook",
        "no-orm",
        "celery",
        "django-tasks",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, source: str) -> None:
    assert scan_source(tmp_path, {"shop/tasks.py": source}, "PD319") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = PLAIN.replace("def mark_seen(pk):", "def mark_seen(pk):  # pooldoctor: ignore[PD319]")
    findings = scan_source(tmp_path, {"shop/tasks.py": source}, "PD319")

    assert [f.line for f in findings] == [18]
