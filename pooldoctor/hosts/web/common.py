"""What the two in-process web hosts share (``asgi.py``, ``wsgi.py``): the request a ``--url`` or a
request mode sends, the application to send it through (the project's, named or found next to its
settings), and the round of requests that stands for one task in the subject process: ``C``
requests at a time (``--concurrency``), then a census. Requests go through httpx's ASGI and WSGI
transports (the field's standard in-process client), never a socket.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pooldoctor.errors import ProjectError, UsageError

INTERFACES = ("asgi", "wsgi")


@dataclasses.dataclass(frozen=True)
class Request:
    """One request as the user described it (``--url`` and its options)."""

    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    user: str | None = None
    """The primary key of the user the request runs as (``--user``), or None."""

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    def wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Request:
        return cls(**{**wire, "headers": tuple(tuple(h) for h in wire.get("headers", ()))})


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int | None
    """The response's status, or None when the application raised before answering."""
    error: str | None = None
    """What the application raised (httpx's transports re-raise it unless told not to)."""


class RequestFailed(Exception):
    """A request to the project's URL that did not get a successful answer."""


class Client(Protocol):
    def round(self, requests: Sequence[Request]) -> list[Reply]:
        """Send ``requests`` at the same time and wait for every reply."""

    def close(self) -> None: ...


def load_application(interface: str, spec: str | None, settings_module: str) -> Any:
    """The application named ``MODULE:ATTR``, else the ``asgi``/``wsgi`` module next to the
    settings (as ``startproject`` lays it out), else Django's own handler."""
    if spec is None:
        package = settings_module.rpartition(".")[0]
        candidate = f"{package}.{interface}" if package else interface
        try:
            found = importlib.util.find_spec(candidate) is not None
        except ImportError:
            found = False
        if not found:
            if interface == "asgi":
                from django.core.asgi import get_asgi_application

                return get_asgi_application()
            from django.core.wsgi import get_wsgi_application

            return get_wsgi_application()
        spec = f"{candidate}:application"
    module_name, _, attr = spec.partition(":")
    option = f"--{interface} {spec}"
    if not module_name or not attr:
        raise UsageError(f"{option} is not MODULE:ATTR", "for example mysite.asgi:application")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProjectError(f"{option}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise ProjectError(
            f"{option}: importing {module_name!r} raised {type(exc).__name__}: {exc}",
            "fix the error in that module (run with --debug for the traceback)",
        ) from exc
    app = module
    for part in attr.split("."):
        if not hasattr(app, part):
            raise ProjectError(f"{option}: {module_name!r} has no attribute {part!r}")
        app = getattr(app, part)
    if not callable(app):
        raise ProjectError(f"{option}: {attr} is a {type(app).__name__}, not an application")
    return app


def base_url() -> str:
    """Where requests say they go: a host the project's ``ALLOWED_HOSTS`` accepts, over https
    when the project redirects everything there."""
    from django.conf import settings

    hosts = [h for h in settings.ALLOWED_HOSTS if h not in ("*", ".")]
    host = hosts[0].lstrip(".") if hosts else "localhost"
    scheme = "https" if getattr(settings, "SECURE_SSL_REDIRECT", False) else "http"
    return f"{scheme}://{host}"


def act_as(user: str) -> None:
    """Make every request run as the user whose primary key is ``user``: Django's own
    ``get_user``/``aget_user`` answer with that user (read through the ORM, as a session's user
    is), so no session is created and nothing is written."""
    from django.contrib import auth

    model = auth.get_user_model()

    def get_user(request: Any) -> Any:
        return model._default_manager.get(pk=user)

    async def aget_user(request: Any) -> Any:
        return await model._default_manager.aget(pk=user)

    auth.get_user = get_user
    auth.aget_user = aget_user


class Rounds:
    """The subject's per-task callable: round ``i`` sends ``concurrency`` requests (fewer in the
    last round), made by ``request(kind)``, and raises what a failed one met."""

    def __init__(
        self,
        client: Client,
        request: Callable[[str], Request],
        requests: int,
        concurrency: int,
        judge: Callable[[str, Request, Reply], BaseException | None],
    ) -> None:
        self.client = client
        self.request = request
        self.left = requests
        self.concurrency = concurrency
        self.judge = judge

    def __call__(self, kind: str) -> int:
        size = min(self.concurrency, self.left) or 1
        self.left -= size
        request = self.request(kind)
        replies = self.client.round([request] * size)
        for reply in replies:
            failure = self.judge(kind, request, reply)
            if failure is not None:
                raise failure
        return len(replies)


def rounds(requests: int, concurrency: int) -> int:
    """How many censuses ``requests`` sent ``concurrency`` at a time take."""
    return -(-requests // concurrency)


def url_failure(kind: str, request: Request, reply: Reply) -> BaseException | None:
    """A project URL's request failed when it raised or got no successful answer (a 404 or a
    403 measured nothing of the view)."""
    if reply.status is None:
        return RequestFailed(f"{request.name} raised {reply.error}")
    if reply.status >= 400:
        return RequestFailed(f"{request.name} answered {reply.status}")
    return None


def mode_failure(kind: str, request: Request, reply: Reply) -> BaseException | None:
    """A request mode's view answers 200, except when its kind makes the probe raise on purpose
    (Django then answers 500, or a streamed body breaks off after its 200)."""
    from pooldoctor.core.probes.task import OK, ProbeFailure

    if kind != OK:
        return ProbeFailure(f"the view raised on purpose ({kind})")
    if reply.status != 200:
        return RequestFailed(f"{request.name} answered {reply.status or reply.error}")
    return None
