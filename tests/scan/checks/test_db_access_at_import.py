"""PD314: a database query at import time or in AppConfig.ready(), in a project that forks."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ScanSource

POOL = 'DATABASES = {"default": {"OPTIONS": {"pool": {"timeout": 5}}}}\n'
CELERY = "from celery import Celery\n\napp = Celery('mysite')\n"
PROJECT = {"mysite/settings.py": POOL, "mysite/celery.py": CELERY}


def test_module_level_query_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from shop.models import Category

        DEFAULT_CATEGORY = Category.objects.get(slug="default")
    """
    [finding] = scan_source(tmp_path, PROJECT | {"shop/constants.py": source}, "PD314")

    assert (finding.code, finding.file, finding.line, finding.column) == (
        "PD314",
        "shop/constants.py",
        3,
        20,
    )
    assert finding.message == (
        "database query at import time (Category.objects.get(slug='default')): it opens the "
        "connection and the pool in the parent process, and every forked worker inherits them"
    )


@pytest.mark.parametrize(
    ("statement", "line", "column"),
    [
        ("COUNT = Book.objects.filter(active=True).count()", 3, 9),
        ("FIRST = Book.objects.order_by('pk').first()", 3, 9),
        ("IDS = list(Book.objects.values_list('pk', flat=True))", 3, 7),
        ("NAMES = {b.pk: b.name for b in Book.objects.all()}", 3, 32),
        ("for book in Book.objects.all():\n    print(book)", 3, 13),
        ("TOP = Book.objects.all()[0]", 3, 7),
        ("SITE = Site.objects.get_current()", 3, 8),
        ("Book._default_manager.create(name='x')", 3, 1),
        ("cursor = connection.cursor()", 3, 10),
        ("with connections['default'].cursor() as cursor:\n    cursor.execute('SELECT 1')", 3, 6),
        ("TABLES = connection.introspection.table_names()", 3, 10),
        ("if settings.DEBUG:\n    Book.objects.update_or_create(pk=1)", 4, 5),
        ("try:\n    X = Book.objects.get(pk=1)\nexcept Exception:\n    X = None", 4, 9),
    ],
)
def test_queries_at_import_time_are_flagged(
    tmp_path: Path, scan_source: ScanSource, statement: str, line: int, column: int
) -> None:
    source = "from django.db import connection, connections\n\n" + statement + "\n"
    [finding] = scan_source(tmp_path, PROJECT | {"shop/startup.py": source}, "PD314")

    assert (finding.line, finding.column) == (line, column)
    assert finding.message.startswith("database query at import time (")


def test_query_in_app_config_ready_is_flagged(tmp_path: Path, scan_source: ScanSource) -> None:
    source = """\
        from django.apps import AppConfig, apps


        class ShopConfig(AppConfig):
            name = "shop"

            def ready(self):
                from . import signals

                Currency = apps.get_model("shop", "Currency")
                self.default_currency = Currency.objects.filter(default=True).first()

                def handler(**kwargs):
                    Currency.objects.get(pk=1)  # runs later, not in ready()
    """
    [finding] = scan_source(tmp_path, PROJECT | {"shop/apps.py": source}, "PD314")

    assert (finding.file, finding.line) == ("shop/apps.py", 11)
    assert finding.message.startswith(
        "database query in AppConfig.ready() (Currency.objects.filter(default=True).first()):"
    )


def test_gunicorn_alone_forks_too(tmp_path: Path, scan_source: ScanSource) -> None:
    files = {
        "mysite/settings.py": POOL,
        "Procfile": "web: gunicorn mysite.wsgi\n",
        "shop/constants.py": "TOTAL = Book.objects.count()\n",
    }
    [finding] = scan_source(tmp_path, files, "PD314")

    assert finding.file == "shop/constants.py"


NOT_AT_IMPORT = """\
    from django import forms
    from django.db import connection, models


    class Book(models.Model):
        name = models.CharField(max_length=100)

        objects = models.Manager()
        published = PublishedManager()

        class Meta:
            ordering = ["name"]


    class BookForm(forms.Form):
        book = forms.ModelChoiceField(queryset=Book.objects.all())


    def count_books():
        return Book.objects.count()


    async def first_book():
        return await Book.objects.afirst()


    def raw():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")


    RECENT = Book.objects.filter(active=True).order_by("-pk")  # lazy: no query yet
    by_name = lambda name: Book.objects.get(name=name)
    connection.close()

    if __name__ == "__main__":
        print(Book.objects.count())
"""


@pytest.mark.parametrize(
    "files",
    [
        PROJECT | {"shop/models.py": NOT_AT_IMPORT},
        {"mysite/celery.py": CELERY, "shop/constants.py": "TOTAL = Book.objects.count()\n"},
        {
            "mysite/settings.py": POOL.replace('{"timeout": 5}', "False"),
            "mysite/celery.py": CELERY,
            "shop/constants.py": "TOTAL = Book.objects.count()\n",
        },
        {"mysite/settings.py": POOL, "shop/constants.py": "TOTAL = Book.objects.count()\n"},
        PROJECT
        | {
            "scripts/seed.py": """\
                import django

                django.setup()

                from shop.models import Book

                Book.objects.create(name="seed")
            """
        },
        PROJECT
        | {
            "shop/apps.py": """\
                class NotAnAppConfig:
                    def ready(self):
                        Book.objects.count()
            """
        },
    ],
    ids=[
        "not-at-import",
        "no-pool",
        "pool-off",
        "no-forking",
        "standalone-script",
        "not-appconfig",
    ],
)
def test_not_flagged(tmp_path: Path, scan_source: ScanSource, files: dict[str, str]) -> None:
    assert scan_source(tmp_path, files, "PD314") == []


def test_inline_suppression(tmp_path: Path, scan_source: ScanSource) -> None:
    source = "TOTAL = Book.objects.count()  # pooldoctor: ignore[PD314]\n"

    assert scan_source(tmp_path, PROJECT | {"shop/constants.py": source}, "PD314") == []
