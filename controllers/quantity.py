"""Kubernetes resource quantities ("500m", "1Gi", "1e3"): parsing, comparison and the
canonical string form the API server prints.

Validation compares requests with limits, the scheduler sums requests against node
allocatable, and error messages quote quantities the way `resource.Quantity.String()`
does, so all three share this one parser."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Context, Decimal, localcontext

QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_SPLIT = re.compile(QUANTITY_REGEX)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_EXPONENT = re.compile(r"[eE][-+]?[0-9]+")

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exp: suffix for suffix, exp in _DECIMAL.items()}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

# Wide enough for any quantity that fits Kubernetes' own int64 / inf.Dec arithmetic.
_CTX = Context(prec=80)
_NANO = Decimal("1e-9")


class QuantityError(ValueError):
    """A string that is not a quantity; the message is the API server's."""


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of a quantity (JSON numbers are accepted, as the apiserver does).

    Values finer than 1n are rounded up, as `resource.ParseQuantity` does, so comparisons
    agree with the real API server."""
    return _parse(value)[0]


def format_quantity(value: str | int | float) -> str:
    """The canonical form Kubernetes prints: "1000m" -> "1", "1024Mi" -> "1Gi", "0.5" -> "500m"."""
    amount, fmt = _parse(value)
    return _format(amount, fmt)


def _parse(value: str | int | float) -> tuple[Decimal, str]:
    if isinstance(value, bool):
        raise QuantityError(f"quantities must match the regular expression '{QUANTITY_REGEX}'")
    text = repr(value) if isinstance(value, float) else str(value)
    m = _SPLIT.match(text)
    if not m:
        raise QuantityError(f"quantities must match the regular expression '{QUANTITY_REGEX}'")
    number, suffix = m.group(1), m.group(2)
    if not _NUMBER.fullmatch(number):
        raise QuantityError("unable to parse numeric part of quantity")
    with localcontext(_CTX):
        amount = Decimal(number)
        if suffix in _BINARY:
            amount *= Decimal(2) ** _BINARY[suffix]
            fmt = BINARY_SI
        elif suffix in _DECIMAL:
            amount = amount.scaleb(_DECIMAL[suffix])
            fmt = DECIMAL_SI
        elif _EXPONENT.fullmatch(suffix):
            amount = amount.scaleb(int(suffix[1:]))
            fmt = DECIMAL_EXPONENT
        else:
            raise QuantityError("unable to parse quantity's suffix")
        if amount != amount.quantize(_NANO, rounding=ROUND_CEILING):
            amount = amount.quantize(_NANO, rounding=ROUND_CEILING)
    return amount, fmt


def _format(amount: Decimal, fmt: str) -> str:
    if amount == 0:
        return "0"
    with localcontext(_CTX):
        if fmt == BINARY_SI and (abs(amount) < 1024 or amount != amount.to_integral_value()):
            fmt = DECIMAL_SI  # as Kubernetes does, to avoid rounding a small or fractional value
        if fmt == BINARY_SI:
            whole = int(amount)
            power = 0
            while power < len(_BINARY_SUFFIXES) - 1 and whole % 1024 == 0:
                whole //= 1024
                power += 1
            return f"{whole}{_BINARY_SUFFIXES[power]}"
        # Integer mantissa with an exponent that is a multiple of three, as large as possible.
        sign, digits, exponent = amount.normalize().as_tuple()
        assert isinstance(exponent, int)
        mantissa = int("".join(map(str, digits)))
        shift = exponent % 3
        mantissa *= 10**shift
        exponent -= shift
        text = ("-" if sign else "") + str(mantissa)
        if fmt == DECIMAL_SI and exponent in _DECIMAL_SUFFIX:
            return text + _DECIMAL_SUFFIX[exponent]
        return text + (f"e{exponent}" if exponent else "")
