"""Tests for bridge.filtering's dialects: EventBridge event patterns next to Lambda filters.

Examples marked "doc" are the event patterns of the AWS pages cited in the module docstring
(EventBridge's comparison-operator and content-filtering pages, the AWS Compute blog post on
wildcards) or of Event Ruler's README, with events that do and do not match them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.filtering import (
    MAX_EVENT_PATTERN_LENGTH,
    MAX_FILTERS,
    MAX_PATTERN_LENGTH,
    UNREADABLE,
    FilterPatternError,
    FilterSet,
    NotJson,
    Pattern,
    compile_pattern,
)
from tests.test_filtering import MATCH_CASES

_ = pytest.param


def _eventbridge(pattern: dict[str, Any]) -> list[Pattern]:
    """The pattern compiled as an EventBridge pattern from its JSON text and its mapping."""
    return [
        compile_pattern(json.dumps(pattern), dialect="eventbridge"),
        compile_pattern(pattern, dialect="eventbridge"),
    ]


# An EC2 state-change event as the EventBridge pages show it, with fields for the examples.
EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-10-02T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {
        "instance-id": "i-1234567890abcdef0",
        "state": "initializing",
        "service": "EventBridge",
        "FileName": "image.PNG",
        "sourceIPAddress": "10.0.0.42",
    },
}

# (pattern, record, expected), compiled with dialect="eventbridge"
EVENTBRIDGE_CASES = [
    # --- wildcard ---------------------------------------------------------------------
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": "dir/cat.png"}, True, id="doc-wc"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": "dir/.png"}, True, id="wc-empty-run"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": "dir/a/b.png"}, True, id="wc-slash"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": "x/dir/a.png"}, False, id="wc-start"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": "dir/a.png.gz"}, False, id="wc-end"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": "dir/a.PNG"}, False, id="wc-case"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": "dir.png"}, False, id="wc-too-short"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {}, False, id="wc-missing"),
    _({"FileName": [{"wildcard": "dir/*.png"}]}, {"FileName": None}, False, id="wc-null"),
    _(
        {"FileName": [{"wildcard": "dir/*.png"}]},
        {"FileName": ["x.gif", "dir/y.png"]},
        True,
        id="wc-array-any",
    ),
    _(
        {"source": [{"wildcard": "Simple*Service"}]},
        {"source": "SimpleQueueService"},
        True,
        id="doc-ruler-wc",
    ),
    _(
        {"source": [{"wildcard": "Simple*Service"}]},
        {"source": "SimpleService"},
        True,
        id="ruler-wc-empty",
    ),
    _(
        {"source": [{"wildcard": "Simple*Service"}]},
        {"source": "SimpleServices"},
        False,
        id="ruler-wc-end",
    ),
    _({"f": [{"wildcard": "*.png"}]}, {"f": "photo.png"}, True, id="doc-blog-star-suffix"),
    _({"f": [{"wildcard": "*.png"}]}, {"f": ".png"}, True, id="blog-star-suffix-empty"),
    _({"f": [{"wildcard": "*.png"}]}, {"f": "photo.png.txt"}, False, id="blog-star-suffix-miss"),
    _({"f": [{"wildcard": "*Title*"}]}, {"f": "A Title Here"}, True, id="doc-blog-contains"),
    _({"f": [{"wildcard": "*Title*"}]}, {"f": "Title"}, True, id="blog-contains-whole"),
    _({"f": [{"wildcard": "*Title*"}]}, {"f": "A title here"}, False, id="blog-contains-case"),
    _({"f": [{"wildcard": "*"}]}, {"f": ""}, True, id="wc-star-empty-string"),
    _({"f": [{"wildcard": "*"}]}, {"f": "anything"}, True, id="wc-star-any-string"),
    _({"f": [{"wildcard": "*"}]}, {"f": 5}, False, id="wc-star-number"),
    _({"f": [{"wildcard": "*"}]}, {"f": True}, False, id="wc-star-boolean"),
    _({"f": [{"wildcard": "*"}]}, {"f": None}, False, id="wc-star-null"),
    _({"f": [{"wildcard": "*"}]}, {"f": {"g": "x"}}, False, id="wc-star-object"),
    _({"f": [{"wildcard": "5*"}]}, {"f": 55}, False, id="wc-number-value"),
    _({"f": [{"wildcard": ""}]}, {"f": ""}, True, id="wc-empty-operand"),
    _({"f": [{"wildcard": ""}]}, {"f": "x"}, False, id="wc-empty-operand-miss"),
    _({"f": [{"wildcard": "abc"}]}, {"f": "abc"}, True, id="wc-no-star-equals"),
    _({"f": [{"wildcard": "abc"}]}, {"f": "abcd"}, False, id="wc-no-star-not-prefix"),
    _({"f": [{"wildcard": "a*b*a"}]}, {"f": "aba"}, True, id="wc-three-runs"),
    _({"f": [{"wildcard": "a*b*a"}]}, {"f": "abba"}, True, id="wc-three-runs-longer"),
    _({"f": [{"wildcard": "a*b*a"}]}, {"f": "aa"}, False, id="wc-three-runs-short"),
    _({"f": [{"wildcard": "a*b*a"}]}, {"f": "abab"}, False, id="wc-three-runs-end"),
    _({"f": [{"wildcard": "ab*ba"}]}, {"f": "aba"}, False, id="wc-head-tail-overlap"),
    _({"f": [{"wildcard": "ab*ba"}]}, {"f": "abba"}, True, id="wc-head-tail-touch"),
    _({"f": [{"wildcard": "*a*a*"}]}, {"f": "a"}, False, id="wc-needs-two"),
    _({"f": [{"wildcard": "*a*a*"}]}, {"f": "xaya"}, True, id="wc-two-found"),
    _({"f": [{"wildcard": "a*b"}]}, {"f": "a\nb"}, True, id="wc-star-spans-newline"),
    _({"f": [{"wildcard": "a?c"}]}, {"f": "abc"}, False, id="wc-question-mark-literal"),
    _({"f": [{"wildcard": "a?c"}]}, {"f": "a?c"}, True, id="wc-question-mark-itself"),
    _({"f": [{"wildcard": "[ab]*"}]}, {"f": "a1"}, False, id="wc-bracket-literal"),
    _({"f": [{"wildcard": "a\\*b"}]}, {"f": "a*b"}, True, id="wc-escaped-star"),
    _({"f": [{"wildcard": "a\\*b"}]}, {"f": "axb"}, False, id="wc-escaped-star-not-wild"),
    _({"f": [{"wildcard": "a\\\\b"}]}, {"f": "a\\b"}, True, id="wc-escaped-backslash"),
    _({"f": [{"wildcard": "a\\\\*"}]}, {"f": "a\\xyz"}, True, id="wc-backslash-then-star"),
    _({"f": [{"wildcard": "a\\\\*"}]}, {"f": "axyz"}, False, id="wc-backslash-required"),
    _({"f": [{"wildcard": "\\**"}]}, {"f": "*abc"}, True, id="wc-literal-star-then-star"),
    _({"f": [{"wildcard": "\\**"}]}, {"f": "abc"}, False, id="wc-literal-star-required"),
    _({"f": [{"wildcard": "*\\*"}]}, {"f": "abc*"}, True, id="wc-star-then-literal-star"),
    _(
        {"EventBusArn": [{"wildcard": "*:*:*:*:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/myEventBus"},
        True,
        id="wc-six-stars-arn",
    ),
    _(
        {"EventBusArn": [{"wildcard": "*:*:*:*:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:us-east-1:123456789012:rule/r"},
        False,
        id="wc-six-stars-arn-miss",
    ),
    _(
        {"f": [{"wildcard": "dir/*.png"}, {"prefix": "img/"}, "README"]},
        {"f": "img/x.gif"},
        True,
        id="wc-ored-with-others",
    ),
    # --- prefix / suffix ignoring case --------------------------------------------------
    _({"time": [{"prefix": "2017-10-02"}]}, EC2_EVENT, True, id="doc-prefix"),
    _(
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        EC2_EVENT,
        True,
        id="doc-prefix-ignore-case",
    ),
    _(
        {"s": [{"prefix": {"equals-ignore-case": "EventB"}}]},
        {"s": "EVENTBRIDGE"},
        True,
        id="pic-upper",
    ),
    _(
        {"s": [{"prefix": {"equals-ignore-case": "EventB"}}]},
        {"s": "eventbus"},
        True,
        id="pic-lower",
    ),
    _({"s": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"s": "Even"}, False, id="pic-short"),
    _(
        {"s": [{"prefix": {"equals-ignore-case": "EventB"}}]},
        {"s": "MyEventB"},
        False,
        id="pic-inner",
    ),
    _(
        {"s": [{"prefix": {"equals-ignore-case": "ÉCOLE"}}]},
        {"s": "école-1"},
        True,
        id="pic-unicode",
    ),
    _({"s": [{"prefix": {"equals-ignore-case": "1"}}]}, {"s": 123}, False, id="pic-number"),
    _({"s": [{"prefix": {"equals-ignore-case": "x"}}]}, {}, False, id="pic-missing"),
    _({"s": [{"prefix": {"equals-ignore-case": ""}}]}, {"s": ""}, True, id="pic-empty-any-string"),
    _({"s": [{"prefix": {"equals-ignore-case": ""}}]}, {"s": None}, False, id="pic-empty-not-null"),
    _(
        {"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}},
        EC2_EVENT,
        True,
        id="doc-suffix-ignore-case",
    ),
    _({"f": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"f": "a.Png"}, True, id="sic-mixed"),
    _(
        {"f": [{"suffix": {"equals-ignore-case": ".png"}}]},
        {"f": "a.png.txt"},
        False,
        id="sic-miss",
    ),
    _(
        {"f": [{"suffix": {"equals-ignore-case": ".png"}}]},
        {"f": ["a.gif", "B.PNG"]},
        True,
        id="sic-arr",
    ),
    _({"f": [{"suffix": ".png"}]}, {"f": "a.PNG"}, False, id="plain-suffix-still-case-sensitive"),
    # --- anything-but with a nested operator -------------------------------------------
    _(
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        EC2_EVENT,
        False,
        id="doc-ab-prefix-excluded",
    ),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": "running"},
        True,
        id="ab-prefix",
    ),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": "Init"},
        True,
        id="ab-prefix-case",
    ),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": "init"},
        False,
        id="ab-prefix-eq",
    ),
    _({"state": [{"anything-but": {"prefix": "init"}}]}, {"state": ""}, True, id="ab-prefix-empty"),
    _({"state": [{"anything-but": {"prefix": "init"}}]}, {}, False, id="ab-prefix-missing-key"),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": None},
        True,
        id="ab-prefix-null",
    ),
    _({"state": [{"anything-but": {"prefix": "1"}}]}, {"state": 123}, True, id="ab-prefix-number"),
    _(
        {"state": [{"anything-but": {"prefix": "t"}}]},
        {"state": True},
        True,
        id="ab-prefix-boolean",
    ),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": {"x": "y"}},
        False,
        id="ab-prefix-obj",
    ),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": []},
        False,
        id="ab-prefix-empty-arr",
    ),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": ["init-1", "running"]},
        True,
        id="ab-prefix-array-one-other",
    ),
    _(
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": ["init-1", "init-2"]},
        False,
        id="ab-prefix-array-all-excluded",
    ),
    _(
        {"detail": {"state": [{"anything-but": {"prefix": ["init", "error"]}}]}},
        {"detail": {"state": "error-42"}},
        False,
        id="doc-ruler-ab-prefix-list",
    ),
    _(
        {"detail": {"state": [{"anything-but": {"prefix": ["init", "error"]}}]}},
        {"detail": {"state": "running"}},
        True,
        id="ruler-ab-prefix-list-other",
    ),
    _(
        {
            "$or": [
                {"state": [{"anything-but": {"prefix": "init"}}]},
                {"state": [{"exists": False}]},
            ]
        },
        {},
        True,
        id="ab-prefix-or-absent-idiom",
    ),
    _(
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.png"},
        False,
        id="doc-ab-sfx",
    ),
    _(
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.txt"},
        True,
        id="ab-sfx-other",
    ),
    _(
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.PNG"},
        True,
        id="ab-sfx-case",
    ),
    _({"FileName": [{"anything-but": {"suffix": ".png"}}]}, {}, False, id="ab-sfx-missing"),
    _(
        {"detail": {"instance-id": [{"anything-but": {"suffix": ["1234", "6789"]}}]}},
        {"detail": {"instance-id": "i-6789"}},
        False,
        id="doc-ruler-ab-suffix-list",
    ),
    _(
        {"detail": {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}},
        EC2_EVENT,
        False,
        id="doc-ab-ignore-case",
    ),
    _(
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "INITIALIZING"},
        False,
        id="ab-ic-upper",
    ),
    _(
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "running"},
        True,
        id="ab-ic-other",
    ),
    _(
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "initializing!"},
        True,
        id="ab-ic-whole-value",
    ),
    _({"state": [{"anything-but": {"equals-ignore-case": "x"}}]}, {}, False, id="ab-ic-missing"),
    _(
        {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]},
        {"state": "overloaded"},
        False,
        id="doc-ruler-ab-ic-list",
    ),
    _(
        {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]},
        {"state": "STOPPED"},
        False,
        id="ruler-ab-ic-list-upper",
    ),
    _(
        {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]},
        {"state": "running"},
        True,
        id="ruler-ab-ic-list-other",
    ),
    _(
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/lib/libc.so"},
        False,
        id="doc-ab-wildcard",
    ),
    _(
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/bin/env"},
        True,
        id="ab-wc-other",
    ),
    _(
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "lib/x"},
        True,
        id="ab-wc-anchored",
    ),
    _({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {}, False, id="ab-wc-missing"),
    _(
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": 5},
        True,
        id="ab-wc-num",
    ),
    _(
        {"state": [{"anything-but": {"wildcard": ["*/bin/*.jar", "*/bin/*.class"]}}]},
        {"state": "/opt/bin/app.class"},
        False,
        id="doc-ruler-ab-wc-list",
    ),
    _(
        {"state": [{"anything-but": {"wildcard": ["*/bin/*.jar", "*/bin/*.class"]}}]},
        {"state": "/opt/lib/app.jar"},
        True,
        id="ruler-ab-wc-list-other",
    ),
    _({"f": [{"anything-but": {"wildcard": "*"}}]}, {"f": ""}, False, id="ab-wc-star-every-string"),
    _({"f": [{"anything-but": {"wildcard": "*"}}]}, {"f": 0}, True, id="ab-wc-star-number"),
    _(
        {"f": [{"anything-but": {"prefix": "a"}}, {"anything-but": {"prefix": "b"}}]},
        {"f": "a1"},
        True,
        id="two-anything-buts-are-ored",
    ),
    # --- cidr ---------------------------------------------------------------------------
    _({"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}}, EC2_EVENT, True, id="doc-cidr"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.0"}, True, id="cidr-first"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.255"}, True, id="cidr-last"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.0"}, False, id="cidr-next-block"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "9.255.255.255"}, False, id="cidr-below"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.256"}, False, id="cidr-bad-octet"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0"}, False, id="cidr-three-octets"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "host-10.0.0.1"}, False, id="cidr-not-ip"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": " 10.0.0.1"}, False, id="cidr-space"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.1/32"}, False, id="cidr-value-is-block"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "010.0.0.1"}, False, id="cidr-leading-zero"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": 167772161}, False, id="cidr-number"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": None}, False, id="cidr-null"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {}, False, id="cidr-missing"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": ""}, False, id="cidr-empty-string"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "2001:db8::1"}, False, id="cidr-v6-vs-v4"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "::ffff:a00:1"}, True, id="cidr-v4-mapped"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "::ffff:10.0.0.1"}, False, id="cidr-dotted-tail"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": ["1.1.1.1", "10.0.0.7"]}, True, id="cidr-array"),
    _({"ip": [{"cidr": "10.0.0.5/24"}]}, {"ip": "10.0.0.200"}, True, id="cidr-host-bits-ignored"),
    _({"ip": [{"cidr": "0.0.0.0/0"}]}, {"ip": "255.255.255.255"}, True, id="cidr-v4-all"),
    _({"ip": [{"cidr": "0.0.0.0/0"}]}, {"ip": "::1"}, False, id="cidr-v4-all-not-v6"),
    _({"ip": [{"cidr": "192.168.1.128/31"}]}, {"ip": "192.168.1.129"}, True, id="cidr-31"),
    _({"ip": [{"cidr": "192.168.1.128/31"}]}, {"ip": "192.168.1.130"}, False, id="cidr-31-out"),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1"}, True, id="cidr-v6"),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:DB8:0:0:0:0:0:1"}, True, id="cidr-v6-full"),
    _(
        {"ip": [{"cidr": "2001:db8::/32"}]},
        {"ip": "2001:0db8:ffff:ffff:ffff:ffff:ffff:ffff"},
        True,
        id="cidr-v6-last",
    ),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db9::"}, False, id="cidr-v6-next"),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "10.0.0.1"}, False, id="cidr-v4-vs-v6"),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1%eth0"}, False, id="cidr-v6-zone"),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::g"}, False, id="cidr-v6-not-hex"),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8:::1"}, False, id="cidr-v6-malformed"),
    _({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": ":" * 50 + "z"}, False, id="cidr-long-colons"),
    _({"ip": [{"cidr": "fe80::/10"}]}, {"ip": "febf::1"}, True, id="cidr-v6-partial-group"),
    _({"ip": [{"cidr": "fe80::/10"}]}, {"ip": "fec0::1"}, False, id="cidr-v6-partial-group-out"),
    _(
        {"ip": [{"cidr": "10.0.0.0/8"}, {"cidr": "192.168.0.0/16"}, "localhost"]},
        {"ip": "192.168.3.4"},
        True,
        id="cidr-ored",
    ),
    _(
        {"ip": [{"cidr": "10.0.0.0/8"}, {"cidr": "192.168.0.0/16"}, "localhost"]},
        {"ip": "localhost"},
        True,
        id="cidr-ored-with-string",
    ),
    _(
        {"ip": [{"cidr": "10.0.0.0/8"}, {"cidr": "192.168.0.0/16"}, "localhost"]},
        {"ip": "172.16.0.1"},
        False,
        id="cidr-ored-none",
    ),
    # --- the complex example of the pages, and $or with the new operators ---------------
    _(
        {
            "time": [{"prefix": "2017-10-02"}],
            "detail": {
                "state": [{"anything-but": "running"}],
                "sourceIPAddress": [{"cidr": "10.0.0.0/8"}],
                "FileName": [{"wildcard": "*.png"}, {"suffix": {"equals-ignore-case": ".png"}}],
            },
        },
        EC2_EVENT,
        True,
        id="complex-all",
    ),
    _(
        {"$or": [{"a": [{"wildcard": "x*y"}]}, {"b": [{"cidr": "10.0.0.0/8"}]}]},
        {"a": "nope", "b": "10.1.2.3"},
        True,
        id="or-second-branch",
    ),
    _(
        {"$or": [{"a": [{"wildcard": "x*y"}]}, {"b": [{"cidr": "10.0.0.0/8"}]}]},
        {"a": "nope", "b": "11.1.2.3"},
        False,
        id="or-no-branch",
    ),
]


@pytest.mark.parametrize(("pattern", "record", "expected"), EVENTBRIDGE_CASES)
def test_eventbridge_pattern_matches(
    pattern: dict[str, Any], record: dict[str, Any], expected: bool
) -> None:
    for compiled in _eventbridge(pattern):
        assert compiled.matches(record) is expected
    assert FilterSet([pattern], dialect="eventbridge").matches(record) is expected


@pytest.mark.parametrize(("pattern", "record", "expected"), MATCH_CASES)
def test_operators_of_both_dialects_mean_the_same(
    pattern: dict[str, Any], record: dict[str, Any], expected: bool
) -> None:
    """Every Lambda case gives the same answer when compiled as an EventBridge pattern."""
    for compiled in _eventbridge(pattern):
        assert compiled.matches(record) is expected


def test_operands_that_are_not_json_or_not_text() -> None:
    assert compile_pattern({"body": [{"wildcard": "dir/*"}]}, dialect="eventbridge").matches(
        {"body": NotJson("dir/plain text")}
    )
    for pattern in (
        {"v": [{"anything-but": {"wildcard": "x*"}}]},
        {"v": [{"anything-but": {"prefix": "x"}}]},
        {"v": [{"wildcard": "*"}]},
        {"v": [{"cidr": "0.0.0.0/0"}]},
    ):
        assert not compile_pattern(pattern, dialect="eventbridge").matches({"v": UNREADABLE})


def test_wildcard_matching_does_not_backtrack() -> None:
    """Many wildcards against a long value that just misses: linear, not exponential."""
    pattern = compile_pattern({"k": [{"wildcard": "*a*a*a*a*a*a*a*a*b"}]}, dialect="eventbridge")
    assert not pattern.matches({"k": "a" * 20_000})
    assert pattern.matches({"k": "a" * 20_000 + "b"})


# --- the dialect is checked at compile time --------------------------------------------

LAMBDA_REFUSES = [
    _({"FileName": [{"wildcard": "dir/*.png"}]}, "FileName", 'operator "wildcard"', id="wildcard"),
    _({"ip": [{"cidr": "10.0.0.0/24"}]}, "ip", 'operator "cidr"', id="cidr"),
    _(
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        "detail.state",
        '{"anything-but": {"prefix": ...}}',
        id="anything-but-prefix",
    ),
    _(
        {"f": [{"anything-but": {"suffix": ".png"}}]},
        "f",
        '{"anything-but": {"suffix": ...}}',
        id="anything-but-suffix",
    ),
    _(
        {"f": [{"anything-but": {"equals-ignore-case": ["a", "b"]}}]},
        "f",
        '{"anything-but": {"equals-ignore-case": ...}}',
        id="anything-but-ignore-case",
    ),
    _(
        {"f": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        "f",
        '{"anything-but": {"wildcard": ...}}',
        id="anything-but-wildcard",
    ),
    _(
        {"s": [{"prefix": {"equals-ignore-case": "EventB"}}]},
        "s",
        '{"prefix": {"equals-ignore-case": ...}}',
        id="prefix-ignore-case",
    ),
    _(
        {"s": [{"suffix": {"equals-ignore-case": ".png"}}]},
        "s",
        '{"suffix": {"equals-ignore-case": ...}}',
        id="suffix-ignore-case",
    ),
    _(
        {"$or": [{"a": ["x"]}, {"b": {"c": ["y", {"wildcard": "*"}]}}]},
        "$or[1].b.c",
        'operator "wildcard"',
        id="inside-or",
    ),
]


@pytest.mark.parametrize(("pattern", "path", "operator"), LAMBDA_REFUSES)
def test_lambda_refuses_eventbridge_operators(pattern: Any, path: str, operator: str) -> None:
    for dialect_args in ({}, {"dialect": "lambda"}):
        with pytest.raises(FilterPatternError) as info:
            compile_pattern(pattern, **dialect_args)  # type: ignore[arg-type]
        message = str(info.value)
        assert message.startswith(f'key "{path}": ')
        assert operator in message
        assert "is an EventBridge operator; Lambda filters do not accept it" in message
        assert '(dialect "lambda"' in message
        assert 'dialect="eventbridge"' in message
    assert compile_pattern(pattern, dialect="eventbridge").dialect == "eventbridge"


def test_filter_set_names_the_refused_pattern() -> None:
    patterns = [{"a": ["x"]}, {"f": [{"wildcard": "*.png"}]}]
    with pytest.raises(FilterPatternError, match=r'^pattern 1: key "f": operator "wildcard"'):
        FilterSet(patterns)
    assert FilterSet(patterns, dialect="eventbridge").matches({"f": "a.png"})


def test_lambda_refuses_anything_else_as_before() -> None:
    """Operators no dialect knows keep their own messages, without an EventBridge hint."""
    with pytest.raises(FilterPatternError) as info:
        compile_pattern({"a": [{"anything-but": {"numeric": [">", 1]}}]})
    assert "anything-but needs a string, a number, or a list" in str(info.value)
    assert "EventBridge" not in str(info.value)
    with pytest.raises(FilterPatternError) as info:
        compile_pattern({"a": [{"prefix": {"wildcard": "x"}}]})
    assert str(info.value) == 'key "a": prefix needs a string, got object {"wildcard": "x"}'
    with pytest.raises(FilterPatternError, match="expected one of: anything-but, equals-ignore"):
        compile_pattern({"a": [{"contains": "x"}]})


# --- bad operands in the EventBridge dialect -------------------------------------------

BAD_EVENTBRIDGE_PATTERNS = [
    # wildcard
    _({"f": [{"wildcard": 5}]}, 'key "f": wildcard needs a string, got number', id="wc-number"),
    _({"f": [{"wildcard": ["a*"]}]}, "wildcard needs a string, got array", id="wc-list"),
    _({"f": [{"wildcard": None}]}, "wildcard needs a string, got null", id="wc-null"),
    _(
        {"f": [{"wildcard": "a**b"}]},
        'key "f": wildcard "a**b": consecutive wildcard characters (**) at index 1 are not allowed',
        id="wc-consecutive",
    ),
    _({"f": [{"wildcard": "**"}]}, "consecutive wildcard characters (**) at index 0", id="wc-two"),
    _({"f": [{"wildcard": "a*b**"}]}, "(**) at index 3", id="wc-consecutive-later"),
    _(
        {"f": [{"wildcard": "\\\\**"}]},
        "(**) at index 2",
        id="wc-escaped-backslash-then-two-stars",
    ),
    _(
        {"f": [{"wildcard": "a\\b"}]},
        'key "f": wildcard "a\\\\b": invalid escape at index 1; a backslash must be followed by '
        "* (a literal star) or \\ (a literal backslash)",
        id="wc-bad-escape",
    ),
    _({"f": [{"wildcard": "a\\."}]}, "invalid escape at index 1", id="wc-escaped-dot"),
    _({"f": [{"wildcard": "abc\\"}]}, "invalid escape at index 3", id="wc-trailing-backslash"),
    _({"f": [{"wildcard": "\\"}]}, "invalid escape at index 0", id="wc-lone-backslash"),
    _(
        {"detail": {"files": [{"wildcard": "a**"}]}},
        'key "detail.files": wildcard',
        id="wc-nested-path",
    ),
    # cidr
    _({"ip": [{"cidr": 10}]}, 'key "ip": cidr needs a string, got number', id="cidr-number"),
    _({"ip": [{"cidr": ["10.0.0.0/8"]}]}, "cidr needs a string, got array", id="cidr-list"),
    _(
        {"ip": [{"cidr": "10.0.0.0"}]},
        'key "ip": cidr "10.0.0.0": a CIDR block is an address, one "/" and the mask bits',
        id="cidr-no-slash",
    ),
    _({"ip": [{"cidr": "10.0.0.0/8/8"}]}, 'one "/"', id="cidr-two-slashes"),
    _({"ip": [{"cidr": ""}]}, 'one "/"', id="cidr-empty"),
    _(
        {"ip": [{"cidr": "10.0.0.0/"}]},
        'the mask bits must be a non-negative integer, got ""',
        id="cidr-no-bits",
    ),
    _({"ip": [{"cidr": "10.0.0.0/abc"}]}, "non-negative integer", id="cidr-bits-text"),
    _({"ip": [{"cidr": "10.0.0.0/-1"}]}, 'non-negative integer, got "-1"', id="cidr-negative"),
    _({"ip": [{"cidr": "10.0.0.0/ 8"}]}, "non-negative integer", id="cidr-bits-space"),
    _({"ip": [{"cidr": "10.0.0.0/8.0"}]}, "non-negative integer", id="cidr-bits-float"),
    _({"ip": [{"cidr": "10.0.0.0/٨"}]}, "non-negative integer", id="cidr-bits-arabic-digit"),
    _(
        {"ip": [{"cidr": "10.0.0.0/33"}]},
        'cidr "10.0.0.0/33": IPv4 mask bits must be 0 to 31',
        id="cidr-v4-too-wide",
    ),
    _(
        {"ip": [{"cidr": "10.0.0.1/32"}]},
        "IPv4 mask bits must be 0 to 31; EventBridge refuses /32: match one address by its "
        'string, e.g. ["10.0.0.1"]',
        id="cidr-v4-32",
    ),
    _({"ip": [{"cidr": "2001:db8::/129"}]}, "IPv6 mask bits must be 0 to 127", id="cidr-v6-wide"),
    _({"ip": [{"cidr": "2001:db8::1/128"}]}, "EventBridge refuses /128", id="cidr-v6-128"),
    _(
        {"ip": [{"cidr": "10.0.0.256/24"}]},
        '"10.0.0.256" is not an IPv4 or IPv6 address',
        id="cidr-bad-octet",
    ),
    _({"ip": [{"cidr": "10.0.0/24"}]}, "is not an IPv4 or IPv6 address", id="cidr-three-octets"),
    _({"ip": [{"cidr": "/24"}]}, '"" is not an IPv4 or IPv6 address', id="cidr-no-address"),
    _({"ip": [{"cidr": "example.com/24"}]}, "not an IPv4 or IPv6 address", id="cidr-hostname"),
    _({"ip": [{"cidr": "010.0.0.0/8"}]}, "not an IPv4 or IPv6 address", id="cidr-leading-zero"),
    _({"ip": [{"cidr": "fe80::1%eth0/64"}]}, "not an IPv4 or IPv6 address", id="cidr-zone-id"),
    _({"ip": [{"cidr": "::ffff:10.0.0.0/104"}]}, "not an IPv4 or IPv6 address", id="cidr-dotted"),
    _({"ip": [{"cidr": "2001:db8:::/48"}]}, "not an IPv4 or IPv6 address", id="cidr-v6-bad"),
    _(
        {"a": {"b": [{"cidr": "10.0.0.0/99"}]}},
        'key "a.b": cidr "10.0.0.0/99"',
        id="cidr-nested-path",
    ),
    # prefix / suffix objects
    _(
        {"s": [{"prefix": {"equals-ignore-case": 5}}]},
        'key "s": prefix equals-ignore-case needs a string, got number',
        id="pic-number",
    ),
    _(
        {"s": [{"suffix": {"equals-ignore-case": [".png"]}}]},
        "suffix equals-ignore-case needs a string, got array",
        id="sic-list",
    ),
    _(
        {"s": [{"prefix": {"wildcard": "a*"}}]},
        'key "s": prefix needs a string or {"equals-ignore-case": ...}, got object '
        '{"wildcard": "a*"}',
        id="prefix-other-object",
    ),
    _({"s": [{"suffix": {}}]}, "suffix needs a string or", id="suffix-empty-object"),
    _(
        {"s": [{"prefix": {"equals-ignore-case": "a", "x": 1}}]},
        "prefix needs a string or",
        id="prefix-object-two-keys",
    ),
    _({"s": [{"prefix": 5}]}, "prefix needs a string, got number", id="prefix-number"),
    # anything-but with a nested operator
    _(
        {"a": [{"anything-but": {}}]},
        'key "a": an anything-but object must have exactly one key (one of: equals-ignore-case, '
        "prefix, suffix, wildcard), got none",
        id="ab-empty-object",
    ),
    _(
        {"a": [{"anything-but": {"prefix": "x", "suffix": "y"}}]},
        'exactly one key (one of: equals-ignore-case, prefix, suffix, wildcard), got "prefix", '
        '"suffix"',
        id="ab-two-keys",
    ),
    _(
        {"a": [{"anything-but": {"numeric": [">", 1]}}]},
        'anything-but cannot hold operator "numeric" (expected one of: equals-ignore-case, '
        "prefix, suffix, wildcard)",
        id="ab-numeric",
    ),
    _({"a": [{"anything-but": {"exists": True}}]}, 'cannot hold operator "exists"', id="ab-exists"),
    _({"a": [{"anything-but": {"cidr": "10.0.0.0/8"}}]}, 'hold operator "cidr"', id="ab-cidr"),
    _(
        {"a": [{"anything-but": {"anything-but": "x"}}]},
        'cannot hold operator "anything-but"',
        id="ab-in-ab",
    ),
    _(
        {"a": [{"anything-but": {"prefix": ""}}]},
        'key "a": anything-but prefix must not be empty: it would exclude every string',
        id="ab-prefix-empty",
    ),
    _(
        {"a": [{"anything-but": {"suffix": ["x", ""]}}]},
        "anything-but suffix must not be empty",
        id="ab-suffix-empty-in-list",
    ),
    _(
        {"a": [{"anything-but": {"prefix": []}}]},
        "anything-but prefix list must not be empty",
        id="ab-prefix-empty-list",
    ),
    _(
        {"a": [{"anything-but": {"equals-ignore-case": []}}]},
        "anything-but equals-ignore-case list must not be empty",
        id="ab-ic-empty-list",
    ),
    _(
        {"a": [{"anything-but": {"wildcard": []}}]},
        "anything-but wildcard list must not be empty",
        id="ab-wc-empty-list",
    ),
    _(
        {"a": [{"anything-but": {"prefix": ["x", 1]}}]},
        "anything-but prefix list may hold only strings, got number",
        id="ab-prefix-number-in-list",
    ),
    _(
        {"a": [{"anything-but": {"equals-ignore-case": 5}}]},
        "anything-but equals-ignore-case needs a string or a list of strings, got number",
        id="ab-ic-number",
    ),
    _(
        {"a": [{"anything-but": {"wildcard": None}}]},
        "anything-but wildcard needs a string or a list of strings, got null",
        id="ab-wc-null",
    ),
    _(
        {"a": [{"anything-but": {"suffix": {"equals-ignore-case": "x"}}}]},
        "anything-but suffix needs a string or a list of strings, got object",
        id="ab-suffix-nested-object",
    ),
    _(
        {"a": [{"anything-but": {"wildcard": ["ok*", "bad**"]}}]},
        'key "a": anything-but wildcard "bad**": consecutive wildcard characters (**) at index 3',
        id="ab-wc-list-bad",
    ),
    _(
        {"a": [{"anything-but": {"wildcard": "a\\b"}}]},
        'anything-but wildcard "a\\\\b": invalid escape at index 1',
        id="ab-wc-bad-escape",
    ),
    _(
        {"a": [{"anything-but": True}]},
        "anything-but needs a string, a number, a list of strings or numbers, or an operator "
        "object, got boolean",
        id="ab-boolean",
    ),
    _({"a": [{"anything-but": []}]}, "anything-but list must not be empty", id="ab-empty-list"),
    _(
        {"$or": [{"a": ["x"]}, {"b": [{"anything-but": {"prefix": ""}}]}]},
        'key "$or[1].b": anything-but prefix must not be empty',
        id="ab-in-or-path",
    ),
    # structure, the same in both dialects
    _({"a": {"b": []}}, 'key "a.b": a match array must not be empty', id="empty-match-array"),
    _({"$or": []}, 'key "$or": $or needs an array of at least 2 pattern objects', id="empty-or"),
    # other operators, and operator names as fields
    _(
        {"a": [{"contains": "x"}]},
        'key "a": unknown operator "contains" (expected one of: anything-but, cidr, '
        "equals-ignore-case, exists, numeric, prefix, suffix, wildcard)",
        id="unknown-operator",
    ),
    _({"a": [{"exact": "x"}]}, 'unknown operator "exact"', id="exact-undocumented"),
    _(
        {"a": [{"wildcard": "x*", "prefix": "x"}]},
        'exactly one key, got "wildcard", "prefix"',
        id="two-operators",
    ),
    _(
        {"$or": [{"a": ["x"]}, {"cidr": ["10.0.0.0/8"]}]},
        'key "$or[1].cidr": "cidr" is an operator and cannot be a field name inside $or',
        id="or-cidr-as-field",
    ),
    _(
        {"$or": [{"a": ["x"]}, {"wildcard": ["*"]}]},
        '"wildcard" is an operator and cannot be a field name',
        id="or-wildcard-as-field",
    ),
]


@pytest.mark.parametrize(("pattern", "fragment"), BAD_EVENTBRIDGE_PATTERNS)
def test_bad_eventbridge_patterns(pattern: Any, fragment: str) -> None:
    for text_or_mapping in (pattern, json.dumps(pattern)):
        with pytest.raises(FilterPatternError) as info:
            compile_pattern(text_or_mapping, dialect="eventbridge")
        assert fragment in str(info.value)


def test_operator_names_are_reserved_in_or_in_both_dialects() -> None:
    """Event Ruler reserves its operator names inside $or whatever the service accepts."""
    with pytest.raises(FilterPatternError, match='"cidr" is an operator'):
        compile_pattern({"$or": [{"a": ["x"]}, {"cidr": ["y"]}]})


# --- limits -----------------------------------------------------------------------------


def _of_length(n: int) -> str:
    text = '{"a":["' + "x" * (n - 10) + '"]}'
    assert len(text) == n
    return text


def test_eventbridge_pattern_length_limit() -> None:
    assert MAX_EVENT_PATTERN_LENGTH == 2048
    compile_pattern(_of_length(MAX_EVENT_PATTERN_LENGTH), dialect="eventbridge")
    with pytest.raises(
        FilterPatternError, match="2049 characters; EventBridge allows at most 2048"
    ):
        compile_pattern(_of_length(MAX_EVENT_PATTERN_LENGTH + 1), dialect="eventbridge")
    compile_pattern({"a": ["x" * (MAX_EVENT_PATTERN_LENGTH - 10)]}, dialect="eventbridge")
    with pytest.raises(
        FilterPatternError, match="2049 characters as compact JSON; EventBridge allows at most"
    ):
        compile_pattern({"a": ["x" * (MAX_EVENT_PATTERN_LENGTH - 9)]}, dialect="eventbridge")
    # the same text is within Lambda's 4096
    assert compile_pattern(_of_length(MAX_EVENT_PATTERN_LENGTH + 1)).dialect == "lambda"
    with pytest.raises(FilterPatternError, match="pattern 0: pattern is 2049 characters"):
        FilterSet([_of_length(MAX_EVENT_PATTERN_LENGTH + 1)], dialect="eventbridge")


def test_lambda_limits_are_unchanged() -> None:
    compile_pattern(_of_length(MAX_PATTERN_LENGTH))
    with pytest.raises(FilterPatternError, match="4097 characters; Lambda allows at most 4096"):
        compile_pattern(_of_length(MAX_PATTERN_LENGTH + 1))
    with pytest.raises(FilterPatternError, match="at most 10 filters"):
        FilterSet([{"a": [i]} for i in range(MAX_FILTERS + 1)], dialect="lambda")


def test_eventbridge_filter_set_has_no_count_limit() -> None:
    patterns = [{"a": [i]} for i in range(MAX_FILTERS + 5)]
    filters = FilterSet(patterns, dialect="eventbridge")
    assert len(filters.patterns) == MAX_FILTERS + 5
    assert filters.matches({"a": MAX_FILTERS + 4})
    assert not filters.matches({"a": -1})


# --- the API ---------------------------------------------------------------------------


def test_the_default_dialect_is_lambda() -> None:
    pattern = compile_pattern({"a": ["x"]})
    assert pattern.dialect == "lambda"
    assert repr(pattern) == 'Pattern(\'{"a":["x"]}\')'
    filters = FilterSet([{"a": ["x"]}])
    assert filters.dialect == "lambda"
    assert repr(filters) == 'FilterSet([\'{"a":["x"]}\'])'
    assert Pattern({"a": ["x"]}).dialect == "lambda"


def test_the_eventbridge_dialect_is_kept_and_shown() -> None:
    pattern = compile_pattern('{"f": [{"wildcard": "*.png"}]}', dialect="eventbridge")
    assert pattern.dialect == "eventbridge"
    assert pattern.source == '{"f":[{"wildcard":"*.png"}]}'
    assert repr(pattern) == 'Pattern(\'{"f":[{"wildcard":"*.png"}]}\', dialect=\'eventbridge\')'
    filters = FilterSet([pattern.source], dialect="eventbridge")
    assert filters.dialect == "eventbridge"
    assert [p.dialect for p in filters.patterns] == ["eventbridge"]
    assert repr(filters).endswith(", dialect='eventbridge')")
    assert Pattern({"ip": [{"cidr": "10.0.0.0/8"}]}, dialect="eventbridge").matches(
        {"ip": "10.9.9.9"}
    )
    with pytest.raises(AttributeError, match="immutable"):
        pattern.__setattr__("_dialect", "lambda")


@pytest.mark.parametrize("dialect", ["sns", "Lambda", "EventBridge", "", None])
def test_unknown_dialects_are_refused(dialect: Any) -> None:
    with pytest.raises(FilterPatternError, match=r'unknown dialect .* \(expected "lambda" or '):
        compile_pattern({"a": ["x"]}, dialect=dialect)
    with pytest.raises(FilterPatternError, match="unknown dialect"):
        FilterSet([], dialect=dialect)
    with pytest.raises(FilterPatternError, match="unknown dialect"):
        Pattern({"a": ["x"]}, dialect=dialect)


def test_the_dialect_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        compile_pattern({"a": ["x"]}, "eventbridge")  # type: ignore[misc]
    with pytest.raises(TypeError):
        FilterSet([], "eventbridge")  # type: ignore[misc]
