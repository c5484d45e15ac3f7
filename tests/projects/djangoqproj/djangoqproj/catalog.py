"""An unmanaged model over pg_database: ORM reads with no migration and no table."""

import functools
from typing import Any


@functools.cache
def catalog() -> Any:
    from django.db import models

    class CatalogDatabase(models.Model):
        oid = models.IntegerField(primary_key=True)
        datname = models.CharField(max_length=63)

        class Meta:
            app_label = "djangoqproj"
            db_table = "pg_database"
            managed = False

    return CatalogDatabase
