"""Asking the fleet: the ``pooldoctor_census`` remote-control command and a ping, both broadcast
through the app's own broker at once, and each node classified by what came back.

- answered: a census reply (``"schema"`` and ``"processes"``);
- not installed: the node answered, but with an error for the unknown command (kombu's pidbox
  replies ``{"error": "KeyError('pooldoctor_census')"}``; :func:`classify` marks that reply
  ``"installed": False``), or it answered the ping only;
- no answer: a ``--destination`` that nothing answered within ``--timeout``.

Nothing here waits beyond the timeout: the broker is reached first with one bounded attempt (kombu
otherwise retries a publish for ever), and both broadcasts run on their own threads, joined with
a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pooldoctor.core import project
from pooldoctor.errors import MissingExtraError, PooldoctorError
from pooldoctor.hosts.base import LiveAnswers
from pooldoctor.hosts.celery.install import COMMAND

CONNECT_TIMEOUT = 3.0
# Beyond --timeout: a broadcast publishes before it waits, and a slow publish must not hang us.
GRACE = 1.0


class BrokerError(PooldoctorError):
    """The app's broker cannot be reached."""


# What kombu's pidbox answers for a command the worker does not know: the KeyError of its handler
# lookup. Any other error is the census failing, not pooldoctor missing.
_UNKNOWN_COMMAND = repr(KeyError(COMMAND))


def classify(reply: Any) -> Mapping[str, Any]:
    """A node's reply as the judge reads it: a census as it came, an error as ``{"error": ...}``,
    marked ``"installed": False`` when it is Celery's answer to an unknown command."""
    if not isinstance(reply, Mapping):
        return {"error": repr(reply)}
    if "processes" not in reply and str(reply.get("error")) == _UNKNOWN_COMMAND:
        return {**reply, "installed": False}
    return reply


class BrokerUnreachable(Exception):
    """The broker did not answer one bounded attempt (the cause is kombu's error)."""


def reach_broker(connect: Callable[[], Any], label: str, timeout: float) -> None:
    """One bounded connection attempt (kombu otherwise retries for ever): MissingExtraError when
    kombu cannot load the transport's client library, BrokerUnreachable for anything else, for
    the caller to word."""
    try:
        with connect() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except (ImportError, AttributeError) as exc:
        scheme = _scheme(label)
        raise MissingExtraError(
            f"{label}: kombu cannot load the client library for {scheme}:// "
            f"({type(exc).__name__}: {exc})",
            f"pip install 'celery[{scheme}]'",
        ) from exc
    except Exception as exc:
        raise BrokerUnreachable() from exc


def _scheme(label: str) -> str:
    """The URL scheme in ``--broker redis://...`` or ``broker amqp://...``."""
    return label.rpartition(" ")[2].partition("://")[0]


def broker_url(app: Any) -> str:
    """The app's broker, password masked, for messages and reports."""
    try:
        url = app.connection_for_write().as_uri()
    except Exception:
        url = str(app.conf.broker_url or "")
    return project.mask_url(str(url))


def check_broker(app: Any, timeout: float) -> None:
    """One bounded connection attempt to the app's broker."""
    shown = broker_url(app)
    limit = min(CONNECT_TIMEOUT, timeout)
    try:
        reach_broker(lambda: app.connection_for_write(connect_timeout=limit), f"broker {shown}",
                     limit)  # fmt: skip
    except BrokerUnreachable as unreachable:
        exc = unreachable.__cause__
        text = " ".join(str(exc).split())
        raise BrokerError(
            f"cannot reach the app's broker {shown}: {text}",
            "start the broker, or fix the app's broker_url, which the workers use too",
        ) from exc


def ask(app: Any, timeout: float, destination: Sequence[str] = ()) -> LiveAnswers:
    """Broadcast the census command and a ping at once; at most ``timeout`` (plus a publish)."""
    started = time.monotonic()
    broker = broker_url(app)
    check_broker(app, timeout)
    targets = list(destination) or None
    limit = len(destination) or None
    census: dict[str, Any] = {}
    pings: dict[str, Any] = {}
    problems: list[str] = []

    def census_call() -> list[Any]:
        with app.connection_for_write(connect_timeout=CONNECT_TIMEOUT) as conn:
            result: list[Any] = app.control.broadcast(
                COMMAND, reply=True, timeout=timeout, destination=targets, limit=limit,
                connection=conn,
            )  # fmt: skip
            return result

    def ping_call() -> list[Any]:
        with app.connection_for_write(connect_timeout=CONNECT_TIMEOUT) as conn:
            result: list[Any] = app.control.ping(
                destination=targets, timeout=timeout, limit=limit, connection=conn
            )
            return result

    threads = [
        threading.Thread(target=_collect, args=(census_call, census, problems), daemon=True,
                         name="pooldoctor-census"),
        threading.Thread(target=_collect, args=(ping_call, pings, problems), daemon=True,
                         name="pooldoctor-ping"),
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = started + timeout + CONNECT_TIMEOUT + GRACE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    # A thread still running is abandoned (a daemon): its nodes count as not answering.
    return LiveAnswers(
        broker=broker,
        replies={k: classify(v) for k, v in census.items()},
        pinged=tuple(sorted(pings)),
        destination=tuple(destination),
        received_at=time.time(),
        seconds=round(time.monotonic() - started, 3),
        problems=tuple(problems),
    )


def _collect(call: Any, into: dict[str, Any], problems: list[str]) -> None:
    try:
        replies = call()
    except Exception as exc:  # the broker went away mid-way: what came back is what we have
        problems.append(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    for reply in replies or ():
        if isinstance(reply, Mapping):
            into.update(reply)


def parse_destination(value: str | None) -> tuple[str, ...]:
    """``a@h1,b@h2`` as node names, in order, without repeats."""
    if not value:
        return ()
    return tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
