"""AWS Lambda event filtering (``FilterCriteria``) as a pure, compiled matcher.

Contract
--------
``compile_pattern`` turns one filter pattern -- the JSON string AWS stores in
``FilterCriteria.Filters[].Pattern``, or the same pattern already parsed into a mapping --
into an immutable :class:`Pattern`. All validation happens there: a pattern that Lambda
would refuse raises :class:`FilterPatternError` whose message names the problem and the key
path (``key "body.size": numeric needs ...``). :class:`FilterSet` is a whole
``FilterCriteria``: a record passes when *any* pattern matches, and an empty set passes
every record. Its errors are prefixed with the 0-based index of the bad pattern
(``pattern 2: key "body.size": ...``). Evaluation never raises and never re-parses: each
pattern is compiled once into closures.

The record given to ``matches`` is the event record as the connector prepared it for
filtering, with JSON-compatible values (dict, list, str, int, float, bool, None); e.g. an
SQS ``body`` that was JSON is already decoded. A payload field that is not JSON is given
as :class:`NotJson` (its text: string patterns match it, a pattern on its contents never
does, not even ``exists: false``: Lambda drops a record whose data is not JSON when the
pattern filters inside it) or as :data:`UNREADABLE` (not even text, such as a Kafka value
that is not UTF-8: no pattern on it matches). Which field a source filters on (SQS
``body``, Kafka ``value``, DynamoDB ``dynamodb``) is the connector's business.

Limits enforced (documented by Lambda): a pattern is at most 4096 characters
(``API_Filter``: "Maximum length of 4096"; for a mapping, its compact JSON form is
measured) and a ``FilterCriteria`` holds at most 10 filters (5 by default, 10 with a quota
increase).

Semantics
---------
Lambda uses the EventBridge pattern language; only the operators Lambda documents are
accepted (others, such as ``wildcard``, ``cidr`` or ``{"anything-but": {"prefix": ...}}``,
are rejected at compile time):

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

AWS reference: "Control which events Lambda sends to your function",
https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html, and the
EventBridge operator reference it points to,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeGuard

__all__ = [
    "MAX_FILTERS",
    "MAX_PATTERN_LENGTH",
    "UNREADABLE",
    "FilterPatternError",
    "FilterSet",
    "NotJson",
    "Pattern",
    "compile_pattern",
]

MAX_PATTERN_LENGTH: Final = 4096
"""Longest ``Filters[].Pattern`` Lambda accepts, in characters."""

MAX_FILTERS: Final = 10
"""Most filters one ``FilterCriteria`` may hold (5 by default, 10 after a quota increase)."""

_OPERATORS: Final = frozenset(
    {"anything-but", "equals-ignore-case", "exists", "numeric", "prefix", "suffix"}
)
# EventBridge operators Lambda event filtering does not document; named in the error.
_NOT_IN_LAMBDA: Final = frozenset({"cidr", "wildcard", "exact"})
_NUMERIC_OPS: Final = frozenset({"=", "<", "<=", ">", ">="})
_OR: Final = "$or"

# isinstance() with a tuple is faster than with an X | Y union; these are used per record.
_SCALARS: Final = (str, int, float)
_NUMBERS: Final = (int, float)
_ARRAYS: Final = (list, tuple)
_NOT_OBJECTS: Final = (str, int, float, list, tuple)

_MISSING: Final = object()
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})

_Check = Callable[[Mapping[str, Any]], bool]
_Leaf = Callable[[Any], bool]
_Number = int | float


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


# --- leaves -----------------------------------------------------------------------------


class _LeafSpec:
    """What one leaf array asks for, gathered before it is turned into a closure."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[_Number] = set()
        self.booleans: set[bool] = set()
        self.null = False
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.folded: set[str] = set()
        # (lower, lower is exclusive, upper, upper is exclusive)
        self.ranges: list[tuple[float, bool, float, bool]] = []
        self.anything_but: list[tuple[frozenset[str], frozenset[_Number]]] = []
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
            keys = ", ".join(f'"{k}"' for k in item) or "none"
            _fail(path, f"an operator object must have exactly one key, got {keys}")
        ((op, operand),) = item.items()
        if op == "prefix":
            self.prefixes.append(_string(operand, path, op))
        elif op == "suffix":
            self.suffixes.append(_string(operand, path, op))
        elif op == "equals-ignore-case":
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
            self.anything_but.append(_anything_but(operand, path))
        elif op in _NOT_IN_LAMBDA:
            _fail(path, f'operator "{op}" is not supported by Lambda event filtering')
        else:
            known = ", ".join(sorted(_OPERATORS))
            _fail(path, f'unknown operator "{op}" (expected one of: {known})')


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


def _anything_but(operand: object, path: str) -> tuple[frozenset[str], frozenset[_Number]]:
    if isinstance(operand, str):
        return frozenset({operand}), frozenset()
    if _is_number(operand):
        return frozenset(), frozenset({_number(operand, path, "anything-but value")})
    if isinstance(operand, Mapping):
        _fail(
            path,
            "anything-but with a nested operator (prefix, suffix, equals-ignore-case, "
            "wildcard) is not supported by Lambda event filtering",
        )
    if not isinstance(operand, list | tuple):
        _fail(
            path,
            "anything-but needs a string, a number, or a list of strings or numbers, "
            f"got {_type_name(operand)}",
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
    return frozenset(strings), frozenset(numbers)


def _compile_leaf(items: Sequence[Any], path: str) -> _Leaf:
    if not items:
        _fail(path, "a match array must not be empty")
    spec = _LeafSpec()
    for item in items:
        spec.add(item, path)

    strings = frozenset(spec.strings)
    numbers = frozenset(spec.numbers)
    booleans = frozenset(spec.booleans)
    null = spec.null
    prefixes = tuple(spec.prefixes)
    suffixes = tuple(spec.suffixes)
    folded = frozenset(spec.folded)
    ranges = tuple(spec.ranges)
    anything_but = tuple(spec.anything_but)
    exists_true = spec.exists_true
    absent = spec.exists_false  # the result for a missing key / non-leaf value

    # Plain loops rather than any()/all(): no generator is created per record.
    def match_scalar(value: Any) -> bool:
        if isinstance(value, str):
            if value in strings or value.startswith(prefixes) or value.endswith(suffixes):
                return True
            if folded and value.casefold() in folded:
                return True
            for excluded, _ in anything_but:  # noqa: SIM110
                if value not in excluded:
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


def _compile_or(spec: object, path: str) -> _Check:
    where = f"{path}.{_OR}" if path else _OR
    if not isinstance(spec, list | tuple) or len(spec) < 2:
        _fail(where, f"{_OR} needs an array of at least 2 pattern objects")
    branches: list[_Check] = []
    for index, branch in enumerate(spec):
        branch_path = f"{where}[{index}]"
        if not isinstance(branch, Mapping):
            _fail(branch_path, f"{_OR} elements must be objects, got {_type_name(branch)}")
        branches.append(_compile_object(branch, branch_path, in_or=True))
    alternatives = tuple(branches)

    def check(record: Mapping[str, Any]) -> bool:
        for branch in alternatives:  # noqa: SIM110 - no generator per record
            if branch(record):
                return True
        return False

    return check


def _compile_object(spec: Mapping[Any, Any], path: str, *, in_or: bool) -> _Check:
    if not spec:
        _fail(path, "an object in a pattern must not be empty")
    checks: list[_Check] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            _fail(path, f"keys must be strings, got {_type_name(key)} {key!r}")
        if key == _OR:
            checks.append(_compile_or(value, path))
            continue
        key_path = f"{path}.{key}" if path else key
        if in_or and (key in _OPERATORS or key in _NOT_IN_LAMBDA):
            _fail(key_path, f'"{key}" is an operator and cannot be a field name inside {_OR}')
        if isinstance(value, list | tuple):
            checks.append(_field_leaf(key, _compile_leaf(value, key_path)))
        elif isinstance(value, Mapping):
            checks.append(_field_object(key, _compile_object(value, key_path, in_or=in_or)))
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


class Pattern:
    """One compiled filter pattern; immutable and safe to share between threads."""

    __slots__ = ("_check", "_source")

    _check: _Check
    _source: str

    def __init__(self, pattern: str | Mapping[str, Any]) -> None:
        if isinstance(pattern, str):
            if len(pattern) > MAX_PATTERN_LENGTH:
                raise FilterPatternError(
                    f"pattern is {len(pattern)} characters; Lambda allows at most "
                    f"{MAX_PATTERN_LENGTH}"
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
        check = _compile_object(parsed, "", in_or=False)
        source = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
        if not isinstance(pattern, str) and len(source) > MAX_PATTERN_LENGTH:
            raise FilterPatternError(
                f"pattern is {len(source)} characters as compact JSON; Lambda allows at most "
                f"{MAX_PATTERN_LENGTH}"
            )
        object.__setattr__(self, "_check", check)
        object.__setattr__(self, "_source", source)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def source(self) -> str:
        """The pattern as compact JSON."""
        return self._source

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` satisfies this pattern."""
        return self._check(record)

    def __repr__(self) -> str:
        return f"Pattern({self._source!r})"


def compile_pattern(pattern: str | Mapping[str, Any]) -> Pattern:
    """Validate and compile one Lambda filter pattern (JSON text or a parsed mapping).

    Raises :class:`FilterPatternError` naming what is wrong and the key path.
    """
    if not isinstance(pattern, str | Mapping):
        raise FilterPatternError(
            f"pattern must be a JSON string or a mapping, got {type(pattern).__name__}"
        )
    return Pattern(pattern)


class FilterSet:
    """Lambda FilterCriteria: a record passes if any pattern matches.

    An empty set passes everything.
    """

    __slots__ = ("_checks", "_patterns")

    def __init__(self, patterns: Sequence[str | Mapping[str, Any]]) -> None:
        if isinstance(patterns, str | bytes | Mapping) or not isinstance(patterns, Sequence):
            raise FilterPatternError(
                f"patterns must be a sequence of patterns, got {type(patterns).__name__}"
            )
        if len(patterns) > MAX_FILTERS:
            raise FilterPatternError(
                f"{len(patterns)} patterns given; Lambda allows at most {MAX_FILTERS} filters"
            )
        compiled: list[Pattern] = []
        for index, pattern in enumerate(patterns):
            try:
                compiled.append(compile_pattern(pattern))
            except FilterPatternError as exc:
                raise FilterPatternError(f"pattern {index}: {exc}") from None
        self._patterns: tuple[Pattern, ...] = tuple(compiled)
        self._checks: tuple[_Check, ...] = tuple(p._check for p in compiled)

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        """The compiled patterns, in the order given."""
        return self._patterns

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
        return f"FilterSet({[p.source for p in self._patterns]!r})"
