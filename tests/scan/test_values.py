"""Evaluating settings modules abstractly: the shapes projects build DATABASES in, and input
that must not hang or crash the scan."""

from __future__ import annotations

import ast
import textwrap
import time

import pytest

from pooldoctor.scan.databases import AliasConfig, PoolState, database_configs
from pooldoctor.scan.values import UNKNOWN, Dict, Place, Value, evaluate_module


class Modules:
    """A project of a few modules, by dotted name; packages are ``<name>/__init__.py``."""

    def __init__(self, sources: dict[str, str], packages: frozenset[str] = frozenset()) -> None:
        self.sources = {name: textwrap.dedent(text) for name, text in sources.items()}
        self.packages = packages | {
            n.rpartition(".")[0] for n in sources if "." in n and n.rpartition(".")[0] in sources
        }
        self.asked: list[str] = []

    def module(self, name: str) -> tuple[str, ast.Module] | None:
        self.asked.append(name)
        if name not in self.sources:
            return None
        path = name.replace(".", "/") + ("/__init__.py" if name in self.packages else ".py")
        return path, ast.parse(self.sources[name])


def _names(source: str, **others: str) -> dict[str, Value]:
    modules = Modules({"settings": source, **{k.replace("__", "."): v for k, v in others.items()}})
    return evaluate_module("settings", modules)


def _plain(source: str, name: str, **others: str) -> object:
    return _names(source, **others)[name].plain()


def _configs(sources: dict[str, str], settings: str = "settings") -> tuple[AliasConfig, ...]:
    return database_configs(settings, Modules(sources))


def _pool(source: str) -> AliasConfig:
    (config,) = _configs({"settings": source})
    return config


# --- Values and mutation ---


def test_literals_and_displays() -> None:
    names = _names(
        """\
        A = {"x": [1, 2.5, "s"], "y": (None, True), "z": -3 + 4 * 2}
        B = f"{A['z']}-suffix"
        """
    )

    assert names["A"].plain() == {"x": (1, 2.5, "s"), "y": (None, True), "z": 5}
    assert names["B"].plain() == "5-suffix"
    assert names["A"].place == Place("settings.py", 1, 5)
    assert isinstance(names["A"].data, Dict)


def test_dict_call_merges_and_copies() -> None:
    names = _names(
        """\
        import copy
        BASE = {"a": 1, "nested": {"b": 2}}
        C = dict(BASE, c=3)
        D = {**BASE, "d": 4}
        E = BASE | {"e": 5}
        F = copy.deepcopy(BASE)
        F["nested"]["b"] = 20
        G = BASE.copy()
        G["a"] = 10
        BASE |= {"h": 6}
        """
    )

    assert names["C"].plain() == {"a": 1, "nested": {"b": 2}, "c": 3}
    assert names["D"].plain() == {"a": 1, "nested": {"b": 2}, "d": 4}
    assert names["E"].plain() == {"a": 1, "nested": {"b": 2}, "e": 5}
    assert names["F"].plain() == {"a": 1, "nested": {"b": 20}}
    assert names["G"].plain()["a"] == 10  # type: ignore[index]
    assert names["BASE"].plain() == {"a": 1, "nested": {"b": 2}, "h": 6}


def test_dicts_are_shared_between_names() -> None:
    names = _names(
        """\
        DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql"}}
        options = DATABASES["default"].setdefault("OPTIONS", {})
        options["pool"] = True
        opts = {}
        REPLICA = {"OPTIONS": opts}
        opts["pool"] = {"max_size": 4}
        DATABASES["replica"] = REPLICA
        """
    )

    assert names["DATABASES"].plain() == {
        "default": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {"pool": True}},
        "replica": {"OPTIONS": {"pool": {"max_size": 4}}},
    }


def test_update_setdefault_pop_and_del() -> None:
    names = _names(
        """\
        D = {"a": 1, "b": 2, "c": 3}
        D.update({"d": 4}, e=5)
        D.update(f=6)
        D.setdefault("a", 100)
        popped = D.pop("b")
        del D["c"]
        """
    )

    assert names["D"].plain() == {"a": 1, "d": 4, "e": 5, "f": 6}
    assert names["popped"].plain() == 2


def test_dicts_compare_by_items_not_keys() -> None:
    names = _names('A = {"k": 1} == {"k": 2}\nB = "k" in {"k": 2}\nC = "x" not in {"k": 2}\n')

    assert names["A"].data is UNKNOWN
    assert (names["B"].plain(), names["C"].plain()) == (True, True)


def test_an_unknown_key_write_makes_the_dict_unknown() -> None:
    names = _names('D = {"a": 1}\nD[os.environ["KEY"]] = 2\n')

    assert names["D"].data is UNKNOWN
    assert "has no default" in names["D"].because


# --- The environment ---


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ('os.environ.get("X", "600")', "600"),
        ('os.getenv("X", "600")', "600"),
        ('int(os.environ.get("X", "60"))', 60),
        ('float(os.getenv("X", "2.5"))', 2.5),
        ('os.environ.get("X", "true").lower() in ("1", "true")', True),
        ('os.environ.get("X", "False") == "True"', False),
        ('env("X", default=3)', 3),
        ('env.bool("X", default=True)', True),
        ('env.int("X", default=600)', 600),
        ('env.int("X", 600)', 600),
        ('env("X", int, 600)', UNKNOWN),
        ('env.json("X", default={"max_size": 4})', {"max_size": 4}),
        ('config("X", default="true", cast=bool)', True),
        ('config("X", default="0", cast=int)', 0),
        ('config("X", default=False)', False),
        ('AutoConfig(search_path=".")("X", default="off", cast=bool)', False),
        ('os.environ.get("X")', None),
    ],
)
def test_environment_lookups_take_their_default(expression: str, value: object) -> None:
    imports = "import os, environ\nfrom decouple import AutoConfig, config\nenv = environ.Env()\n"
    result = _names(f"{imports}V = {expression}\n")["V"]

    assert result.plain() == value
    assert result.from_environment == "X"


@pytest.mark.parametrize(
    "expression", ['os.environ["X"]', 'env.bool("X")', 'config("X", cast=bool)']
)
def test_environment_lookups_without_a_default_are_unknown(expression: str) -> None:
    result = _names(f"import os\nV = {expression}\n")["V"]

    assert result.data is UNKNOWN
    assert result.from_environment == "X"
    assert "X" in result.because


def test_django_environ_scheme_defaults() -> None:
    names = _names(
        """\
        import environ
        env = environ.Env(DB_POOL=(bool, True), CONN_MAX_AGE=(int, 60))
        POOL = env("DB_POOL")
        AGE = env.int("CONN_MAX_AGE")
        """
    )

    assert (names["POOL"].plain(), names["POOL"].from_environment) == (True, "DB_POOL")
    assert names["AGE"].plain() == 60


# --- Branches ---


def test_an_if_on_an_environment_default_takes_that_branch_and_remembers_it() -> None:
    names = _names(
        """\
        import os
        USE_POOL = os.environ.get("USE_POOL", "1") == "1"
        OPTIONS = {}
        if USE_POOL:
            OPTIONS["pool"] = {"max_size": 10}
        else:
            OPTIONS["pool"] = False
        """
    )

    pool = names["OPTIONS"].get("pool")
    assert pool is not None
    assert pool.plain() == {"max_size": 10}
    assert pool.from_environment == "USE_POOL"


def test_an_if_scan_cannot_decide_keeps_what_both_branches_agree_on() -> None:
    names = _names(
        """\
        OPTIONS = {"sslmode": "require"}
        if SOMETHING_UNKNOWN:
            OPTIONS["pool"] = True
            ONLY_HERE = 1
        else:
            OPTIONS["pool"] = False
        SAME = 1 if SOMETHING_UNKNOWN else 1
        """
    )

    options = names["OPTIONS"]
    assert options.plain() == {"sslmode": "require", "pool": UNKNOWN}
    pool = options.get("pool")
    assert pool is not None and pool.because == "depends on SOMETHING_UNKNOWN"
    assert names["ONLY_HERE"].data is UNKNOWN
    assert names["SAME"].plain() == 1


def test_test_runner_conditions_are_false_in_production() -> None:
    names = _names(
        """\
        import sys
        TESTING = "test" in sys.argv or "pytest" in sys.modules
        if TESTING:
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3"}}
        else:
            DATABASES = {"default": {"OPTIONS": {"pool": True}}}
        RUNNING = "runserver" not in sys.argv
        """
    )

    assert names["TESTING"].plain() is False
    assert names["DATABASES"].plain() == {"default": {"OPTIONS": {"pool": True}}}
    assert names["RUNNING"].data is UNKNOWN


def test_writes_into_a_dict_scan_sees_part_of_are_known() -> None:
    names = _names(
        """\
        import dj_database_url
        DATABASES = {"default": dj_database_url.config(), "b": dj_database_url.config()}
        DATABASES["default"]["OPTIONS"]["pool"] = True
        DATABASES["b"].setdefault("OPTIONS", {})["pool"] = {"max_size": 3}
        """
    )

    for alias, pool in (("default", True), ("b", {"max_size": 3})):
        options = names["DATABASES"].get(alias).get("OPTIONS")  # type: ignore[union-attr]
        assert options is not None and isinstance(options.data, Dict)
        assert options.data.open  # its other keys come from the URL
        assert options.plain() == {"pool": pool}


def test_try_except_import_error_runs_the_try_body() -> None:
    names = _names(
        """\
        POOL = False
        try:
            from .local import *
            POOL = True
        except ImportError:
            POOL = None
        """
    )

    assert names["POOL"].plain() is True


def test_a_for_loop_over_known_aliases_runs_and_an_unknown_one_spoils() -> None:
    names = _names(
        """\
        DATABASES = {"default": {"OPTIONS": {}}, "replica": {"OPTIONS": {}}}
        for alias in DATABASES:
            DATABASES[alias]["OPTIONS"]["pool"] = True
        OTHER = {"default": {}}
        for alias in UNKNOWN_ALIASES:
            OTHER[alias]["CONN_MAX_AGE"] = 0
        """
    )

    assert names["DATABASES"].plain() == {
        "default": {"OPTIONS": {"pool": True}},
        "replica": {"OPTIONS": {"pool": True}},
    }
    assert names["OTHER"].data is UNKNOWN
    assert "UNKNOWN_ALIASES" in names["OTHER"].because


# --- Helpers and imports ---


def test_a_helper_in_the_same_module_with_arguments_and_defaults() -> None:
    names = _names(
        """\
        def pool_options(max_size, *, timeout=10, **extra):
            options = {"max_size": max_size, "timeout": timeout}
            if max_size > 4:
                options["min_size"] = 2
            options.update(extra)
            return options

        POOL = pool_options(8, check=True)
        SMALL = pool_options(max_size=2, timeout=5)
        """
    )

    assert names["POOL"].plain() == {"max_size": 8, "timeout": 10, "min_size": 2, "check": True}
    assert names["SMALL"].plain() == {"max_size": 2, "timeout": 5}
    assert names["POOL"].place == Place("settings.py", 2, 15)


def test_a_helper_imported_from_a_project_module() -> None:
    sources = {
        "settings": """\
            from config.db import database_options
            import config.db as db
            DATABASES = {"default": {"OPTIONS": database_options(pool=True)}}
            AGE = db.CONN_MAX_AGE
            """,
        "config": "",
        "config.db": """\
            CONN_MAX_AGE = 60

            def database_options(pool=False):
                if pool:
                    return {"pool": {"max_size": 20}}
                return {}
            """,
    }
    names = evaluate_module("settings", Modules(sources))

    default = names["DATABASES"].get("default")
    assert default is not None
    assert default.plain() == {"OPTIONS": {"pool": {"max_size": 20}}}
    options = default.get("OPTIONS")
    assert options is not None and options.place == Place("config/db.py", 5, 16)
    assert names["AGE"].plain() == 60


def test_a_helper_that_is_not_in_the_project_is_unknown_with_a_reason() -> None:
    names = _names("OPTIONS = get_options()\nfrom vendor import build\nB = build()\n")

    assert names["OPTIONS"].data is UNKNOWN
    assert names["OPTIONS"].because == "get_options() is not defined in the project"
    assert names["B"].because == "vendor.build() is outside the project"


def test_a_helper_that_does_what_scan_does_not_run_is_unknown() -> None:
    names = _names(
        """\
        def options():
            while True:
                pass
            return {}
        O = options()
        """
    )

    assert names["O"].data is UNKNOWN
    assert "while" in names["O"].because


def test_a_self_referencing_helper_stops() -> None:
    names = _names(
        """\
        def f(n):
            return f(n + 1)
        V = f(0)
        """
    )

    assert names["V"].data is UNKNOWN
    assert "nested too deeply" in names["V"].because


def test_star_import_split_settings_do_not_change_the_base_for_others() -> None:
    sources = {
        "mysite.settings.base": """\
            DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}}
            _PRIVATE = 1
            """,
        "mysite.settings.production": """\
            from .base import *
            DATABASES["default"]["OPTIONS"]["pool"] = {"max_size": 30}
            """,
        "mysite.settings.staging": "from .base import *\nfrom . import base\n",
    }
    modules = Modules(
        {"mysite": "", "mysite.settings": "", **sources},
        packages=frozenset({"mysite", "mysite.settings"}),
    )

    production = evaluate_module("mysite.settings.production", modules)
    staging = evaluate_module("mysite.settings.staging", modules)

    assert production["DATABASES"].plain() == {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "OPTIONS": {"pool": {"max_size": 30}},
        }
    }
    assert "_PRIVATE" not in production
    assert staging["DATABASES"].plain() == {
        "default": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}
    }


def test_relative_imports_from_a_package_module() -> None:
    modules = Modules(
        {
            "proj": "",
            "proj.settings": "from .db import DATABASES\nfrom ..top import X\n",
            "proj.settings.db": 'DATABASES = {"default": {}}\n',
            "proj.top": "X = 1\n",
        },
        packages=frozenset({"proj", "proj.settings"}),
    )

    names = evaluate_module("proj.settings", modules)

    assert names["DATABASES"].plain() == {"default": {}}
    assert names["X"].plain() == 1


def test_an_import_cycle_between_modules_ends() -> None:
    modules = Modules({"a": "from b import *\nA = 1\n", "b": "from a import *\nB = 2\n"})

    names = evaluate_module("a", modules)

    assert names["A"].plain() == 1
    assert names["B"].plain() == 2


def test_dj_database_url_keeps_what_its_keywords_say() -> None:
    names = _names(
        """\
        import dj_database_url
        DATABASES = {"default": dj_database_url.config(conn_max_age=600, conn_health_checks=True)}
        """
    )

    default = names["DATABASES"].get("default")
    assert default is not None and isinstance(default.data, Dict)
    assert default.data.open
    assert default.get("CONN_MAX_AGE") == Value(600, Place("settings.py", 2, 61))
    age = default.get("CONN_HEALTH_CHECKS")
    assert age is not None and age.plain() is True
    engine = default.get("ENGINE")
    assert engine is not None and engine.data is UNKNOWN


def test_a_module_not_in_the_project_gives_no_names() -> None:
    assert evaluate_module("missing", Modules({})) == {}


# --- Hostile input ---


def test_deeply_nested_expressions_are_unknown_not_a_crash() -> None:
    deep = "[" * 90 + "1" + "]" * 90
    names = _names(f"A = {deep}\nB = {'1 + ' * 500}1\nC = 2\n")

    innermost, depth = names["A"], 0
    while isinstance(innermost.data, tuple):
        innermost, depth = innermost.data[0], depth + 1
    assert depth > 10  # the outer lists are known; the core, too deep, is not
    assert innermost.because == "an expression nested too deeply to evaluate"
    assert names["B"].data is UNKNOWN
    assert names["C"].plain() == 2


def test_values_nested_deeper_than_python_recurses_are_cut_or_unknown() -> None:
    nested = "A = {}\n" + "A = {'x': A}\n" * 3000

    frozen = _names(nested + "B = dict(A)\n")["B"]
    depth = 0
    while isinstance(frozen.data, Dict):
        frozen, depth = frozen.data["x"], depth + 1
    assert depth < 100
    assert frozen.because == "nested too deeply"

    # A branch copies every value: Python's recursion limit ends that copy.
    names = _names(nested + "if UNSET:\n    C = 1\n")
    assert names["A"].data is UNKNOWN
    assert names["A"].because == "too deeply nested to evaluate"


def test_huge_values_are_capped() -> None:
    names = _names('A = "x" * 10**9\nB = 10 ** 10 ** 10\nC = "ab" + "c" * 3\n')

    assert names["A"].data is UNKNOWN
    assert names["B"].data is UNKNOWN
    assert names["C"].plain() == "abccc"


def test_the_step_budget_ends_a_long_loop() -> None:
    started = time.perf_counter()
    names = _names(
        """\
        X = {}
        for i in [0] * 1:
            pass
        def grow(d, n):
            d[n] = n
            return grow(d, n + 1)
        L = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        for a in L:
            for b in L:
                for c in L:
                    for d in L:
                        for e in L:
                            X[a] = b
        DATABASES = {"default": {}}
        """
    )

    assert time.perf_counter() - started < 5
    assert names["DATABASES"].data is UNKNOWN
    assert "too large" in names["DATABASES"].because


def test_a_heavy_imported_module_is_unknown_and_the_settings_go_on() -> None:
    zeros = ", ".join(["0"] * 500)
    loops = f"L = [{zeros}]\nX = 0\nfor a in L:\n    for b in L:\n        X = b\n"
    sources = {
        "settings": """\
            from heavy import X
            from light import Y
            DATABASES = {"default": {"OPTIONS": {"pool": True}}}
            """,
        "heavy": loops,
        "light": "Y = 1\n",
    }

    names = evaluate_module("settings", Modules(sources))

    assert names["X"].data is UNKNOWN
    assert names["X"].because == "heavy is too large to evaluate"
    assert names["Y"].plain() == 1
    assert names["DATABASES"].plain() == {"default": {"OPTIONS": {"pool": True}}}


def test_a_dict_that_contains_itself() -> None:
    names = _names('D = {}\nD["self"] = D\nD["x"] = 1\n')

    data = names["D"].data
    assert isinstance(data, Dict)
    assert data["self"].data is UNKNOWN
    assert data["x"].plain() == 1


def test_many_unknown_branches_stay_fast() -> None:
    body = "".join(f"if U{i}:\n    D['k{i % 7}'] = {i}\n" for i in range(2000))
    started = time.perf_counter()
    names = _names("D = {}\n" + "".join(f"N{i} = {{'a': {i}}}\n" for i in range(2000)) + body)

    assert time.perf_counter() - started < 3
    assert names["D"].data is UNKNOWN
    assert "too large" in names["D"].because


# --- database_configs ---


def test_database_configs_step_by_step_pool() -> None:
    (config,) = _configs(
        {
            "settings": """\
                import os
                DATABASES = {
                    "default": {
                        "ENGINE": "django.db.backends.postgresql",
                        "CONN_MAX_AGE": int(os.environ.get("CONN_MAX_AGE", "0")),
                    }
                }
                options = DATABASES["default"].setdefault("OPTIONS", {})
                options["pool"] = {"min_size": 2, "max_size": 8}
                """
        }
    )

    assert config.alias == "default"
    assert config.pool is PoolState.ON
    assert config.pool_place == Place("settings.py", 9, 19)
    assert config.place == Place("settings.py", 3, 16)
    assert config.pool_options is not None
    assert config.pool_options.plain() == {"min_size": 2, "max_size": 8}
    assert config.conn_max_age is not None
    assert config.conn_max_age.plain() == 0
    assert config.conn_max_age.from_environment == "CONN_MAX_AGE"
    assert config.health_checks is None


@pytest.mark.parametrize(
    ("pool", "state"),
    [
        ("True", PoolState.ON),
        ('{"max_size": 4}', PoolState.ON),
        ("False", PoolState.OFF),
        ("None", PoolState.OFF),
        ("{}", PoolState.OFF),
        ('os.environ["DB_POOL"]', PoolState.UNKNOWN),
        ('env.bool("DB_POOL", default=True)', PoolState.ON),
        ('env.bool("DB_POOL", default=False)', PoolState.OFF),
        ("get_pool()", PoolState.UNKNOWN),
    ],
)
def test_database_configs_pool_states(pool: str, state: PoolState) -> None:
    config = _pool(
        "import os\n"
        f'DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql",'
        f' "OPTIONS": {{"pool": {pool}}}}}}}\n'
    )

    assert config.pool is state
    assert bool(config.because) is (state is PoolState.UNKNOWN)


def test_database_configs_without_options_is_off_and_other_engines_have_no_pool() -> None:
    configs = _configs(
        {
            "settings": """\
                DATABASES = {
                    "default": {"ENGINE": "django.db.backends.postgresql"},
                    "legacy": {
                        "ENGINE": "django.db.backends.mysql",
                        "OPTIONS": {"pool": True},
                    },
                    "geo": {
                        "ENGINE": "django.contrib.gis.db.backends.postgis",
                        "OPTIONS": {"pool": True},
                    },
                }
                """
        }
    )

    assert [(c.alias, c.pool) for c in configs] == [
        ("default", PoolState.OFF),
        ("legacy", PoolState.OFF),
        ("geo", PoolState.ON),
    ]
    assert "mysql" in configs[1].because


def test_database_configs_unknown_databases_and_missing_databases() -> None:
    (config,) = _configs({"settings": "from vendor import DATABASES\n"})
    assert (config.alias, config.pool) == ("*", PoolState.UNKNOWN)
    assert config.because == "vendor.DATABASES is outside the project"

    assert _configs({"settings": "DEBUG = True\n"}) == ()


def test_database_configs_dj_database_url_has_no_pool() -> None:
    (config,) = _configs(
        {
            "settings": """\
                import dj_database_url
                DATABASES = {"default": dj_database_url.config(conn_max_age=600)}
                """
        }
    )

    # The URL's query becomes OPTIONS and carries no pool; the keywords are what it sets.
    assert config.pool is PoolState.OFF
    assert config.conn_max_age is not None and config.conn_max_age.plain() == 600


def test_database_configs_dj_database_url_with_a_pool_written_after() -> None:
    (config,) = _configs(
        {
            "settings": """\
                import dj_database_url
                DATABASES = {"default": dj_database_url.config(conn_max_age=0)}
                DATABASES["default"]["OPTIONS"] = {"pool": True}
                """
        }
    )

    assert config.pool is PoolState.ON
    assert config.pool_place == Place("settings.py", 3, 44)
    assert config.engine is not None and config.engine.data is UNKNOWN


def test_database_configs_partly_unknown_databases_add_a_star_alias() -> None:
    configs = _configs(
        {"settings": 'DATABASES = {**get_databases(), "default": {"OPTIONS": {"pool": True}}}\n'}
    )

    assert [(c.alias, c.pool) for c in configs] == [
        ("default", PoolState.ON),
        ("*", PoolState.UNKNOWN),
    ]
    assert configs[1].because == "get_databases() is not defined in the project"


def test_database_configs_across_a_split_settings_package() -> None:
    sources = {
        "mysite": "",
        "mysite.settings": "",
        "mysite.settings.base": """\
            import environ
            env = environ.Env()
            DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql"}}
            """,
        "mysite.settings.production": """\
            from .base import *
            from mysite.db import pool_options
            DATABASES["default"]["OPTIONS"] = {"pool": pool_options(env.int("POOL", default=8))}
            """,
        "mysite.db": """\
            def pool_options(size):
                return {"min_size": 1, "max_size": size}
            """,
    }
    modules = Modules(sources, packages=frozenset({"mysite", "mysite.settings"}))

    (config,) = database_configs("mysite.settings.production", modules)

    assert config.settings == "mysite.settings.production"
    assert config.pool is PoolState.ON
    assert config.pool_place == Place("mysite/db.py", 2, 12)
    assert config.pool_options is not None
    assert config.pool_options.plain() == {"min_size": 1, "max_size": 8}
    max_size = config.pool_options.get("max_size")
    assert max_size is not None and max_size.from_environment == "POOL"
