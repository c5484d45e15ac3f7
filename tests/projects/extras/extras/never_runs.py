"""Wrappers whose task never runs: each takes the async function and runs none of its code."""

from celery import Celery

app = Celery("extras-never-runs")


def returns_the_coroutine(func):
    """Calls the function and hands back the coroutine: nobody awaits it."""

    def run(*args, **kwargs):
        return func(*args, **kwargs)

    return run


def never_calls(func):
    """Forgets to call the function at all."""

    def run(*args, **kwargs):
        return None

    return run


def celery_task_on_async_def(func):
    """``@app.task`` put straight on the async function: Celery's tracer calls it and gets a
    coroutine back."""
    return app.task(func)
