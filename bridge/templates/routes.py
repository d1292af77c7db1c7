"""API routes: API Gateway events (SAM's ``Api`` and ``HttpApi``, the Serverless
Framework's ``http`` and ``httpApi``) as routes of an ``http`` API of the bridge.

A route is ``METHOD /path`` (``ANY`` for every method) or ``$default``; REST APIs send
payload format 1.0, HTTP APIs 2.0 unless they say otherwise. The options of one API
(payload version, stage, CORS) must agree across its routes (see
:meth:`bridge.templates.derived.Derived.add_route`). Authorizers are not enforced: a note
says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.templates.derived import Derived

__all__ = ["REST_PAYLOAD", "cors_options", "note_authorizer", "route_options"]

#: the payload format of a REST API (an HTTP API's default is 2.0)
REST_PAYLOAD = "1.0"

_CORS = (
    ("AllowOrigins", "allow_origins"),
    ("AllowMethods", "allow_methods"),
    ("AllowHeaders", "allow_headers"),
    ("ExposeHeaders", "expose_headers"),
    ("MaxAge", "max_age"),
    ("AllowCredentials", "allow_credentials"),
)


def route_options(*, payload_format_version: str, stage: Any) -> dict[str, Any]:
    """The options of the API a route belongs to (the routes of one API share them)."""
    return {"type": "http", "payload_format_version": payload_format_version, "stage": stage}


def cors_options(cors: Mapping[str, Any]) -> dict[str, Any]:
    """An HTTP API's ``CorsConfiguration`` as the API's ``cors`` option."""
    return {option: cors[aws] for aws, option in _CORS if aws in cors}


def note_authorizer(derived: Derived, where: str) -> None:
    """Note that the authorizer of the route ``where`` names is not enforced."""
    derived.notes.append(f"{where}: authorizer not enforced (the bridge has no authorizers)")
