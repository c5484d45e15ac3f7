"""PD103: a pool timeout above 10 s, or psycopg_pool's default of 30 s."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource


def _settings(pool: str) -> str:
    return f"""\
        DATABASES = {{
            "default": {{
                "ENGINE": "django.db.backends.postgresql",
                "OPTIONS": {{
                    "pool": {pool},
                }},
            }}
        }}
    """


def test_long_timeout_is_flagged_at_the_timeout(tmp_path: Path, scan_source: ScanSource) -> None:
    [finding] = scan_source(
        tmp_path, {"mysite/settings.py": _settings('{"max_size": 4, "timeout": 60}')}, "PD103"
    )

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD103",
        "mysite/settings.py",
        5,
        48,
    )
    assert finding.message == (
        "pool timeout 60 s: when the pool is exhausted every task waits 60 s before failing, "
        "which looks like a hang, not a leak"
    )
    assert finding.fix == (
        'set OPTIONS["pool"]["timeout"] to a few seconds (e.g. 5) so exhaustion fails fast'
    )


@pytest.mark.parametrize("pool", ["True", '{"min_size": 2, "max_size": 8}', "dict(max_size=8)"])
def test_no_timeout_means_thirty_seconds(
    tmp_path: Path, scan_source: ScanSource, pool: str
) -> None:
    [finding] = scan_source(tmp_path, {"settings.py": _settings(pool)}, "PD103")

    assert (finding.line, finding.column) == (5, 21)
    assert finding.message.startswith(
        "pool without a timeout: psycopg_pool's default is 30 s, so when the pool is exhausted "
        "every task waits 30 s before failing"
    )


def test_timeout_default_from_the_environment(tmp_path: Path, scan_source: ScanSource) -> None:
    pool = '{"timeout": env.float("POOL_TIMEOUT", default=45)}'
    [finding] = scan_source(tmp_path, {"settings.py": _settings(pool)}, "PD103")

    assert finding.message.startswith("pool timeout 45 s")


def test_pool_set_by_subscript(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = """\
        DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}}
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "max_size": 10,
            "timeout": 30.5,
        }
    """
    [finding] = scan_source(tmp_path, {"settings.py": settings}, "PD103")

    assert finding.line == 4
    assert "pool timeout 30.5 s" in finding.message


@pytest.mark.parametrize(
    "pool",
    [
        "False",
        '{"timeout": 5}',
        '{"timeout": 10}',
        "dict(timeout=2)",
        'env.bool("DB_POOL")',  # the keys are unknown
        "POOL_OPTIONS",
        '{**BASE_POOL, "max_size": 4}',
        '{"timeout": env.float("POOL_TIMEOUT")}',
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, pool: str) -> None:
    assert scan_source(tmp_path, {"settings.py": _settings(pool)}, "PD103") == []


def test_no_pool_at_all(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = 'DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql"}}\n'

    assert scan_source(tmp_path, {"settings.py": settings}, "PD103") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = _settings("True").replace("True,", "True,  # pooldoctor: ignore[PD103]")

    assert scan_source(tmp_path, {"settings.py": settings}, "PD103") == []
