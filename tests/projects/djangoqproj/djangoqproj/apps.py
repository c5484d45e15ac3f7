"""DJANGOQPROJ_INSTALL=1 installs pooldoctor's census in the cluster (``inspect --runner
django-q``): in ready(), so that qcluster has it before it forks."""

import os

from django.apps import AppConfig


class DjangoQProjConfig(AppConfig):
    name = "djangoqproj"

    def ready(self) -> None:
        if os.environ.get("DJANGOQPROJ_INSTALL") == "1":
            import pooldoctor.django_q

            pooldoctor.django_q.install()
