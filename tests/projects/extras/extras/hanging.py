"""A wrapper whose tasks open a transaction and then hang: a subject (or a Celery worker's child)
stays alive holding a session "idle in transaction" until something kills it."""

import threading

from django.db import connection


def in_transaction(func):
    def run(*args):
        connection.set_autocommit(False)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        threading.Event().wait()

    return run
