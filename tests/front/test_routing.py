"""Tests for bridge.front.routing: API Gateway HTTP API route keys and route selection."""

from __future__ import annotations

import pytest

from bridge.front.routing import DEFAULT_ROUTE, Match, RouteTable, decode_path


def pick(routes: dict[str, str] | list[str], method: str, path: str) -> str | None:
    """The key of the route a request takes, ``None`` for 404."""
    table = RouteTable(routes if isinstance(routes, dict) else {k: "fn" for k in routes})
    match = table.match(method, path)
    return None if match is None else match.route.key


def params(routes: list[str], method: str, path: str) -> dict[str, str]:
    match = RouteTable({k: "fn" for k in routes}).match(method, path)
    assert match is not None
    return match.path_parameters


# --- the documented example: "Routing API requests" ------------------------------------

DOCS_ROUTES = ["GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "ANY /{proxy+}"]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/pets/dog/1", "GET /pets/dog/1"),
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}"),
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}"),
        ("POST", "/test/5", "ANY /{proxy+}"),
    ],
)
def test_docs_example_table_selects_the_documented_route(
    method: str, path: str, expected: str
) -> None:
    assert pick([*DOCS_ROUTES, DEFAULT_ROUTE], method, path) == expected


def test_match_carries_route_target_and_parameters() -> None:
    table = RouteTable({"GET /pets/{id}": "get-pet"})
    assert table.match("GET", "/pets/7") == Match(
        route=table.routes[0], path_parameters={"id": "7"}
    )
    route = table.routes[0]
    assert (route.key, route.method, route.path, route.target) == (
        "GET /pets/{id}",
        "GET",
        "/pets/{id}",
        "get-pet",
    )


# --- precedence ----------------------------------------------------------------------------


def test_exact_path_beats_path_variable() -> None:
    assert pick(["GET /items/{id}", "GET /items/new"], "GET", "/items/new") == "GET /items/new"
    assert pick(["GET /items/{id}", "GET /items/new"], "GET", "/items/7") == "GET /items/{id}"


def test_path_variable_beats_greedy_variable() -> None:
    routes = ["GET /items/{proxy+}", "GET /items/{id}"]
    assert pick(routes, "GET", "/items/7") == "GET /items/{id}"
    assert pick(routes, "GET", "/items/7/parts") == "GET /items/{proxy+}"


def test_greedy_variable_beats_default_route() -> None:
    routes = ["ANY /{proxy+}", DEFAULT_ROUTE]
    assert pick(routes, "DELETE", "/anything") == "ANY /{proxy+}"


def test_full_match_with_any_beats_greedy_with_named_method() -> None:
    # priority 1 is a full match for route and method, whatever the method form
    routes = ["GET /pets/{proxy+}", "ANY /pets/dog"]
    assert pick(routes, "GET", "/pets/dog") == "ANY /pets/dog"


def test_longer_greedy_prefix_wins() -> None:
    routes = ["ANY /{proxy+}", "GET /pets/{proxy+}", "GET /pets/{id}/{proxy+}"]
    assert pick(routes, "GET", "/pets/1/toys/ball") == "GET /pets/{id}/{proxy+}"
    assert pick(routes, "GET", "/pets/1") == "GET /pets/{proxy+}"
    assert pick(routes, "GET", "/cats/1") == "ANY /{proxy+}"


def test_named_method_beats_any_for_the_same_path() -> None:
    routes = ["ANY /items", "POST /items"]
    assert pick(routes, "POST", "/items") == "POST /items"
    assert pick(routes, "GET", "/items") == "ANY /items"


def test_leftmost_literal_segment_wins_between_variables() -> None:
    routes = ["GET /{kind}/list", "GET /pets/{id}"]
    assert pick(routes, "GET", "/pets/list") == "GET /pets/{id}"


def test_a_route_for_another_method_does_not_match() -> None:
    assert pick(["GET /items"], "POST", "/items") is None
    assert pick(["GET /items", DEFAULT_ROUTE], "POST", "/items") == DEFAULT_ROUTE


def test_default_route_catches_what_nothing_else_matches() -> None:
    table = RouteTable({"GET /items": "items", DEFAULT_ROUTE: "fallback"})
    match = table.match("PATCH", "/nowhere/at/all")
    assert match is not None
    assert match.route.key == DEFAULT_ROUTE
    assert (match.route.method, match.route.path, match.route.target) == ("", "", "fallback")
    assert match.path_parameters == {}


def test_no_route_and_no_default_is_none() -> None:
    assert RouteTable({"GET /items": "fn"}).match("GET", "/other") is None
    assert RouteTable({}).match("GET", "/") is None


def test_head_does_not_fall_back_to_a_get_route() -> None:
    assert pick(["GET /items"], "HEAD", "/items") is None
    assert pick(["GET /items", "ANY /items"], "HEAD", "/items") == "ANY /items"
    assert pick(["GET /items", "HEAD /items"], "HEAD", "/items") == "HEAD /items"


def test_any_covers_the_seven_methods_but_not_unknown_ones() -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
        assert pick(["ANY /x"], method, "/x") == "ANY /x"
    assert pick(["ANY /x"], "PROPFIND", "/x") is None
    assert pick(["ANY /x", DEFAULT_ROUTE], "PROPFIND", "/x") == DEFAULT_ROUTE


def test_routes_are_listed_most_specific_first_default_last() -> None:
    table = RouteTable(
        {DEFAULT_ROUTE: "d", "ANY /{proxy+}": "a", "GET /pets/{id}": "b", "GET /pets/dog": "c"}
    )
    assert [r.key for r in table.routes] == [
        "GET /pets/dog",
        "GET /pets/{id}",
        "ANY /{proxy+}",
        DEFAULT_ROUTE,
    ]


# --- path matching -------------------------------------------------------------------------


def test_path_matching_is_case_sensitive() -> None:
    assert pick(["GET /Items"], "GET", "/items") is None
    assert pick(["GET /Items"], "GET", "/Items") == "GET /Items"


def test_path_variable_takes_a_whole_segment() -> None:
    assert params(["GET /items/{id}"], "GET", "/items/abc-123") == {"id": "abc-123"}
    assert pick(["GET /items/{id}"], "GET", "/items/a/b") is None


def test_path_variable_needs_a_non_empty_segment() -> None:
    assert pick(["GET /items/{id}"], "GET", "/items/") is None


def test_trailing_slash_does_not_match_a_route_without_it() -> None:
    assert pick(["GET /pets"], "GET", "/pets/") is None
    assert pick(["GET /pets"], "GET", "/pets") == "GET /pets"


def test_greedy_variable_takes_one_or_more_segments() -> None:
    assert params(["GET /static/{proxy+}"], "GET", "/static/css/site.css") == {
        "proxy": "css/site.css"
    }
    assert params(["GET /static/{path+}"], "GET", "/static/a") == {"path": "a"}


def test_greedy_variable_takes_the_empty_segment_of_a_trailing_slash() -> None:
    # live HTTP API event: /handler/ -> ANY /handler/{proxy+}, pathParameters {"proxy": ""}
    assert params(["ANY /handler/{proxy+}"], "POST", "/handler/") == {"proxy": ""}


def test_greedy_variable_needs_a_child_segment() -> None:
    assert pick(["GET /static/{proxy+}"], "GET", "/static") is None
    assert pick(["ANY /{proxy+}"], "GET", "/") is None


def test_root_route_matches_only_the_root() -> None:
    routes = ["GET /", "GET /{proxy+}"]
    assert pick(routes, "GET", "/") == "GET /"
    assert pick(routes, "GET", "/a") == "GET /{proxy+}"


def test_variables_before_a_greedy_one_are_bound_too() -> None:
    assert params(["GET /u/{user}/files/{path+}"], "GET", "/u/ann/files/a/b.txt") == {
        "user": "ann",
        "path": "a/b.txt",
    }


def test_percent_encoded_path_is_decoded_once_before_matching() -> None:
    # /a%2Fb arrives as /a/b (fastify/aws-lambda-fastify#169): two segments, no {id} match
    assert pick(["GET /items/{id}"], "GET", "/items/a%2Fb") is None
    assert params(["GET /items/{id}"], "GET", "/items/Chester%20Mall") == {"id": "Chester Mall"}
    assert params(["GET /items/{id}"], "GET", "/items/a%252Fb") == {"id": "a%2Fb"}


def test_encoded_literal_segments_match_their_decoded_route() -> None:
    assert pick(["GET /café"], "GET", "/caf%C3%A9") == "GET /café"
    assert pick(["GET /ab"], "GET", "/%61b") == "GET /ab"


def test_plus_in_a_path_stays_a_plus() -> None:
    assert params(["GET /q/{term}"], "GET", "/q/a+b") == {"term": "a+b"}


def test_decode_path_replaces_bytes_that_are_not_utf8() -> None:
    assert decode_path("/x%FFy") == "/x\ufffdy"
    assert decode_path("/space%20value") == "/space value"


def test_a_request_target_that_is_not_a_path_goes_to_default() -> None:
    assert pick(["ANY /{proxy+}", DEFAULT_ROUTE], "OPTIONS", "*") == DEFAULT_ROUTE


# --- route key rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("get /items", "method must be one of"),
        ("TRACE /items", "method must be one of"),
        ("GET", "'METHOD /path'"),
        ("GET  /items", "'METHOD /path'"),
        ("GET /items extra", "'METHOD /path'"),
        ("GET items", "must start with '/'"),
        ("GET /items/", "must not end with '/'"),
        ("GET /a//b", "empty segment"),
        ("GET /{proxy+}/more", "greedy variable must be the last segment"),
        ("GET /{id}/x/{id}", "appears twice"),
        ("GET /{id}/{id+}", "appears twice"),
        ("GET /items/{id}.json", "whole variable"),
        ("GET /items/{}", "whole variable"),
        ("GET /a b", "'METHOD /path'"),
        ("GET /a?b", "whole variable"),
        ("$connect", "'METHOD /path'"),
    ],
)
def test_bad_route_keys_are_refused_with_the_key_and_reason(key: str, reason: str) -> None:
    with pytest.raises(ValueError, match="route") as caught:
        RouteTable({key: "fn"})
    assert repr(key) in str(caught.value)
    assert reason in str(caught.value)


def test_ambiguous_route_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="ambiguous") as caught:
        RouteTable({"GET /items/{id}": "a", "GET /items/{name}": "b"})
    assert "GET /items/{id}" in str(caught.value)
    assert "GET /items/{name}" in str(caught.value)
    with pytest.raises(ValueError, match="ambiguous"):
        RouteTable({"ANY /{a+}": "a", "ANY /{b+}": "b"})


def test_same_shape_with_different_methods_is_not_ambiguous() -> None:
    RouteTable({"GET /items/{id}": "a", "ANY /items/{name}": "b", "PUT /items/{x}": "c"})


def test_route_needs_a_function_name() -> None:
    with pytest.raises(ValueError, match="function name"):
        RouteTable({"GET /items": ""})


def test_all_documented_methods_and_root_are_valid() -> None:
    keys = [f"{m} /" for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")]
    assert len(RouteTable(dict.fromkeys([*keys, DEFAULT_ROUTE], "fn")).routes) == 9
