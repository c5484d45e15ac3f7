"""Reading DATABASES from a settings module's syntax tree, in the shapes projects write it."""

from __future__ import annotations

import ast
import textwrap

import pytest

from pooldoctor.scan.databases import NOT_LITERAL, DatabaseSettings, literal, read_databases


def _read(source: str) -> DatabaseSettings:
    return read_databases(ast.parse(textwrap.dedent(source)))


def _values(settings: DatabaseSettings) -> dict[str, list[tuple[int, object]]]:
    return {
        field: sorted(((s.line, s.value) for s in getattr(settings, field)), key=lambda p: p[0])
        for field in ("pools", "conn_max_age", "timeouts", "health_checks")
    }


def test_one_dict_literal() -> None:
    settings = _read(
        """\
        DATABASES = {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "CONN_MAX_AGE": 0,
                "CONN_HEALTH_CHECKS": True,
                "OPTIONS": {
                    "pool": {"min_size": 2, "max_size": 8, "timeout": 5},
                },
            }
        }
        """
    )

    assert _values(settings) == {
        "pools": [(7, {"min_size": 2, "max_size": 8, "timeout": 5})],
        "conn_max_age": [(4, 0)],
        "timeouts": [(7, 5)],
        "health_checks": [(5, True)],
    }
    assert settings.has_pool


def test_dj_database_url_and_subscript_assignments() -> None:
    settings = _read(
        """\
        import dj_database_url

        DATABASES = {"default": dj_database_url.config(conn_max_age=600, conn_health_checks=True)}
        DATABASES["default"]["OPTIONS"] = {"pool": True}
        DATABASES["replica"] = dj_database_url.parse(REPLICA_URL)
        DATABASES["replica"]["OPTIONS"]["pool"] = {"timeout": 20}
        DATABASES["replica"]["CONN_MAX_AGE"] = 0
        DATABASES["replica"]["CONN_HEALTH_CHECKS"] = False
        """
    )

    assert _values(settings) == {
        "pools": [(4, True), (6, {"timeout": 20})],
        "conn_max_age": [(3, 600), (7, 0)],
        "timeouts": [(6, 20)],
        "health_checks": [(3, True), (8, False)],
    }


def test_environment_values_read_as_their_defaults() -> None:
    settings = _read(
        """\
        DATABASES = {
            "default": {
                "CONN_MAX_AGE": env.int("CONN_MAX_AGE", default=600),
                "CONN_HEALTH_CHECKS": env.bool("CONN_HEALTH_CHECKS"),
                "OPTIONS": {"pool": env.bool("DB_POOL", default=True)},
            },
            "replica": {
                "CONN_MAX_AGE": int(os.environ.get("REPLICA_CONN_MAX_AGE", "0")),
                "OPTIONS": {"pool": {"timeout": float(os.environ.get("POOL_TIMEOUT", "2.5"))}},
            },
        }
        """
    )

    values = _values(settings)
    assert values["pools"] == [(5, True), (9, NOT_LITERAL)]
    assert values["conn_max_age"] == [(3, 600), (8, 0)]
    assert values["health_checks"] == [(4, NOT_LITERAL)]
    assert values["timeouts"] == [(9, 2.5)]


@pytest.mark.parametrize(
    "pool",
    ["False", "None", "{}", 'env.bool("DB_POOL", default=False)'],
)
def test_a_pool_that_is_off_is_no_pool(pool: str) -> None:
    settings = _read(f'DATABASES = {{"default": {{"OPTIONS": {{"pool": {pool}}}}}}}\n')

    assert settings.pools == []
    assert not settings.has_pool


def test_a_pool_from_a_name_may_be_on() -> None:
    settings = _read(
        """\
        POOL = {"max_size": 4}
        DATABASES = {"default": {"OPTIONS": {"pool": POOL}}}
        """
    )

    assert [(s.line, s.value) for s in settings.pools] == [(2, NOT_LITERAL)]


def test_dicts_outside_databases_that_name_no_setting_are_ignored() -> None:
    settings = _read('CACHES = {"default": {"OPTIONS": {"MAX_ENTRIES": 100}}}\n')

    assert settings == DatabaseSettings()


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("600", 600),
        ("None", None),
        ('env.int("X", default=600)', 600),
        ('env("X", default="0")', "0"),
        ('os.environ.get("X", "600")', "600"),
        ('int(os.environ.get("X", "0"))', 0),
        ('int(os.environ.get("X", 60))', 60),
        ('float(os.environ.get("X", "2.5"))', 2.5),
        ('int(os.environ.get("X", "sixty"))', NOT_LITERAL),
        ('os.environ.get("X")', NOT_LITERAL),
        ('os.environ["X"]', NOT_LITERAL),
        ('env.int("X")', NOT_LITERAL),
        ("SOME_NAME", NOT_LITERAL),
    ],
)
def test_literal(expression: str, value: object) -> None:
    assert literal(ast.parse(expression, mode="eval").body) == value
