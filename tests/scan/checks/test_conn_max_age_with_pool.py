"""PD101: a non-zero CONN_MAX_AGE on an alias that has a pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

LITERAL = """\
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "CONN_MAX_AGE": 600,
            "OPTIONS": {"pool": True},
        }
    }
"""


def test_literal_conn_max_age_with_a_pool_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    [finding] = scan_source(tmp_path, {"mysite/settings.py": LITERAL}, "PD101")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD101",
        "mysite/settings.py",
        4,
        25,
    )
    assert finding.message == (
        'CONN_MAX_AGE=600 with a pool (line 5): Django raises ImproperlyConfigured("Pooling '
        "doesn't support persistent connections.\") when the pool is first used"
    )


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("None", "CONN_MAX_AGE=None (persistent connections without limit)"),
        ('env.int("CONN_MAX_AGE")', "CONN_MAX_AGE may be non-zero (CONN_MAX_AGE has no default"),
        ('env.int("CONN_MAX_AGE", default=60)', "CONN_MAX_AGE defaults to 60 "),
        ('os.environ.get("CONN_MAX_AGE", "0")', "CONN_MAX_AGE defaults to '0' "),
    ],
)
def test_unlimited_and_environment_values_are_flagged(
    tmp_path: Path, scan_source: ScanSource, value: str, phrase: str
) -> None:
    settings = f"""\
        DATABASES = {{
            "default": {{
                "CONN_MAX_AGE": {value},
                "OPTIONS": {{"pool": {{"max_size": 4}}}},
            }}
        }}
    """
    [finding] = scan_source(tmp_path, {"settings.py": settings}, "PD101")

    assert finding.line == 3
    assert phrase in finding.message


def test_dj_database_url_with_a_pool_set_later_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    settings = """\
        import dj_database_url

        DATABASES = {"default": dj_database_url.config(conn_max_age=600)}
        DATABASES["default"]["OPTIONS"] = {"pool": True}
    """
    [finding] = scan_source(tmp_path, {"mysite/settings/prod.py": settings}, "PD101")

    assert (finding.file, finding.line) == ("mysite/settings/prod.py", 3)
    assert finding.message.startswith("CONN_MAX_AGE=600 with a pool (line 4)")


def test_subscript_assignment_on_the_pooled_alias_is_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    settings = """\
        from .base import DATABASES

        DATABASES["default"]["OPTIONS"]["pool"] = True
        DATABASES["default"]["CONN_MAX_AGE"] = 60
    """
    base = 'DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}}\n'
    files = {"settings/base.py": base, "settings/prod.py": settings}
    [finding] = scan_source(tmp_path, files, "PD101")

    assert finding.line == 4


@pytest.mark.parametrize(
    "settings",
    [
        LITERAL.replace('"pool": True', '"pool": False'),
        LITERAL.replace('"OPTIONS": {"pool": True},', ""),
        LITERAL.replace("600", "0"),
        LITERAL.replace(
            '"CONN_MAX_AGE": 600', '"CONN_MAX_AGE": env.int("CONN_MAX_AGE", default=0)'
        ),
        LITERAL.replace("600", 'int(os.environ.get("CONN_MAX_AGE", "0"))'),
        "import dj_database_url\n\nDATABASES = {'default': dj_database_url.config(conn_max_age=0)}"
        "\nDATABASES['default']['OPTIONS'] = {'pool': True}\n",
    ],
    ids=["pool-off", "no-pool", "zero", "env-default-zero", "int-of-env-zero", "dj-url-zero"],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, settings: str) -> None:
    assert scan_source(tmp_path, {"settings.py": settings}, "PD101") == []


def test_conn_max_age_on_another_alias_is_not_flagged(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    settings = """\
        DATABASES = {
            "default": {"OPTIONS": {"pool": True}},
            "analytics": {"CONN_MAX_AGE": 600},
        }
        DATABASES["legacy"] = {"CONN_MAX_AGE": None}
    """
    assert scan_source(tmp_path, {"settings.py": settings}, "PD101") == []


def test_pool_in_another_module_is_not_this_modules_problem(
    tmp_path: Path, scan_source: ScanSource
) -> None:
    files = {
        "settings/base.py": 'DATABASES = {"default": {"CONN_MAX_AGE": 600}}\n',
        "settings/pooled.py": 'DATABASES = {"default": {"OPTIONS": {"pool": True}}}\n',
    }
    assert scan_source(tmp_path, files, "PD101") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    settings = LITERAL.replace("600,", "600,  # pooldoctor: ignore[PD101]")

    assert scan_source(tmp_path, {"settings.py": settings}, "PD101") == []
