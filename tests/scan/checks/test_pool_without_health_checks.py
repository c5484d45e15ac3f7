"""PD105: a pool with neither CONN_HEALTH_CHECKS nor its own check."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

POOLED = """\
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "OPTIONS": {"pool": {"max_size": 8, "timeout": 5}},
    }
}
"""


def test_pool_without_health_checks_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(tmp_path, {"mysite/settings.py": POOLED}, "PD105")

    assert (finding.code, finding.file, finding.line) == ("PD105", "mysite/settings.py", 4)
    assert finding.severity == "info"
    assert finding.message == (
        "pool without CONN_HEALTH_CHECKS: Django passes check=None, so after a server restart "
        "or failover the pool hands out dead connections"
    )


@pytest.mark.parametrize(
    "extra",
    [
        'DATABASES["default"]["CONN_HEALTH_CHECKS"] = False',
        'DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("HEALTH", default=False)',
    ],
)
def test_health_checks_off_is_flagged(tmp_path: Path, scan_source: ScanSource, extra: str) -> None:
    [finding] = scan_source(tmp_path, {"settings.py": POOLED + extra + "\n"}, "PD105")

    assert finding.line == 4


def test_pool_from_the_environment_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = POOLED.replace('{"max_size": 8, "timeout": 5}', 'env.bool("DB_POOL")')
    [finding] = scan_source(tmp_path, {"settings.py": settings}, "PD105")

    assert finding.line == 4
    # The pool may be off: the finding asks rather than asserts.
    assert finding.message.startswith("if the pool is on (")
    assert "DB_POOL" in finding.message


def test_dj_database_url_with_pool_true(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = """\
        import dj_database_url

        DATABASES = {"default": dj_database_url.config(conn_max_age=0)}
        DATABASES["default"]["OPTIONS"] = {"pool": True}
    """
    [finding] = scan_source(tmp_path, {"settings.py": settings}, "PD105")

    assert finding.line == 4


@pytest.mark.parametrize(
    "settings",
    [
        POOLED.replace('"ENGINE"', '"CONN_HEALTH_CHECKS": True, "ENGINE"'),
        POOLED + 'DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS")\n',
        POOLED.replace('"timeout": 5', '"check": ConnectionPool.check_connection'),
        POOLED.replace('{"max_size": 8, "timeout": 5}', "False"),
        POOLED.replace('{"max_size": 8, "timeout": 5}', "POOL_OPTIONS"),
        POOLED.replace('"OPTIONS": {"pool": {"max_size": 8, "timeout": 5}},', ""),
        "import dj_database_url\n\n"
        "DATABASES = {'default': dj_database_url.config(conn_health_checks=True)}\n"
        "DATABASES['default']['OPTIONS'] = {'pool': True}\n",
    ],
    ids=[
        "health-checks",
        "health-checks-env",
        "own-check",
        "pool-off",
        "pool-from-a-name",
        "no-pool",
        "dj-url",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, settings: str) -> None:
    assert scan_source(tmp_path, {"settings.py": settings}, "PD105") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = POOLED.replace("5}},", "5}},  # pooldoctor: ignore[PD105]")

    assert scan_source(tmp_path, {"settings.py": settings}, "PD105") == []
