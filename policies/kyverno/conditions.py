"""Kyverno conditions (preconditions, deny, foreach preconditions): `key operator value`
with `{{ }}` variables, grouped as `any` / `all` (or a bare list, meaning all)."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from policies.kyverno.jmes import compile_substitution, has_variables
from policies.kyverno.pattern import ScalarPattern
from policies.kyverno.values import go_sprint, has_wildcard, parse_duration, quantity, wildcard_match

_RANGE = re.compile(r"^\s*[+-]?\d+(?:\.\d+)?[A-Za-z]*\s*-\s*[+-]?\d+(?:\.\d+)?[A-Za-z]*\s*$")
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")

OPERATORS = frozenset(
    {
        "Equals",
        "Equal",
        "NotEquals",
        "NotEqual",
        "In",
        "AnyIn",
        "AllIn",
        "NotIn",
        "AnyNotIn",
        "AllNotIn",
        "GreaterThan",
        "GreaterThanOrEquals",
        "LessThan",
        "LessThanOrEquals",
        "DurationGreaterThan",
        "DurationGreaterThanOrEquals",
        "DurationLessThan",
        "DurationLessThanOrEquals",
    }
)


_SET_OPERATORS = frozenset({"In", "AnyIn", "AllIn", "NotIn", "AnyNotIn", "AllNotIn"})
_EQUALITY_OPERATORS = frozenset({"Equals", "Equal", "NotEquals", "NotEqual"})


class ConditionError(ValueError):
    """A condition that cannot be compiled (unknown operator, wrong shape)."""


# ---------------------------------------------------------------- equality


def _duration_pair(key: Any, value: Any) -> tuple[Decimal, Decimal] | None:
    dk = parse_duration(key) if isinstance(key, str) else None
    dv = parse_duration(value) if isinstance(value, str) else None
    if dk is None and dv is None:
        return None
    if dk is None:
        dk = _seconds(key)
    if dv is None:
        dv = _seconds(value)
    if dk is None or dv is None:
        return None
    return dk, dv


def _seconds(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def equals(key: Any, value: Any) -> bool:
    if isinstance(key, bool):
        return isinstance(value, bool) and key == value
    if isinstance(key, int | float):
        if isinstance(value, bool):
            return False
        if isinstance(value, int | float):
            return key == value
        if isinstance(value, str):
            try:
                return float(value) == key
            except ValueError:
                return False
        return False
    if isinstance(key, str):
        pair = _duration_pair(key, value)
        if pair is not None:
            return pair[0] == pair[1]
        qk = quantity(key)
        if qk is not None and isinstance(value, str):
            qv = quantity(value)
            return qv is not None and qk == qv
        if isinstance(value, str):
            return wildcard_match(value, key)
        return False
    if isinstance(key, dict | list):
        return key == value
    return key is None and value is None


# ---------------------------------------------------------------- numeric


def _compare(op: str, a: Decimal | tuple[int, ...], b: Decimal | tuple[int, ...]) -> bool:
    if op == "GreaterThan":
        return a > b  # type: ignore[operator]
    if op == "GreaterThanOrEquals":
        return a >= b  # type: ignore[operator]
    if op == "LessThan":
        return a < b  # type: ignore[operator]
    return a <= b  # type: ignore[operator]


def _to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def numeric(op: str, key: Any, value: Any) -> bool:
    pair = _duration_pair(key, value)
    if pair is not None:
        return _compare(op, pair[0], pair[1])
    if isinstance(key, str) and isinstance(value, str):
        qk, qv = quantity(key), quantity(value)
        if qk is not None and qv is not None:
            return _compare(op, qk, qv)
    if isinstance(key, str):
        mk, mv = _SEMVER.match(key.strip()), _SEMVER.match(value.strip()) if isinstance(value, str) else None
        if mk and mv and _to_decimal(key) is None:
            return _compare(op, tuple(map(int, mk.groups())), tuple(map(int, mv.groups())))
    dk, dv = _to_decimal(key), _to_decimal(value)
    if dk is None or dv is None:
        return False
    return _compare(op, dk, dv)


# ---------------------------------------------------------------- set operators


def _strings(value: Any) -> list[str] | None:
    """The value side of In-style operators as strings; None when it has the wrong type."""
    if isinstance(value, list):
        return [go_sprint(v) for v in value]
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return [go_sprint(value)]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                return [value]
            if isinstance(parsed, list):
                return [go_sprint(v) for v in parsed]
        return [value]
    return None


class _Values:
    """The value side of a set operator as strings. A value written in the policy (no
    variables) is compiled once and, without wildcards, tested by a set lookup."""

    __slots__ = ("items", "plain")

    def __init__(self, items: list[str], indexed: bool = False) -> None:
        self.items = items
        self.plain = frozenset(items) if indexed and not any(has_wildcard(v) for v in items) else None

    def has(self, key: str) -> bool:
        """Whether the key matches a value, wildcards on either side (a pattern matches
        itself, and without wildcards on either side matching is equality)."""
        if self.plain is not None and not has_wildcard(key):
            return key in self.plain
        if key in self.items:
            return True
        if has_wildcard(key):
            return any(wildcard_match(v, key) or wildcard_match(key, v) for v in self.items)
        return any(has_wildcard(v) and wildcard_match(v, key) for v in self.items)


@lru_cache(maxsize=1024)
def _range_pattern(text: str) -> ScalarPattern:
    return ScalarPattern(text)


def set_operator(op: str, key: Any, value: Any, compiled: _Values | None = None) -> bool:
    """AnyIn / AllIn / AnyNotIn / AllNotIn (and the deprecated In / NotIn); `compiled` is
    the value already turned into strings (a list written in the policy)."""
    if isinstance(key, list):
        keys = [go_sprint(k) for k in key]
    elif isinstance(key, str | int | float) and not (isinstance(key, bool) and op in ("AllIn", "AllNotIn")):
        keys = [go_sprint(key)]
    else:
        return False
    values = compiled
    if values is None:
        if isinstance(value, str) and _RANGE.match(value) and not (len(keys) == 1 and keys[0] == value):
            in_range = _range_pattern(value.strip())
            hits = [in_range.matches(k) for k in keys]
            return _combine(op, hits)
        if isinstance(value, str) and len(keys) == 1 and keys[0] == value:
            return op in ("In", "AnyIn", "AllIn")
        strings = _strings(value)
        if strings is None:
            return False
        values = _Values(strings)
    if op == "In" and not isinstance(key, list):
        return keys[0] in values.items or values.has(keys[0])
    return _combine(op, [values.has(k) for k in keys])


def _combine(op: str, hits: list[bool]) -> bool:
    if op in ("AnyIn",):
        return any(hits)
    if op in ("AllIn", "In"):
        return bool(hits) and all(hits)
    if op == "AnyNotIn":
        return not all(hits)
    if op == "AllNotIn":
        return not any(hits)
    # NotIn (deprecated): no key in the set
    return not any(hits)


# ---------------------------------------------------------------- compiled conditions


def evaluate(op: str, key: Any, value: Any) -> bool:
    if op in ("Equals", "Equal"):
        return equals(key, value)
    if op in ("NotEquals", "NotEqual"):
        return not equals(key, value)
    if op in ("GreaterThan", "GreaterThanOrEquals", "LessThan", "LessThanOrEquals"):
        return numeric(op, key, value)
    if op.startswith("Duration"):
        return numeric(op.removeprefix("Duration"), key, value)
    return set_operator(op, key, value)


class Condition:
    """One `key operator value`; key and value are substituted leniently (an unresolved
    variable reads as an empty string)."""

    __slots__ = ("key", "operator", "value", "message", "dynamic", "_key", "_value", "_values", "_plain")

    def __init__(self, key: Any, operator: str, value: Any, message: str) -> None:
        self.key = key
        self.operator = operator
        self.value = value
        self.message = message
        self.dynamic = has_variables(key) or has_variables(value)
        self._key = compile_substitution(key, lenient=True)
        self._value = compile_substitution(value, lenient=True)
        self._values: _Values | None = None  # a literal list for a set operator, compiled
        if operator in _SET_OPERATORS and isinstance(value, list) and not has_variables(value):
            self._values = _Values([go_sprint(v) for v in value], indexed=True)
        # (Not)Equals a literal string that is no duration, quantity or wildcard: for a
        # string key that is plain string equality.
        self._plain: str | None = None
        if (
            operator in _EQUALITY_OPERATORS
            and isinstance(value, str)
            and not has_variables(value)
            and not has_wildcard(value)
            and parse_duration(value) is None
            and quantity(value) is None
        ):
            self._plain = value

    def holds(self, ctx: dict[str, Any]) -> bool:
        if self._plain is not None:
            key = self._key(ctx)
            if isinstance(key, str):
                return (key == self._plain) == (self.operator in ("Equals", "Equal"))
            return evaluate(self.operator, key, self.value)
        if self._values is not None:
            return set_operator(self.operator, self._key(ctx), self.value, self._values)
        if not self.dynamic:
            return evaluate(self.operator, self.key, self.value)
        return evaluate(self.operator, self._key(ctx), self._value(ctx))


def _compile_one(raw: Any, where: str) -> Condition:
    if not isinstance(raw, dict):
        raise ConditionError(f"{where}: a condition must be an object with key, operator and value")
    op = str(raw.get("operator", ""))
    if op not in OPERATORS:
        raise ConditionError(f"{where}: unknown operator {op!r}")
    key, value = raw.get("key"), raw.get("value")
    return Condition(key, op, value, str(raw.get("message", "")))


class Conditions:
    """`any` (at least one) and `all` (every one) groups; empty groups do not constrain."""

    __slots__ = ("any", "all", "active")

    def __init__(self, raw: Any, where: str) -> None:
        self.any: list[Condition] = []
        self.all: list[Condition] = []
        self.active = False  # any condition at all (read per request, so kept, not computed)
        if raw is None:
            return
        if isinstance(raw, list):
            self.all = [_compile_one(c, f"{where}[{i}]") for i, c in enumerate(raw)]
        elif isinstance(raw, dict):
            self.any = [_compile_one(c, f"{where}.any[{i}]") for i, c in enumerate(raw.get("any") or [])]
            self.all = [_compile_one(c, f"{where}.all[{i}]") for i, c in enumerate(raw.get("all") or [])]
        else:
            raise ConditionError(f"{where}: expected `any`/`all` or a list of conditions")
        self.active = bool(self.any or self.all)

    def __bool__(self) -> bool:
        return self.active

    def holds(self, ctx: dict[str, Any]) -> bool:
        for cond in self.all:
            if not cond.holds(ctx):
                return False
        return not self.any or any(cond.holds(ctx) for cond in self.any)
