"""The request path in process: requests sent through the project's own ASGI or WSGI application.

``asgi.py`` serves it from one long-lived event loop, ``wsgi.py`` from a fixed set of threads;
:mod:`~pooldoctor.hosts.web.common` holds what both share. httpx is imported only by those two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pooldoctor.hosts.web.common import (
    Client,
    Request,
    Rounds,
    act_as,
    base_url,
    load_application,
    mode_failure,
    url_failure,
)


def client(interface: str, app: Any, concurrency: int) -> Client:
    """The client that sends requests through ``app`` the way a server of ``interface`` would."""
    if interface == "asgi":
        from pooldoctor.hosts.web.asgi import AsgiClient

        return AsgiClient(app, base_url())
    from pooldoctor.hosts.web.wsgi import WsgiClient

    return WsgiClient(app, base_url(), concurrency)


def rounds_for(
    subject: Mapping[str, Any], web: Mapping[str, Any], alias: str, settings: str
) -> Rounds:
    """The per-task callable of a web subject (a ``url``, or a request mode by name): its
    requests through the project's application, ``concurrency`` at a time."""
    from pooldoctor.core.probes import views

    views.install(alias)  # before the application loads the URLconf
    app = load_application(web["interface"], web.get("app"), settings)
    make: Callable[[str], Request]
    if subject["kind"] == "url":
        request = Request.from_wire(subject["request"])
        if request.user is not None:
            act_as(request.user)
        make, judge = (lambda kind: request), url_failure
    else:
        name = subject["name"]
        make, judge = (lambda kind: Request(path=views.path_for(name, kind))), mode_failure
    concurrency = web["concurrency"]
    return Rounds(
        client(web["interface"], app, concurrency), make, web["requests"], concurrency, judge
    )
