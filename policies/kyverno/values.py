"""Scalar semantics shared by patterns, conditions and JMESPath functions.

Kyverno is written in Go, so its comparisons see values the way Go does: wildcards
(`*`, `?`) over the whole string, Go durations ("1h30m"), Kubernetes quantities
("500m", "1Gi") and `fmt.Sprint` renderings of numbers. Keeping these in one module
means a pattern, a deny condition and a JMESPath function agree on what "5000" or
"1Gi" means."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from controllers.quantity import QuantityError, parse_quantity

_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


@lru_cache(maxsize=4096)
def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """`*` is any run of characters, `?` exactly one; everything else is literal."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def wildcard_match(pattern: str, text: str) -> bool:
    """Whole-string wildcard match (minio's `wildcard.Match`, which Kyverno uses)."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == text
    return wildcard_regex(pattern).fullmatch(text) is not None


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


@lru_cache(maxsize=4096)
def parse_duration(text: str) -> Decimal | None:
    """Seconds of a Go duration string ("1h30m", "-5s", "0"), None if it is not one."""
    if not isinstance(text, str) or not text:
        return None
    body = text
    sign = Decimal(1)
    if body[0] in "+-":
        sign = Decimal(-1) if body[0] == "-" else Decimal(1)
        body = body[1:]
    if body == "0":
        return Decimal(0)
    if not body:
        return None
    total = Decimal(0)
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if not m or m.group(1) in ("", "."):
            return None
        total += Decimal(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


@lru_cache(maxsize=4096)
def _quantity_cached(text: str) -> Decimal | None:
    try:
        return parse_quantity(text)
    except (QuantityError, ValueError, ArithmeticError):
        return None


def quantity(value: Any) -> Decimal | None:
    """The value of a Kubernetes quantity string, None if it is not one."""
    if isinstance(value, str):
        return _quantity_cached(value)
    return None


def go_number_string(value: int | float) -> str:
    """`fmt.Sprint` of a JSON number: integral floats print without a fraction."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def go_sprint(value: Any) -> str:
    """`fmt.Sprint`-like rendering used by the In/NotIn operators."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_number_string(value)
    if value is None:
        return "<nil>"
    return json.dumps(value, separators=(",", ":"))


def to_json_text(value: Any) -> str:
    """How a non-string variable is written into a larger string (JSON, as Kyverno does)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return go_number_string(value)
    return json.dumps(value, separators=(",", ":"))


def number_string(value: Any) -> str | None:
    """Kyverno's `convertNumberToString`: nil reads as "0", bools are not numbers."""
    if value is None:
        return "0"
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:f}"
    return None
