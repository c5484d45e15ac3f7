"""PD318: DRAMATIQ_BROKER without django_dramatiq's DbConnectionsMiddleware."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

WITHOUT = """\
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {"url": "redis://localhost:6379/0"},
        "MIDDLEWARE": [
            "dramatiq.middleware.AgeLimit",
            "dramatiq.middleware.TimeLimit",
            "dramatiq.middleware.Retries",
            "django_dramatiq.middleware.AdminMiddleware",
        ],
    }
"""
WITH = """\
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "MIDDLEWARE": [
            "dramatiq.middleware.AgeLimit",
            "django_dramatiq.middleware.DbConnectionsMiddleware",
        ],
    }
"""


def test_middleware_without_the_cleanup_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"mysite/settings.py": WITHOUT}, "PD318")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD318",
        "mysite/settings.py",
        4,
        5,
    )
    assert finding.message.startswith(
        'DRAMATIQ_BROKER["MIDDLEWARE"] leaves out '
        "django_dramatiq.middleware.DbConnectionsMiddleware: django_dramatiq installs only the "
        "middleware listed, so nothing closes a worker thread's connection between messages"
    )
    assert finding.fix == (
        'add "django_dramatiq.middleware.DbConnectionsMiddleware" to DRAMATIQ_BROKER["MIDDLEWARE"]'
    )


def test_broker_without_middleware_key_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = 'DEBUG = False\nDRAMATIQ_BROKER = {"BROKER": "dramatiq.brokers.redis.RedisBroker"}\n'
    [finding] = scan_source(tmp_path, {"mysite/settings.py": source}, "PD318")

    assert (finding.line, finding.column) == (2, 1)
    assert finding.message.startswith(
        'DRAMATIQ_BROKER has no "MIDDLEWARE": django_dramatiq then installs no middleware at all'
    )


@pytest.mark.parametrize(
    "source",
    [
        WITH,
        WITH.replace(
            "django_dramatiq.middleware.DbConnectionsMiddleware", "shop.mw.CloseDbConnections"
        ),
        WITHOUT + '\nDRAMATIQ_BROKER["MIDDLEWARE"].append(\n    "django_dramatiq.middleware.'
        'DbConnectionsMiddleware"\n)\n',
        'MIDDLEWARE_LIST = ["dramatiq.middleware.AgeLimit"]\n'
        'DRAMATIQ_BROKER = {"BROKER": "x", "MIDDLEWARE": MIDDLEWARE_LIST}\n',
        "DRAMATIQ_BROKER = make_broker_settings()\n",
        "def configure():\n    DRAMATIQ_BROKER = {'BROKER': 'x'}\n    return DRAMATIQ_BROKER\n",
    ],
    ids=[
        "with-db-middleware",
        "project-connection-middleware",
        "appended-later",
        "list-not-written-out",
        "not-a-dict",
        "not-module-level",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, source: str) -> None:
    assert scan_source(tmp_path, {"mysite/settings.py": source}, "PD318") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = WITHOUT.replace('"MIDDLEWARE": [', '"MIDDLEWARE": [  # pooldoctor: ignore[PD318]')
    assert scan_source(tmp_path, {"mysite/settings.py": source}, "PD318") == []
