"""What the request modes share: where their views are mounted and how they answer.

The request modes' views are mounted under one reserved prefix in front of the project's own
URLconf, in the subject process only (``ROOT_URLCONF`` points at a module made here that includes
the project's), so a request reaches them through the project's own application, middleware and
signals, and the project's URLconf is not touched.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from pooldoctor.core.probes.task import OK

PREFIX = "__pooldoctor__"
_MODULE = "pooldoctor_request_urls"
# What a root URLconf may define besides its patterns: kept, so errors render as the project's.
_HANDLERS = ("handler400", "handler403", "handler404", "handler500")


def path_for(mode: str, kind: str) -> str:
    """The path a request to ``mode``'s view takes, failing the way ``kind`` says."""
    return f"/{PREFIX}/{mode}/?kind={kind}"


def kind_of(request: Any) -> str:
    return str(request.GET.get("kind", OK))


def answer(value: int) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"value": value})


def install(alias: str) -> None:
    """Mount every request mode's view in front of the project's URLconf (call after setup)."""
    from django.conf import settings
    from django.urls import clear_url_caches, include, path

    from pooldoctor.core.probes import all_modes

    module = types.ModuleType(_MODULE)
    patterns: list[Any] = [
        path(f"{PREFIX}/{mode.name}/", mode.task(alias)) for mode in all_modes() if mode.request
    ]
    project = getattr(settings, "ROOT_URLCONF", None)
    if project:
        project_module = __import__(project, fromlist=["urlpatterns"])
        for handler in _HANDLERS:
            if hasattr(project_module, handler):
                setattr(module, handler, getattr(project_module, handler))
        patterns.append(path("", include(project)))
    module.urlpatterns = patterns  # type: ignore[attr-defined]
    sys.modules[_MODULE] = module
    settings.ROOT_URLCONF = _MODULE
    clear_url_caches()
