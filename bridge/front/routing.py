"""HTTP API routes: which route a request takes, and the path parameters it carries.

A route key is ``METHOD /path`` or ``$default``. The rules below are API Gateway's; each
says where it comes from.

Route keys ("Working with routes for HTTP APIs",
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html):

- the method is one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY, upper-case;
- the path starts with ``/``; a path variable ``{name}`` is a whole segment; a greedy
  variable ``{name+}`` "must be at the end of the resource path";
- a path may not end with ``/`` (other than ``/`` itself) nor hold an empty segment:
  API Gateway refuses such keys ("invalid route name ending in /", storacha/w3infra#166);
- a variable name appears once; two keys with the same method and the same shape
  (``GET /a/{x}`` and ``GET /a/{y}``) would be ambiguous, and are refused here.

Matching ("Routing API requests", same page, #http-api-develop-routes.evaluation):

- the most specific route wins: a full match (no greedy variable) beats a route with a
  greedy variable, which beats ``$default``; among full matches a literal segment beats a
  variable, first difference from the left (the docs' table: ``GET /pets/dog/1`` beats
  ``GET /pets/dog/{id}``); among greedy routes the longer literal prefix wins
  (``GET /pets/{proxy+}`` beats ``ANY /{proxy+}``); for the same path a named method
  beats ``ANY`` ("ANY ... match[es] all methods that you haven't defined for a
  resource");
- ``HEAD`` is its own method: it takes a ``HEAD`` or ``ANY`` route, never a ``GET`` one
  (AWS documents no fallback; LocalStack's parity-tested router drops the HEAD-to-GET
  rule its web framework would add). ``ANY`` stands for the seven methods above;
- the request path is percent-decoded once before matching, so ``/a%2Fb`` is two
  segments ("API Gateway decodes URL-encoded request parameters before passing them to
  your backend"; live captures: ``/a%2Fb`` arrives as ``rawPath`` ``/a/b``,
  fastify/aws-lambda-fastify#169; hotsock/voker testdata: ``space%20value`` arrives as
  ``space value``). Path parameter values are cut from the decoded path;
- segments compare exactly: paths are case-sensitive;
- a trailing slash counts: ``/pets/`` does not match ``GET /pets``. A greedy variable
  takes one or more segments, and the empty one left by a trailing slash counts: a live
  HTTP API event shows ``/handler/`` matched ``ANY /handler/{proxy+}`` with
  ``pathParameters`` ``{"proxy": ""}`` (mantil-io/go-lambda-examples, 2022). Without
  the slash (``/handler``) there is no child segment and no match; ``/{proxy+}`` does not
  match ``/``. A plain ``{name}`` needs a non-empty segment (as REST APIs, aws/chalice#588).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["ANY", "DEFAULT_ROUTE", "METHODS", "Match", "Route", "RouteTable", "decode_path"]

DEFAULT_ROUTE = "$default"
ANY = "ANY"
#: the methods a route key may name; ``ANY`` matches the other seven
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", ANY})

_ANY_OF = METHODS - {ANY}
_VARIABLE = re.compile(r"\{([A-Za-z0-9._-]+)(\+?)\}")
_LITERAL, _VAR, _GREEDY = 2, 1, 0  # specificity of a segment kind: higher wins


@dataclass(frozen=True, slots=True)
class Route:
    """One configured route. ``method`` and ``path`` are empty for ``$default``."""

    key: str
    method: str
    path: str
    target: str


@dataclass(frozen=True, slots=True)
class Match:
    """The route a request took and its decoded ``pathParameters`` (empty for none)."""

    route: Route
    path_parameters: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: int
    text: str  # the literal, or the variable's name


@dataclass(frozen=True, slots=True)
class _Compiled:
    route: Route
    segments: tuple[_Segment, ...]
    greedy: bool
    rank: tuple[int, ...]  # specificity of the path, segment by segment

    def bind(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters if ``parts`` (the decoded request path, split) fit."""
        fixed = self.segments[:-1] if self.greedy else self.segments
        if len(parts) < len(self.segments) or (not self.greedy and len(parts) != len(fixed)):
            return None
        params: dict[str, str] = {}
        for segment, part in zip(fixed, parts, strict=False):
            if segment.kind == _LITERAL:
                if part != segment.text:
                    return None
            elif not part:
                return None
            else:
                params[segment.text] = part
        if self.greedy:
            params[self.segments[-1].text] = "/".join(parts[len(fixed) :])
        return params


def decode_path(raw_path: str) -> str:
    """The request path as API Gateway hands it on: percent-decoded once, as UTF-8
    (a sequence that is not UTF-8 becomes U+FFFD); ``+`` stays ``+``."""
    return unquote(raw_path, errors="replace")


def _split(path: str) -> list[str]:
    return [] if path == "/" else path[1:].split("/")


def _parse(key: str, target: str) -> _Compiled:
    """Checks one route key; raises ``ValueError`` naming the key and what is wrong."""
    if not isinstance(target, str) or not target:
        raise ValueError(f"route {key!r}: the target must be a function name")
    if key == DEFAULT_ROUTE:
        return _Compiled(Route(key, "", "", target), (), False, ())
    method, sep, path = key.partition(" ")
    if not sep or " " in path:
        raise ValueError(f"route {key!r}: a route key is 'METHOD /path' or '$default'")
    if method not in METHODS:
        allowed = ", ".join(sorted(METHODS))
        raise ValueError(f"route {key!r}: method must be one of {allowed} (upper-case)")
    if not path.startswith("/"):
        raise ValueError(f"route {key!r}: the path must start with '/'")
    if path != "/" and path.endswith("/"):
        raise ValueError(f"route {key!r}: the path must not end with '/'")
    segments: list[_Segment] = []
    for text in _split(path):
        if not text:
            raise ValueError(f"route {key!r}: the path has an empty segment ('//')")
        if segments and segments[-1].kind == _GREEDY:
            raise ValueError(f"route {key!r}: a greedy variable must be the last segment")
        variable = _VARIABLE.fullmatch(text)
        if variable is None:
            if any(c in text for c in "{}?#%") or any(c.isspace() for c in text):
                raise ValueError(
                    f"route {key!r}: segment {text!r} must be a literal without {{}}?#% or "
                    "spaces, or a whole variable {name} / {name+}"
                )
            segments.append(_Segment(_LITERAL, text))
            continue
        name, plus = variable.groups()
        if any(s.kind != _LITERAL and s.text == name for s in segments):
            raise ValueError(f"route {key!r}: path variable {name!r} appears twice")
        segments.append(_Segment(_GREEDY if plus else _VAR, name))
    greedy = bool(segments) and segments[-1].kind == _GREEDY
    rank = tuple(s.kind for s in segments)
    return _Compiled(Route(key, method, path, target), tuple(segments), greedy, rank)


def _shape(compiled: _Compiled) -> tuple[str, ...]:
    return tuple(
        s.text if s.kind == _LITERAL else ("{+}" if s.kind == _GREEDY else "{}")
        for s in compiled.segments
    )


class RouteTable:
    """An HTTP API's routes, checked once; :meth:`match` picks a request's route.

    ``routes`` maps route keys to function names. Raises ``ValueError`` naming the first
    bad key and why (see the module docstring for API Gateway's rules)."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        compiled = [_parse(key, target) for key, target in routes.items()]
        seen: dict[tuple[str, tuple[str, ...]], str] = {}
        for c in compiled:
            if c.route.key == DEFAULT_ROUTE:
                continue
            shape = (c.route.method, _shape(c))
            if shape in seen:
                raise ValueError(
                    f"route {c.route.key!r}: ambiguous with {seen[shape]!r} "
                    "(same method, same path shape)"
                )
            seen[shape] = c.route.key
        self._default = next((c.route for c in compiled if c.route.key == DEFAULT_ROUTE), None)
        # most specific first: full matches, then path rank, then a named method over ANY
        self._routes = sorted(
            (c for c in compiled if c.route.key != DEFAULT_ROUTE),
            key=lambda c: (not c.greedy, c.rank, c.route.method != ANY),
            reverse=True,
        )

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every route, most specific first, ``$default`` (if any) last."""
        tail = (self._default,) if self._default is not None else ()
        return tuple(c.route for c in self._routes) + tail

    def match(self, method: str, raw_path: str) -> Match | None:
        """The route for a request (``raw_path`` as received: percent-encoded, no query),
        ``$default`` when nothing else fits, ``None`` when there is no ``$default`` either
        (API Gateway answers ``404 {"message":"Not Found"}``)."""
        path = decode_path(raw_path)
        if path.startswith("/"):
            parts = _split(path)
            for c in self._routes:
                if c.route.method != method and not (c.route.method == ANY and method in _ANY_OF):
                    continue
                params = c.bind(parts)
                if params is not None:
                    return Match(c.route, params)
        return Match(self._default, {}) if self._default is not None else None
