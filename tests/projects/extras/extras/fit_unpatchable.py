"""Wrappers that run the task with ``asyncio.run`` (pinned) but that pooldoctor cannot rewrite:
a callable object and a lambda."""

import asyncio


class AsyncTask:
    """A decorator as an object, configured once."""

    def __call__(self, func):
        def run(*args, **kwargs):
            return asyncio.run(func(*args, **kwargs))

        return run


async_task = AsyncTask()

as_lambda = lambda func: lambda *args, **kwargs: asyncio.run(func(*args, **kwargs))  # noqa: E731
