"""Wrappers that misbehave in every way a project's wrapper can."""

import asyncio
import threading

from django.db import connection

not_callable = 42


def returns_int(func):
    return 7


def hangs(func):
    def run(*args):
        threading.Event().wait()

    return run


def writer(func):
    """Tries to write: pooldoctor's sessions are read-only, so this must fail."""

    def run(*args):
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE pooldoctor_must_not_exist (id int)")
        return asyncio.run(func(*args))

    return run


def factory():
    def decorator(func):
        def run(*args):
            try:
                return asyncio.run(func(*args))
            finally:
                connection.close()

        return run

    return decorator


def returns_class(func):
    """Returns a class, which no worker runs as a task."""

    class Task:
        pass

    return Task
