"""AWS event filtering as a pure, compiled matcher: Lambda ``FilterCriteria`` and EventBridge
event patterns.

Contract
--------
``compile_pattern(pattern, *, dialect="lambda")`` turns one pattern -- the JSON string AWS
stores in ``FilterCriteria.Filters[].Pattern`` (dialect ``"lambda"``, the default) or in an
EventBridge rule's ``EventPattern`` (dialect ``"eventbridge"``), or the same pattern already
parsed into a mapping -- into an immutable :class:`Pattern`. All validation happens there: a
pattern that AWS would refuse raises :class:`FilterPatternError` whose message names the
problem and the key path (``key "body.size": numeric needs ...``); an operator the dialect
does not accept names the operator, the key path and the dialect (``key "file": operator
"wildcard" is not supported by Lambda event filtering: wildcard is an EventBridge operator;
Lambda filters do not accept it (dialect "lambda"; ...)``). :class:`FilterSet` (same
``dialect`` keyword) is a whole ``FilterCriteria``: a record passes when *any* pattern
matches, and an empty set passes every record. Its errors are prefixed with the 0-based
index of the bad pattern (``pattern 2: key "body.size": ...``). Evaluation never raises and
never re-parses: each pattern is compiled once into closures.

The record given to ``matches`` is the event record as the connector prepared it for
filtering, with JSON-compatible values (dict, list, str, int, float, bool, None); e.g. an
SQS ``body`` that was JSON is already decoded. A payload field that is not JSON is given
as :class:`NotJson` (its text: string patterns match it, a pattern on its contents never
does, not even ``exists: false``: Lambda drops a record whose data is not JSON when the
pattern filters inside it) or as :data:`UNREADABLE` (not even text, such as a Kafka value
that is not UTF-8: no pattern on it matches). Which field a source filters on (SQS
``body``, Kafka ``value``, DynamoDB ``dynamodb``) is the connector's business.

Limits enforced (for a mapping, its compact JSON form is measured):

* ``"lambda"``: a pattern is at most 4096 characters (``API_Filter``: "Maximum length of
  4096") and a ``FilterCriteria`` holds at most 10 filters (5 by default, 10 with a quota
  increase).
* ``"eventbridge"``: a pattern is at most 2048 characters, EventBridge's default "Event
  pattern size" quota ("Maximum event pattern size, in characters"; adjustable, up to
  4096 characters with a quota increase, which is not modelled here). A rule has exactly
  one pattern, so a :class:`FilterSet` of EventBridge patterns has no count limit (rules per
  bus are counted by whoever keeps the rules).
* Not enforced: EventBridge refuses a wildcard rule it finds "too complex" (many wildcards,
  repeated characters after a wildcard) but publishes no threshold, so none is guessed here.

Dialects
--------
Lambda event filtering uses EventBridge's pattern language (run by Event Ruler) but
documents only part of it. Both dialects share one compiler and one matcher: an operator
means the same in both; the dialect only decides, at compile time, which operators are
accepted and which limits apply.

* ``"lambda"`` accepts what the Lambda page's filter rule syntax table lists: equals, null,
  empty, ``equals-ignore-case``, ``prefix`` and ``suffix`` of a string, ``numeric``
  (equals, ranges), ``exists``, ``anything-but`` of plain values, and ``$or``. It refuses
  the EventBridge-only forms below, naming them.
* ``"eventbridge"`` accepts, in addition, what EventBridge's comparison-operator table
  marks "Event bus support: Yes": ``wildcard``, ``{"prefix": {"equals-ignore-case":
  ...}}``, ``{"suffix": {"equals-ignore-case": ...}}`` and ``anything-but`` of ``prefix``,
  ``suffix``, ``equals-ignore-case`` or ``wildcard``; and ``cidr`` (IP address matching,
  from the content-filtering page).

Semantics
---------
Operators of both dialects:

* A pattern is a non-empty object. Keys at the same level are ANDed; the event must have
  the same nesting. A leaf is a non-empty array of match values that are ORed.
* Equals: ``"a": ["x", 3, true]``. Strings match exactly (no case folding). Numbers match
  by value, so ``5`` matches ``5.0``, as Event Ruler (the engine behind EventBridge)
  does: a pattern number is matched literally *and* numerically. The Lambda page still
  carries an older note that 300, 300.0 and 3.0e2 are not equal; records here are
  already decoded, so their original text is gone anyway. Booleans only match JSON
  booleans and numbers only match JSON numbers: ``[1]`` never matches ``true``.
* Null ``[null]`` matches a present JSON null only; empty ``[""]`` matches the empty
  string only. Null, empty string and a missing key are three different things.
* ``{"equals-ignore-case": "x"}``, ``{"prefix": "x"}``, ``{"suffix": "x"}`` match string
  values only (case-insensitivity uses Unicode case folding).
* ``{"numeric": ["=", 5]}``, ``[">", 0, "<=", 5]`` (a range is a lower bound ``>``/``>=``
  followed by an upper bound ``<``/``<=``) match JSON numbers only, never numeric strings
  such as DynamoDB's ``{"N": "101"}``, never booleans.
* ``{"anything-but": ...}`` takes one string, one number, or a non-empty list of only
  strings or only numbers. It matches a *present* leaf value that equals none of them
  (numbers compared by value; values of another type -- null, booleans, a number against
  a string list -- are "anything but" and match). A missing key never matches it: Lambda
  requires every field a pattern names to be in the event; ``exists: false`` is the only
  way to match absence.
* ``{"exists": true}`` matches when the key holds a leaf value (a string, number,
  boolean or **null** -- null is a present value); ``{"exists": false}`` matches when it
  does not: the key is missing, **any parent on the path is missing or is not an
  object**, or the value is an object (exists works on leaf nodes only, so an object is
  not a leaf; EventBridge documents that ``exists: false`` matches an object value).
* ``{"$or": [p1, p2, ...]}`` (at least two non-empty objects) may appear at any level,
  is ANDed with its sibling keys, and nests.
* Arrays in the record: a leaf matches if **any** element matches (nested arrays are
  flattened, object elements are not leaf values); an empty array holds no value, so
  only ``exists: false`` matches it. Where the pattern continues into an object and the
  record holds an array, the array's object elements are tried one at a time and the
  sub-pattern must match within a single element (``{"people": {"first": ["Ann"],
  "last": ["Lee"]}}`` needs one person named Ann Lee); an array without objects counts
  as a missing parent. ``anything-but`` on an array matches if any element is not
  excluded.

EventBridge-only operators (dialect ``"eventbridge"``):

* ``{"wildcard": "dir/*.png"}`` matches string values only and is anchored at both ends:
  the whole value must match. ``*`` matches any run of characters, **including none** and
  including ``/`` (``"dir/*.png"`` matches ``"dir/.png"`` and ``"dir/a/b.png"``, not
  ``"x/dir/a.png"``); any number of ``*`` may appear, but not two in a row. ``\\*`` is a
  literal star and ``\\\\`` a literal backslash (in JSON text: ``"\\\\*"`` and
  ``"\\\\\\\\"``); a backslash before anything else, or at the end, is refused. Nothing
  else is special (``?``, ``[`` are literal). Sources: the EventBridge operator table (the
  ``"dir/*.png"`` example: "Any file with a .png extension, located within the folder
  dir"), the AWS Compute blog post on wildcard filters ("match zero, single, or multiple
  characters"; ``"*.png"``, ``"*Title*"``), Event Ruler's README ("consecutive wildcard
  characters are not allowed"; "A backslash escaping any character other than asterisk or
  backslash is not allowed") and its ``WildcardParser``.
* ``{"cidr": "10.0.0.0/24"}`` matches string values that are IPv4 or IPv6 addresses in the
  block; other strings never match, nor do numbers. The operand is ``address/bits`` with
  exactly one ``/``; the bits are a non-negative integer below 32 for IPv4 and below 128
  for IPv6 (Event Ruler's ``CIDR.cidr`` refuses ``/32`` and ``/128``: one address is
  matched by its plain string); host bits are ignored (``10.0.0.5/24`` is
  ``10.0.0.0/24``), as Event Ruler computes the block from the mask. Addresses, in the
  operand and in the event, are read as Event Ruler reads them: a dotted quad or hex digits
  and colons (so a zone id ``%eth0`` or a dotted IPv6 tail is not an address), and an
  IPv4-mapped IPv6 address (``::ffff:a00:1``) is the IPv4 address, as Java's
  ``InetAddress`` makes it. Octets with leading zeros are not addresses (Python's
  reading). Sources: EventBridge's content-filtering page ("The event comes from a
  specific IP address"), Event Ruler's README ("IP Address Matching": "This also works with
  IPv6 addresses") and its ``CIDR`` class.
* ``{"prefix": {"equals-ignore-case": "x"}}`` and ``{"suffix": {"equals-ignore-case":
  "x"}}``: a string value starting / ending with ``x`` after Unicode case folding of both.
* ``{"anything-but": {"prefix": p}}``, ``{"suffix": s}``, ``{"equals-ignore-case": v}`` or
  ``{"wildcard": w}``, each with one string or a non-empty list of strings (Event Ruler's
  README documents the list form for all four; EventBridge's operator table shows one
  string each): matches a present leaf value that is not a string the
  nested operator matches -- so, as for plain ``anything-but``, numbers, booleans and null
  match, a missing key never does, and an array matches when any element is not excluded.
  An empty prefix or suffix is refused (it would exclude every string; Event Ruler: "Null
  prefix/suffix not allowed").

AWS reference: "Control which events Lambda sends to your function",
https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html; Lambda's
``Filter`` API, https://docs.aws.amazon.com/lambda/latest/api/API_Filter.html; EventBridge's
"Comparison operators for use in event patterns",
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html,
and "Content filtering in Amazon EventBridge event patterns",
https://docs.aws.amazon.com/eventbridge/latest/userguide/content-filtering-with-event-patterns.html;
"Amazon EventBridge quotas", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html;
"Filtering events in Amazon EventBridge with wildcard pattern matching",
https://aws.amazon.com/blogs/compute/filtering-events-in-amazon-eventbridge-with-wildcard-pattern-matching/;
Event Ruler, https://github.com/aws/event-ruler (README, ``JsonRuleCompiler``, ``CIDR``,
``input/WildcardParser``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal, NoReturn, TypeGuard, get_args

__all__ = [
    "MAX_EVENT_PATTERN_LENGTH",
    "MAX_FILTERS",
    "MAX_PATTERN_LENGTH",
    "UNREADABLE",
    "Dialect",
    "FilterPatternError",
    "FilterSet",
    "NotJson",
    "Pattern",
    "compile_pattern",
]

Dialect = Literal["lambda", "eventbridge"]
"""Which service's pattern language a pattern is written in; see the module docstring."""

_DIALECTS: Final[tuple[str, ...]] = get_args(Dialect)

MAX_PATTERN_LENGTH: Final = 4096
"""Longest ``Filters[].Pattern`` Lambda accepts, in characters."""

MAX_FILTERS: Final = 10
"""Most filters one ``FilterCriteria`` may hold (5 by default, 10 after a quota increase)."""

MAX_EVENT_PATTERN_LENGTH: Final = 2048
"""Longest EventBridge ``EventPattern``, in characters (the default "Event pattern size"
quota)."""

_OPERATORS: Final = frozenset(
    {"anything-but", "equals-ignore-case", "exists", "numeric", "prefix", "suffix"}
)
# Operators only EventBridge accepts, at the top of a match value.
_EVENTBRIDGE_OPERATORS: Final = frozenset({"cidr", "wildcard"})
_ALL_OPERATORS: Final = _OPERATORS | _EVENTBRIDGE_OPERATORS
# Refused by name in Lambda patterns, as before; neither service documents it (Event
# Ruler's explicit equals is spelled "exactly"). Unknown in EventBridge patterns.
_UNDOCUMENTED: Final = frozenset({"exact"})
# Names that cannot be field names inside $or (Event Ruler reserves its operator names).
_RESERVED_IN_OR: Final = _ALL_OPERATORS | _UNDOCUMENTED
# The operators {"anything-but": {...}} may hold (EventBridge only).
_ANYTHING_BUT_NESTED: Final = ("equals-ignore-case", "prefix", "suffix", "wildcard")
_IGNORE_CASE: Final = "equals-ignore-case"
_NUMERIC_OPS: Final = frozenset({"=", "<", "<=", ">", ">="})
_OR: Final = "$or"

# How Event Ruler recognises an IP address literal (Constants.IPv4_REGEX / IPv6_REGEX),
# before java.net.InetAddress parses it. The IPv6 form is one class plus a colon test so
# that a long run of colons cannot make the regex backtrack quadratically.
_IPV4_SHAPE: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_SHAPE: Final = re.compile(r"[0-9A-Fa-f:]+")
_LONGEST_ADDRESS: Final = 39  # 8 groups of 4 hex digits and 7 colons

# isinstance() with a tuple is faster than with an X | Y union; these are used per record.
_SCALARS: Final = (str, int, float)
_NUMBERS: Final = (int, float)
_ARRAYS: Final = (list, tuple)
_NOT_OBJECTS: Final = (str, int, float, list, tuple)

_MISSING: Final = object()
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})

_Check = Callable[[Mapping[str, Any]], bool]
_Leaf = Callable[[Any], bool]
_StringTest = Callable[[str], bool]
_Number = int | float
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FilterPatternError(ValueError):
    """A filter pattern is invalid; the message says what is wrong and where."""


class NotJson(str):
    """The text of a payload field that is not JSON (an SQS body, a Kafka value): patterns
    on the string match it as they match any string; a pattern on its contents never
    matches, not even ``exists: false``."""

    __slots__ = ()


class _Unreadable:
    """A payload field that is not text at all; no pattern on it matches."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE: Final = _Unreadable()
_OPAQUE: Final = (NotJson, _Unreadable)


def _fail(path: str, message: str) -> NoReturn:
    raise FilterPatternError(f'key "{path}": {message}' if path else message)


def _not_in_lambda(path: str, lead: str, form: str) -> NoReturn:
    """Refuse an EventBridge-only operator in a Lambda pattern, naming it and the dialect."""
    _fail(
        path,
        f"{lead}: {form} is an EventBridge operator; Lambda filters do not accept it "
        '(dialect "lambda"; an EventBridge event pattern is compiled with '
        'dialect="eventbridge")',
    )


def _check_dialect(dialect: object) -> Dialect:
    if dialect == "lambda":
        return "lambda"
    if dialect == "eventbridge":
        return "eventbridge"
    expected = " or ".join(f'"{d}"' for d in _DIALECTS)
    raise FilterPatternError(f"unknown dialect {dialect!r} (expected {expected})")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _is_number(value: object) -> TypeGuard[_Number]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: object) -> str:
    try:
        return json.dumps(value, default=_jsonable)
    except (TypeError, ValueError):
        return repr(value)


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _keys(item: Mapping[Any, Any]) -> str:
    return ", ".join(f'"{k}"' for k in item) or "none"


def _number(value: object, path: str, what: str) -> _Number:
    if not _is_number(value):
        _fail(path, f"{what} must be a number, got {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        _fail(path, f"{what} must be a finite number, got {value!r}")
    return value


def _string(value: object, path: str, op: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"{op} needs a string, got {_type_name(value)}")
    return value


# --- record traversal -------------------------------------------------------------------


def _is_object(value: object) -> bool:
    return type(value) is dict or (
        value is not None and not isinstance(value, _NOT_OBJECTS) and isinstance(value, Mapping)
    )


def _leaf_values(items: Sequence[Any]) -> Iterator[Any]:
    """Leaf values of a record array: nested arrays flattened, objects skipped."""
    for item in items:
        if isinstance(item, _ARRAYS):
            yield from _leaf_values(item)
        elif not _is_object(item):
            yield item


def _objects(items: Sequence[Any]) -> Iterator[Mapping[str, Any]]:
    """Object elements of a record array, nested arrays flattened."""
    for item in items:
        if _is_object(item):
            yield item
        elif isinstance(item, _ARRAYS):
            yield from _objects(item)


# --- wildcard and cidr operands (EventBridge) --------------------------------------------


def _wildcard_segments(operand: str, path: str, op: str) -> tuple[str, ...]:
    """The literal runs between the wildcards of ``operand``, escapes resolved.

    ``\\*`` is a literal star and ``\\\\`` a literal backslash; any other backslash, and
    ``**``, are refused as Event Ruler's WildcardParser refuses them. Positions in the
    messages are 0-based character indexes into the operand.
    """
    segments: list[str] = []
    current: list[str] = []
    index, end = 0, len(operand)
    while index < end:
        char = operand[index]
        if char == "\\":
            following = operand[index + 1] if index + 1 < end else ""
            if following not in ("*", "\\"):  # also "" at the end
                _fail(
                    path,
                    f"{op} {_show(operand)}: invalid escape at index {index}; a backslash "
                    "must be followed by * (a literal star) or \\ (a literal backslash)",
                )
            current.append(following)
            index += 2
            continue
        if char == "*":
            if index + 1 < end and operand[index + 1] == "*":
                _fail(
                    path,
                    f"{op} {_show(operand)}: consecutive wildcard characters (**) at index "
                    f"{index} are not allowed",
                )
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    segments.append("".join(current))
    return tuple(segments)


def _glob(segments: tuple[str, ...]) -> _StringTest:
    """A test for a whole string against literal runs separated by wildcards.

    The head and tail are anchored; each interior run is then searched once, left to right
    (``str.find``): taking its leftmost occurrence is exact when ``*`` is the only wildcard,
    so matching never backtracks, however many wildcards a pattern has.
    """
    if len(segments) == 1:
        literal = segments[0]
        return lambda value: value == literal
    head, tail = segments[0], segments[-1]
    middle = segments[1:-1]
    shortest = sum(len(segment) for segment in segments)
    head_end, tail_length = len(head), len(tail)

    def match(value: str) -> bool:
        if len(value) < shortest or not value.startswith(head) or not value.endswith(tail):
            return False
        position, stop = head_end, len(value) - tail_length
        for run in middle:
            found = value.find(run, position, stop)
            if found < 0:
                return False
            position = found + len(run)
        return True

    return match


def _ip_address(text: str) -> _Address | None:
    """``text`` as an IP address if Event Ruler would read it as one, else None."""
    if len(text) > _LONGEST_ADDRESS:
        return None
    try:
        if _IPV4_SHAPE.fullmatch(text):
            return ipaddress.IPv4Address(text)
        if ":" in text and _IPV6_SHAPE.fullmatch(text):
            address = ipaddress.IPv6Address(text)
            return address.ipv4_mapped or address
    except ValueError:
        return None
    return None


def _cidr(operand: object, path: str) -> _Network:
    text = _string(operand, path, "cidr")
    address, slash, bits = text.partition("/")
    where = f"cidr {_show(text)}"
    if not slash or "/" in bits:
        _fail(path, f'{where}: a CIDR block is an address, one "/" and the mask bits')
    if not (bits.isascii() and bits.isdigit()):
        _fail(path, f"{where}: the mask bits must be a non-negative integer, got {_show(bits)}")
    ip = _ip_address(address)
    if ip is None:
        _fail(path, f"{where}: {_show(address)} is not an IPv4 or IPv6 address")
    width, mask = (32 if ip.version == 4 else 128), int(bits)
    if mask >= width:
        hint = (
            f'; EventBridge refuses /{width}: match one address by its string, e.g. ["{ip}"]'
            if mask == width
            else ""
        )
        _fail(path, f"{where}: IPv{ip.version} mask bits must be 0 to {width - 1}{hint}")
    return ipaddress.ip_network(f"{ip}/{mask}", strict=False)


# --- leaves -----------------------------------------------------------------------------


class _LeafSpec:
    """What one leaf array asks for, gathered before it is turned into a closure."""

    def __init__(self, dialect: Dialect) -> None:
        self.eventbridge = dialect == "eventbridge"
        self.strings: set[str] = set()
        self.numbers: set[_Number] = set()
        self.booleans: set[bool] = set()
        self.null = False
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.folded: set[str] = set()
        self.folded_prefixes: list[str] = []
        self.folded_suffixes: list[str] = []
        self.wildcards: list[_StringTest] = []
        self.networks: list[_Network] = []
        # (lower, lower is exclusive, upper, upper is exclusive)
        self.ranges: list[tuple[float, bool, float, bool]] = []
        # (is this string excluded?, excluded numbers)
        self.anything_but: list[tuple[_StringTest, frozenset[_Number]]] = []
        self.exists_true = False
        self.exists_false = False

    def add(self, item: object, path: str) -> None:
        if item is None:
            self.null = True
        elif isinstance(item, bool):
            self.booleans.add(item)
        elif isinstance(item, str):
            self.strings.add(item)
        elif isinstance(item, int | float):
            self.numbers.add(_number(item, path, "match value"))
        elif isinstance(item, Mapping):
            self._add_operator(item, path)
        else:
            _fail(
                path,
                "match value must be a string, number, boolean, null or an operator object, "
                f"got {_type_name(item)}",
            )

    def _add_operator(self, item: Mapping[Any, Any], path: str) -> None:
        if len(item) != 1:
            _fail(path, f"an operator object must have exactly one key, got {_keys(item)}")
        ((op, operand),) = item.items()
        if op == "prefix":
            self._add_affix(op, operand, path, self.prefixes, self.folded_prefixes)
        elif op == "suffix":
            self._add_affix(op, operand, path, self.suffixes, self.folded_suffixes)
        elif op == _IGNORE_CASE:
            self.folded.add(_string(operand, path, op).casefold())
        elif op == "exists":
            if not isinstance(operand, bool):
                _fail(path, f"exists needs true or false, got {_type_name(operand)}")
            if operand:
                self.exists_true = True
            else:
                self.exists_false = True
        elif op == "numeric":
            self.ranges.append(_numeric(operand, path))
        elif op == "anything-but":
            self.anything_but.append(_anything_but(operand, path, eventbridge=self.eventbridge))
        elif op in _EVENTBRIDGE_OPERATORS and not self.eventbridge:
            _not_in_lambda(path, f'operator "{op}" is not supported by Lambda event filtering', op)
        elif op == "wildcard":
            self._add_wildcard(_string(operand, path, op), path)
        elif op == "cidr":
            self.networks.append(_cidr(operand, path))
        elif op in _UNDOCUMENTED and not self.eventbridge:
            _fail(path, f'operator "{op}" is not supported by Lambda event filtering')
        else:
            known = ", ".join(sorted(_ALL_OPERATORS if self.eventbridge else _OPERATORS))
            _fail(path, f'unknown operator "{op}" (expected one of: {known})')

    def _add_affix(
        self, op: str, operand: object, path: str, plain: list[str], folded: list[str]
    ) -> None:
        if isinstance(operand, str):
            plain.append(operand)
            return
        if not isinstance(operand, Mapping):
            _fail(path, f"{op} needs a string, got {_type_name(operand)}")
        if list(operand) != [_IGNORE_CASE]:
            wanted = f'a string or {{"{_IGNORE_CASE}": ...}}' if self.eventbridge else "a string"
            _fail(path, f"{op} needs {wanted}, got object {_show(operand)}")
        if not self.eventbridge:
            _not_in_lambda(
                path, f"{op} needs a string, got object", f'{{"{op}": {{"{_IGNORE_CASE}": ...}}}}'
            )
        folded.append(_string(operand[_IGNORE_CASE], path, f"{op} {_IGNORE_CASE}").casefold())

    def _add_wildcard(self, operand: str, path: str) -> None:
        segments = _wildcard_segments(operand, path, "wildcard")
        if len(segments) == 1:
            self.strings.add(segments[0])  # no wildcard: equals
        elif len(segments) == 2 and not segments[1]:
            self.prefixes.append(segments[0])  # "x*" (and "*", the empty prefix)
        elif len(segments) == 2 and not segments[0]:
            self.suffixes.append(segments[1])  # "*x"
        else:
            self.wildcards.append(_glob(segments))


def _numeric(operand: object, path: str) -> tuple[float, bool, float, bool]:
    if not isinstance(operand, list | tuple) or len(operand) not in (2, 4):
        _fail(
            path,
            'numeric needs ["=", n], [op, n] or a range like [">", 0, "<=", 5], '
            f"got {_show(operand)}",
        )
    ops = list(operand[0::2])
    for op in ops:
        if not isinstance(op, str) or op not in _NUMERIC_OPS:
            _fail(path, f"numeric operator must be one of =, <, <=, >, >=; got {_show(op)}")
    values = [
        _number(v, path, f'numeric operand of "{op}"')
        for op, v in zip(ops, operand[1::2], strict=True)
    ]
    if len(ops) == 1:
        op, value = ops[0], values[0]
        if op == "=":
            return (value, False, value, False)
        if op in (">", ">="):
            return (value, op == ">", math.inf, False)
        return (-math.inf, False, value, op == "<")
    if ops[0] not in (">", ">=") or ops[1] not in ("<", "<="):
        _fail(
            path,
            'a numeric range is a lower bound (">" or ">=") then an upper bound ("<" or "<="), '
            f'got "{ops[0]}" then "{ops[1]}"',
        )
    lower, upper = values
    lower_open, upper_open = ops[0] == ">", ops[1] == "<"
    if lower > upper or (lower == upper and (lower_open or upper_open)):
        _fail(path, f"numeric range {_show(list(operand))} matches no number")
    return (lower, lower_open, upper, upper_open)


def _anything_but(
    operand: object, path: str, *, eventbridge: bool
) -> tuple[_StringTest, frozenset[_Number]]:
    """(is this string excluded?, the excluded numbers) for one anything-but operand."""
    if isinstance(operand, str):
        return frozenset({operand}).__contains__, frozenset()
    if _is_number(operand):
        return frozenset().__contains__, frozenset({_number(operand, path, "anything-but value")})
    if isinstance(operand, Mapping):
        if eventbridge:
            return _anything_but_nested(operand, path), frozenset()
        if len(operand) == 1 and next(iter(operand)) in _ANYTHING_BUT_NESTED:
            _not_in_lambda(
                path,
                "anything-but with a nested operator is not supported by Lambda event filtering",
                f'{{"anything-but": {{"{next(iter(operand))}": ...}}}}',
            )
    if not isinstance(operand, list | tuple):
        what = (
            "a list of strings or numbers, or an operator object"
            if eventbridge
            else "or a list of strings or numbers"
        )
        _fail(
            path,
            f"anything-but needs a string, a number, {what}, got {_type_name(operand)}",
        )
    if not operand:
        _fail(path, "anything-but list must not be empty")
    strings = [v for v in operand if isinstance(v, str)]
    numbers = [_number(v, path, "anything-but value") for v in operand if _is_number(v)]
    if len(strings) + len(numbers) != len(operand):
        bad = next(v for v in operand if not isinstance(v, str) and not _is_number(v))
        _fail(path, f"anything-but list may hold only strings or numbers, got {_type_name(bad)}")
    if strings and numbers:
        _fail(path, "anything-but list must hold only strings or only numbers, not both")
    return frozenset(strings).__contains__, frozenset(numbers)


def _anything_but_nested(operand: Mapping[Any, Any], path: str) -> _StringTest:
    """EventBridge's {"anything-but": {op: value or [values]}}: which strings it excludes."""
    expected = ", ".join(_ANYTHING_BUT_NESTED)
    if len(operand) != 1:
        _fail(
            path,
            f"an anything-but object must have exactly one key (one of: {expected}), "
            f"got {_keys(operand)}",
        )
    ((op, value),) = operand.items()
    if op not in _ANYTHING_BUT_NESTED:
        _fail(path, f'anything-but cannot hold operator "{op}" (expected one of: {expected})')
    what = f"anything-but {op}"
    if isinstance(value, str):
        values: list[str] = [value]
    elif isinstance(value, list | tuple):
        if not value:
            _fail(path, f"{what} list must not be empty")
        for v in value:
            if not isinstance(v, str):
                _fail(path, f"{what} list may hold only strings, got {_type_name(v)}")
        values = list(value)
    else:
        _fail(path, f"{what} needs a string or a list of strings, got {_type_name(value)}")
    if op in ("prefix", "suffix") and "" in values:
        _fail(path, f"{what} must not be empty: it would exclude every string")
    if op == "prefix":
        prefixes = tuple(values)
        return lambda string: string.startswith(prefixes)
    if op == "suffix":
        suffixes = tuple(values)
        return lambda string: string.endswith(suffixes)
    if op == _IGNORE_CASE:
        folded = frozenset(v.casefold() for v in values)
        return lambda string: string.casefold() in folded
    globs = tuple(_glob(_wildcard_segments(v, path, what)) for v in values)

    def excluded(string: str) -> bool:
        for glob in globs:  # noqa: SIM110 - no generator per record
            if glob(string):
                return True
        return False

    return excluded


def _compile_leaf(items: Sequence[Any], path: str, dialect: Dialect) -> _Leaf:
    if not items:
        _fail(path, "a match array must not be empty")
    spec = _LeafSpec(dialect)
    for item in items:
        spec.add(item, path)

    strings = frozenset(spec.strings)
    numbers = frozenset(spec.numbers)
    booleans = frozenset(spec.booleans)
    null = spec.null
    prefixes = tuple(spec.prefixes)
    suffixes = tuple(spec.suffixes)
    folded = frozenset(spec.folded)
    folded_prefixes = tuple(spec.folded_prefixes)
    folded_suffixes = tuple(spec.folded_suffixes)
    fold = bool(folded or folded_prefixes or folded_suffixes)
    wildcards = tuple(spec.wildcards)
    networks = tuple(spec.networks)
    ranges = tuple(spec.ranges)
    anything_but = tuple(spec.anything_but)
    exists_true = spec.exists_true
    absent = spec.exists_false  # the result for a missing key / non-leaf value

    # Plain loops rather than any()/all(): no generator is created per record.
    def match_scalar(value: Any) -> bool:
        if isinstance(value, str):
            if value in strings or value.startswith(prefixes) or value.endswith(suffixes):
                return True
            if fold:
                lowered = value.casefold()
                if (
                    lowered in folded
                    or lowered.startswith(folded_prefixes)
                    or lowered.endswith(folded_suffixes)
                ):
                    return True
            for wildcard in wildcards:
                if wildcard(value):
                    return True
            if networks:
                address = _ip_address(value)
                if address is not None:
                    for network in networks:
                        if address in network:
                            return True
            for excluded, _ in anything_but:  # noqa: SIM110
                if not excluded(value):
                    return True
            return False
        if isinstance(value, bool):
            # before numbers: True == 1 in Python, but a JSON boolean is not a number
            return value in booleans or bool(anything_but)
        if isinstance(value, _NUMBERS):
            if value in numbers:
                return True
            for lower, lower_open, upper, upper_open in ranges:
                if (value > lower if lower_open else value >= lower) and (
                    value < upper if upper_open else value <= upper
                ):
                    return True
            for _, excluded_numbers in anything_but:  # noqa: SIM110
                if value not in excluded_numbers:
                    return True
            return False
        if value is None:
            return null or bool(anything_but)
        return bool(anything_but)  # an unexpected scalar type equals nothing listed

    def leaf(value: Any) -> bool:
        if isinstance(value, _SCALARS) or value is None:
            return exists_true or match_scalar(value)
        if isinstance(value, _ARRAYS):
            found = False
            for item in _leaf_values(value):
                if exists_true or match_scalar(item):
                    return True
                found = True
            return False if found else absent
        if value is _MISSING or _is_object(value):
            return absent
        if value is UNREADABLE:
            return False
        return exists_true or match_scalar(value)

    return leaf


# --- objects ----------------------------------------------------------------------------


def _field_leaf(key: str, leaf: _Leaf) -> _Check:
    def check(record: Mapping[str, Any]) -> bool:
        return leaf(record.get(key, _MISSING))

    return check


def _field_object(key: str, sub: _Check) -> _Check:
    absent = sub(_EMPTY)  # the result when the parent is missing or not an object

    def check(record: Mapping[str, Any]) -> bool:
        value = record.get(key, _MISSING)
        if type(value) is dict or _is_object(value):
            return sub(value)
        if isinstance(value, _ARRAYS):
            found = False
            for item in _objects(value):
                if sub(item):
                    return True
                found = True
            return False if found else absent
        if isinstance(value, _OPAQUE):  # not JSON: a pattern on its contents cannot match
            return False
        return absent

    return check


def _compile_or(spec: object, path: str, dialect: Dialect) -> _Check:
    where = f"{path}.{_OR}" if path else _OR
    if not isinstance(spec, list | tuple) or len(spec) < 2:
        _fail(where, f"{_OR} needs an array of at least 2 pattern objects")
    branches: list[_Check] = []
    for index, branch in enumerate(spec):
        branch_path = f"{where}[{index}]"
        if not isinstance(branch, Mapping):
            _fail(branch_path, f"{_OR} elements must be objects, got {_type_name(branch)}")
        branches.append(_compile_object(branch, branch_path, dialect, in_or=True))
    alternatives = tuple(branches)

    def check(record: Mapping[str, Any]) -> bool:
        for branch in alternatives:  # noqa: SIM110 - no generator per record
            if branch(record):
                return True
        return False

    return check


def _compile_object(spec: Mapping[Any, Any], path: str, dialect: Dialect, *, in_or: bool) -> _Check:
    if not spec:
        _fail(path, "an object in a pattern must not be empty")
    checks: list[_Check] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            _fail(path, f"keys must be strings, got {_type_name(key)} {key!r}")
        if key == _OR:
            checks.append(_compile_or(value, path, dialect))
            continue
        key_path = f"{path}.{key}" if path else key
        if in_or and key in _RESERVED_IN_OR:
            _fail(key_path, f'"{key}" is an operator and cannot be a field name inside {_OR}')
        if isinstance(value, list | tuple):
            checks.append(_field_leaf(key, _compile_leaf(value, key_path, dialect)))
        elif isinstance(value, Mapping):
            sub = _compile_object(value, key_path, dialect, in_or=in_or)
            checks.append(_field_object(key, sub))
        else:
            _fail(
                key_path,
                "value must be an array of match values or a nested object, "
                f"got {_type_name(value)}",
            )
    if len(checks) == 1:
        return checks[0]
    conditions = tuple(checks)

    def check(record: Mapping[str, Any]) -> bool:
        for condition in conditions:  # noqa: SIM110 - no generator per record
            if not condition(record):
                return False
        return True

    return check


# --- public API -------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise FilterPatternError(f"pattern is not valid JSON: {name} is not a JSON value")


def _length_limit(dialect: Dialect) -> tuple[int, str]:
    """The longest pattern the dialect's service accepts, and who says so."""
    if dialect == "eventbridge":
        return MAX_EVENT_PATTERN_LENGTH, "EventBridge"
    return MAX_PATTERN_LENGTH, "Lambda"


class Pattern:
    """One compiled filter pattern; immutable and safe to share between threads."""

    __slots__ = ("_check", "_dialect", "_source")

    _check: _Check
    _dialect: Dialect
    _source: str

    def __init__(self, pattern: str | Mapping[str, Any], *, dialect: Dialect = "lambda") -> None:
        dialect = _check_dialect(dialect)
        limit, service = _length_limit(dialect)
        if isinstance(pattern, str):
            if len(pattern) > limit:
                raise FilterPatternError(
                    f"pattern is {len(pattern)} characters; {service} allows at most {limit}"
                )
            try:
                parsed: object = json.loads(pattern, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                raise FilterPatternError(f"pattern is not valid JSON: {exc}") from None
        else:
            parsed = pattern
        if not isinstance(parsed, Mapping):
            raise FilterPatternError(f"pattern must be a JSON object, got {_type_name(parsed)}")
        if not parsed:
            raise FilterPatternError("pattern must not be an empty object")
        check = _compile_object(parsed, "", dialect, in_or=False)
        source = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
        if not isinstance(pattern, str) and len(source) > limit:
            raise FilterPatternError(
                f"pattern is {len(source)} characters as compact JSON; {service} allows at "
                f"most {limit}"
            )
        object.__setattr__(self, "_check", check)
        object.__setattr__(self, "_dialect", dialect)
        object.__setattr__(self, "_source", source)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def source(self) -> str:
        """The pattern as compact JSON."""
        return self._source

    @property
    def dialect(self) -> Dialect:
        """The pattern language it was compiled as: ``"lambda"`` or ``"eventbridge"``."""
        return self._dialect

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` satisfies this pattern."""
        return self._check(record)

    def __repr__(self) -> str:
        if self._dialect == "lambda":
            return f"Pattern({self._source!r})"
        return f"Pattern({self._source!r}, dialect={self._dialect!r})"


def compile_pattern(pattern: str | Mapping[str, Any], *, dialect: Dialect = "lambda") -> Pattern:
    """Validate and compile one pattern (JSON text or a parsed mapping).

    ``dialect="lambda"`` (the default) is a Lambda ``FilterCriteria`` filter pattern;
    ``dialect="eventbridge"`` is an EventBridge rule's event pattern, which also accepts
    ``wildcard``, ``cidr``, case-insensitive ``prefix``/``suffix`` and the nested
    ``anything-but`` forms. Raises :class:`FilterPatternError` naming what is wrong and the
    key path.
    """
    if not isinstance(pattern, str | Mapping):
        raise FilterPatternError(
            f"pattern must be a JSON string or a mapping, got {type(pattern).__name__}"
        )
    return Pattern(pattern, dialect=dialect)


class FilterSet:
    """Patterns of which a record must match any: Lambda's ``FilterCriteria``, or a set of
    EventBridge event patterns with ``dialect="eventbridge"``.

    An empty set passes everything.
    """

    __slots__ = ("_checks", "_dialect", "_patterns")

    def __init__(
        self, patterns: Sequence[str | Mapping[str, Any]], *, dialect: Dialect = "lambda"
    ) -> None:
        self._dialect: Dialect = _check_dialect(dialect)
        if isinstance(patterns, str | bytes | Mapping) or not isinstance(patterns, Sequence):
            raise FilterPatternError(
                f"patterns must be a sequence of patterns, got {type(patterns).__name__}"
            )
        if self._dialect == "lambda" and len(patterns) > MAX_FILTERS:
            raise FilterPatternError(
                f"{len(patterns)} patterns given; Lambda allows at most {MAX_FILTERS} filters"
            )
        compiled: list[Pattern] = []
        for index, pattern in enumerate(patterns):
            try:
                compiled.append(compile_pattern(pattern, dialect=self._dialect))
            except FilterPatternError as exc:
                raise FilterPatternError(f"pattern {index}: {exc}") from None
        self._patterns: tuple[Pattern, ...] = tuple(compiled)
        self._checks: tuple[_Check, ...] = tuple(p._check for p in compiled)

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        """The compiled patterns, in the order given."""
        return self._patterns

    @property
    def dialect(self) -> Dialect:
        """The pattern language of every pattern in the set."""
        return self._dialect

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` passes: any pattern matches, or there are no patterns."""
        checks = self._checks
        if not checks:
            return True
        for check in checks:  # noqa: SIM110 - no generator per record
            if check(record):
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self._checks)

    def __repr__(self) -> str:
        sources = [p.source for p in self._patterns]
        if self._dialect == "lambda":
            return f"FilterSet({sources!r})"
        return f"FilterSet({sources!r}, dialect={self._dialect!r})"
