import os

import django
from django.apps import AppConfig


class TasksprojConfig(AppConfig):
    name = "tasksproj"

    def ready(self) -> None:
        if os.environ.get("TASKSPROJ_INSTALL") == "1":
            import pooldoctor.tasks

            pooldoctor.tasks.install()
        if os.environ.get("TASKSPROJ_SIGNALS_LOG"):
            # Which backend ran each task (the tests check the path check --task took).
            if django.VERSION >= (6, 0):
                from django.tasks.signals import task_started
            else:
                from django_tasks.signals import task_started
            task_started.connect(log_sender, weak=False)


def log_sender(sender: type, **kwargs: object) -> None:
    with open(os.environ["TASKSPROJ_SIGNALS_LOG"], "a") as log:
        log.write(f"{sender.__module__}.{sender.__name__}\n")
