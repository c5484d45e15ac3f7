"""Kubernetes manifests as deployment files: each workload's containers' ``command``/``args``
feed the worker and server facts, ``replicas`` multiplies the worker counts."""

from __future__ import annotations

import textwrap

import pytest

from pooldoctor.scan.deployment import (
    manifest_containers,
    servers_in_text,
    workers_in_text,
)
from pooldoctor.scan.source import wanted

MANIFESTS = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: worker
      labels:
        app: daphne
    spec:
      replicas: 3
      template:
        spec:
          initContainers:
            - name: migrate
              command: ["python", "manage.py", "migrate"]
          containers:
            - name: worker
              image: "{{ .Values.image }}"
              command: ['celery', '-A', 'mysite']
              args:
                - worker
                - "-P"
                - threads  # shares one pool
                - -c
                - "20"
              livenessProbe:
                exec:
                  command: ["celery", "inspect", "ping"]
            - name: beat
              args: [celery, -A, mysite, beat]
    ---
    apiVersion: v1
    kind: Service
    metadata:
      name: web
    spec:
      ports:
        - port: 80
    ---
    apiVersion: apps/v1
    kind: StatefulSet
    spec:
      replicas: "2"
      template:
        spec:
          containers:
          - name: web
            command: ["/bin/sh", "-c"]
            args:
            - >
              exec daphne -b 0.0.0.0
              mysite.asgi:application
    """
)


def test_the_containers_of_every_workload_document() -> None:
    found = [(c.line, c.command, c.replicas) for c in manifest_containers(MANIFESTS.splitlines())]

    assert found == [
        (13, ["python", "manage.py", "migrate"], 3),
        (17, ["celery", "-A", "mysite", "worker", "-P", "threads", "-c", "20"], 3),
        (26, ["celery", "inspect", "ping"], 3),
        (28, ["celery", "-A", "mysite", "beat"], 3),
        (46, ["/bin/sh", "-c", "exec daphne -b 0.0.0.0 mysite.asgi:application"], 2),
    ]


def test_workers_and_servers_of_a_manifest() -> None:
    lines = MANIFESTS.splitlines()
    workers = list(workers_in_text("app.yaml", "deploy/app.yaml", lines))
    servers = list(servers_in_text("app.yaml", "deploy/app.yaml", lines))

    assert [(w.line, w.program.name, w.program.pool, w.program.concurrency) for w in workers] == [
        (17, "celery worker", "threads", 20),
        (46, "daphne", "", None),
    ]
    assert [(w.deployment, w.copies, w.copies_by) for w in workers] == [
        ("Kubernetes manifests in deploy/", 3, "replicas 3"),
        ("Kubernetes manifests in deploy/", 2, "replicas 2"),
    ]
    # "app: daphne" is a label, not a server: only the parsed command says daphne runs
    assert [(s.line, s.server, s.asgi, s.command) for s in servers] == [(46, "daphne", True, True)]


def test_command_and_args_of_different_containers_are_not_joined() -> None:
    lines = textwrap.dedent(
        """\
        kind: Pod
        spec:
          containers:
            - name: a
              command: ["celery", "-A", "mysite"]
            - name: b
              args: ["worker", "-P", "threads"]
        """
    ).splitlines()

    assert [c.command for c in manifest_containers(lines)] == [
        ["celery", "-A", "mysite"],
        ["worker", "-P", "threads"],
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (".github/workflows/ci.yml", "jobs:\n  t:\n    steps:\n      - run: uvicorn a.asgi:app\n"),
        ("mkdocs.yml", "site_name: x\nkind: daphne\n"),
        ("k8s/service.yaml", "kind: Service\nspec:\n  command: uvicorn mysite.asgi:app\n"),
        ("k8s/config.yaml", "kind: ConfigMap\ndata:\n  command: celery worker -P threads\n"),
    ],
)
def test_other_yaml_feeds_nothing(name: str, text: str) -> None:
    lines = text.splitlines()
    base = name.rsplit("/", 1)[-1]

    assert list(manifest_containers(lines)) == []
    assert list(workers_in_text(base, name, lines)) == []
    assert list(servers_in_text(base, name, lines)) == []


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("deployment.yaml", True),
        ("values.yml", True),
        ("compose.yml", True),
        ("pnpm-lock.yaml", False),
        ("yarn-lock.yml", False),
        ("deployment.yaml.orig", False),
    ],
)
def test_yaml_files_are_read(name: str, read: bool) -> None:
    assert wanted(name, "k8s") is read
