"""One Dramatiq message run in this thread the way a worker thread runs it (``check --task``), and
what a run leaves on Redis deleted (``simulate``'s purge).

The message goes through the worker's own ``WorkerThread.process_message``: every middleware's
``before_process_message`` (django-dramatiq's DbConnectionsMiddleware closes old connections
there), the actor, every ``after_process_message`` in reverse order (it closes them again). The
broker is a :class:`~dramatiq.brokers.stub.StubBroker` holding the project's middleware objects, so
that a middleware that sends messages (Retries, Callbacks) never reaches the project's broker.
"""

from __future__ import annotations

from typing import Any

from pooldoctor.hosts.base import delete_redis_keys, glob_escape


class _Done:
    """What a worker thread's consumer and work queue are told once a message is processed."""

    def post_process_message(self, message: Any) -> None:
        pass

    def task_done(self) -> None:
        pass


def message_runner(actor: Any) -> Any:
    """A callable that sends one message to ``actor`` through its broker's middleware, in this
    thread, and returns what the actor returned or raises what it raised."""
    from dramatiq import Middleware, worker
    from dramatiq.broker import MessageProxy
    from dramatiq.brokers.stub import StubBroker

    outcome: dict[str, Any] = {}

    class Outcome(Middleware):  # first: its after_process_message runs after every other one
        def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                                  exception: BaseException | None = None) -> None:  # fmt: skip
            outcome.update(result=result, exception=exception)

        def after_skip_message(self, broker: Any, message: Any) -> None:
            outcome.update(result=None, exception=RuntimeError("a middleware skipped the message"))

    broker = StubBroker(middleware=[Outcome(), *actor.broker.middleware])
    broker.actors[actor.actor_name] = actor  # not declare_actor: the actor stays the project's
    broker.declare_queue(actor.queue_name)  # a failed message's retry lands here, not on Redis
    _start_event_loop(broker)
    thread_class = getattr(worker, "WorkerThread", None) or worker._WorkerThread  # 1.x: private
    done: Any = _Done()
    thread = thread_class(broker=broker, consumers={actor.queue_name: done},
                          work_queue=done, worker_timeout=1000)  # fmt: skip

    def run(*args: Any, **kwargs: Any) -> Any:
        outcome.clear()
        message = actor.message_with_options(args=args, kwargs=kwargs, max_retries=0)
        thread.process_message(MessageProxy(message))
        if outcome.get("exception") is not None:
            raise outcome["exception"]
        return outcome.get("result")

    return run


def _start_event_loop(broker: Any) -> None:
    """The AsyncIO middleware's event loop thread, which runs async actors: its worker starts it
    at ``before_worker_boot``."""
    from dramatiq.middleware import AsyncIO

    try:
        from dramatiq.asyncio import get_event_loop_thread
    except ImportError:  # a Dramatiq without async actors
        return
    for middleware in broker.middleware:
        if isinstance(middleware, AsyncIO) and get_event_loop_thread() is None:
            middleware.before_worker_boot(broker, None)


def purge(url: str, namespace: str) -> None:
    """Delete every key of the run's namespace (its queue, delay and dead-letter queues, their
    message hashes, acks and heartbeats); never raises, bounded in time."""
    delete_redis_keys(url, [f"{glob_escape(namespace)}:*"])
