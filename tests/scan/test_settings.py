"""Which modules are the live settings: named by DJANGO_SETTINGS_MODULE, else guessed."""

from __future__ import annotations

import pytest

from pooldoctor.scan.settings import (
    ProjectModules,
    Reference,
    Role,
    read_settings,
    references,
    role,
)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("mysite/settings.py", Role.SOURCE),
        ("shop/migrations/0001_initial.py", Role.MIGRATION),
        ("shop/tests.py", Role.TEST),
        ("shop/tests/test_views.py", Role.TEST),
        ("tests/settings.py", Role.TEST),
        ("shop/test_settings.py", Role.TEST),
        ("conftest.py", Role.TEST),
        ("shop/contest.py", Role.SOURCE),
        ("shop/latest.py", Role.SOURCE),
    ],
)
def test_roles(relative: str, expected: Role) -> None:
    assert role(relative) is expected


@pytest.mark.parametrize(
    ("name", "text", "module"),
    [
        (
            "manage.py",
            'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings.dev")\n',
            "mysite.settings.dev",
        ),
        (
            "mysite/wsgi.py",
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'mysite.settings'\n",
            "mysite.settings",
        ),
        ("Dockerfile", "ENV DJANGO_SETTINGS_MODULE=mysite.settings.prod\n", "mysite.settings.prod"),
        (
            "compose.yaml",
            "    environment:\n      DJANGO_SETTINGS_MODULE: mysite.settings.prod\n",
            "mysite.settings.prod",
        ),
        (
            "k8s/web.yaml",
            "env:\n  - name: DJANGO_SETTINGS_MODULE\n    value: mysite.settings.k8s\n",
            "mysite.settings.k8s",
        ),
        (
            "Procfile",
            "release: python manage.py migrate --settings=mysite.settings.prod\n",
            "mysite.settings.prod",
        ),
    ],
)
def test_references(name: str, text: str, module: str) -> None:
    [found] = references(name, text, is_python=name.endswith(".py"))
    assert found.module == module
    assert found.file == name


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings.test\n"),
        ("conftest.py", 'os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings.test"\n'),
        ("shop/tests/test_x.py", 'os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"\n'),
        ("manage.py", 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"mysite.{ENV}")\n'),
    ],
)
def test_what_is_not_a_reference(name: str, text: str) -> None:
    assert references(name, text, is_python=name.endswith(".py")) == ()


def _modules(files: dict[str, str]) -> ProjectModules:
    return ProjectModules({name: (lambda text=text: text) for name, text in files.items()})


ENGINE = '"ENGINE": "django.db.backends.postgresql"'
POOLED = f'DATABASES = {{"default": {{{ENGINE}, "OPTIONS": {{"pool": True}}}}}}\n'
PLAIN = f'DATABASES = {{"default": {{{ENGINE}}}}}\n'


def test_named_settings_win_over_look_alikes() -> None:
    modules = _modules(
        {"src/mysite/settings/prod.py": PLAIN, "src/mysite/settings/local.py": POOLED}
    )
    named = [Reference("mysite.settings.prod", "manage.py", 9)]
    settings = read_settings(named, ["src/mysite/settings/local.py"], modules)

    assert settings.modules == ("mysite.settings.prod",)
    assert settings.references == tuple(named)
    assert not settings.pools and not settings.guessed


def test_a_name_outside_the_tree_falls_back_to_the_look_alikes() -> None:
    modules = _modules({"mysite/settings.py": POOLED, "mysite/settings_test.py": POOLED})
    named = [Reference("elsewhere.settings", "manage.py", 9)]
    settings = read_settings(named, ["mysite/settings.py", "mysite/settings_test.py"], modules)

    assert settings.modules == ("mysite.settings",)
    assert settings.guessed
    assert [a.alias for a in settings.pools] == ["default"]
