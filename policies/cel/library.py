"""The CEL functions Kubernetes (and Kyverno) add to the CEL standard library.

The evaluator dispatches a function by name only, with a method call's receiver as the
first argument, so each name here accepts every receiver type its Kubernetes overloads
do (`indexOf` on strings and lists, `compareTo` on quantities and semvers, ...).

Values of Kubernetes' extra CEL types (Quantity, URL, IP, CIDR, Semver, Image) travel
through the evaluator as one-key maps tagged with their type (`{"__quantity__": "1Gi"}`),
so they pass through comprehensions and variables untouched and the functions below can
recognise them."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cel.stdlib import STDLIB_FUNCTIONS

from controllers.quantity import QuantityError, format_quantity, parse_quantity

# The evaluator logs every exception a function raises; for policies those are ordinary
# evaluation errors, reported as results, so the log would only be noise.
logging.getLogger("cel").setLevel(logging.CRITICAL)

Fn = Callable[..., Any]

_QUANTITY, _URL, _IP, _CIDR, _SEMVER, _IMAGE = (
    "__quantity__",
    "__url__",
    "__ip__",
    "__cidr__",
    "__semver__",
    "__image__",
)


def _tagged(value: Any, tag: str) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and tag in value:
        return str(value[tag])
    return None


def _expect(value: Any, tag: str, what: str) -> str:
    text = _tagged(value, tag)
    if text is None:
        raise TypeError(f"no such overload: expected a {what}, got {type(value).__name__}")
    return text


# --- strings, lists --------------------------------------------------------------------


def string(value: Any) -> str:
    """CEL `string()`, extended to bool, null and Kubernetes' extra types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in (_QUANTITY, _URL, _IP, _CIDR, _SEMVER, _IMAGE):
            return str(value[key])
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def index_of(receiver: Any, item: Any, offset: int = 0) -> int:
    if isinstance(receiver, list):
        return next((i for i, x in enumerate(receiver) if x == item), -1)
    if offset < 0 or offset > len(receiver):
        raise IndexError(f"index out of range: {offset}")
    return int(receiver.find(item, offset))


def last_index_of(receiver: Any, item: Any, offset: int | None = None) -> int:
    if isinstance(receiver, list):
        return next((i for i in range(len(receiver) - 1, -1, -1) if receiver[i] == item), -1)
    if offset is None:
        return int(receiver.rfind(item))
    if offset < 0 or offset > len(receiver):
        raise IndexError(f"index out of range: {offset}")
    return int(receiver.rfind(item, 0, offset + len(item)))


def is_sorted(items: list[Any]) -> bool:
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def find(text: str, pattern: str) -> str:
    m = _regex(pattern).search(text)
    return m.group(0) if m else ""


def find_all(text: str, pattern: str, limit: int = -1) -> list[str]:
    found = [m.group(0) for m in _regex(pattern).finditer(text)]
    return found if limit < 0 else found[:limit]


_VERB = re.compile(r"%(?:%|(\.\d+)?([sdfeExXob]))")


def format_(template: str, args: list[Any]) -> str:
    """`"...%s...".format([args])` with cel-go's verbs (%s %d %f %e %x %X %o %b)."""
    values = iter(args)

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        try:
            value = next(values)
        except StopIteration:
            raise ValueError(f"format: not enough arguments for {template!r}") from None
        precision, verb = m.group(1), m.group(2)
        if verb == "s":
            return string(value)
        if verb == "d":
            return str(int(value))
        if verb in "fe" or verb == "E":
            return f"{float(value):{precision or '.6'}{verb}}"
        if isinstance(value, str):
            value = int.from_bytes(value.encode(), "big") if verb in "xX" else value
        return format(value, verb)

    return _VERB.sub(one, template)


# --- quantity --------------------------------------------------------------------------


def quantity(text: str) -> dict[str, str]:
    try:
        parse_quantity(text)
    except QuantityError as e:
        raise ValueError(f"quantity({text!r}): {e}") from None
    return {_QUANTITY: text}


def is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except (QuantityError, TypeError):
        return False
    return True


def _amount(value: Any) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return parse_quantity(_expect(value, _QUANTITY, "quantity"))


def _from_amount(amount: Decimal) -> dict[str, str]:
    return {_QUANTITY: format_quantity(format(amount.normalize(), "f"))}


def quantity_add(a: Any, b: Any) -> dict[str, str]:
    return _from_amount(_amount(a) + _amount(b))


def quantity_sub(a: Any, b: Any) -> dict[str, str]:
    return _from_amount(_amount(a) - _amount(b))


def as_integer(value: Any) -> int:
    amount = _amount(value)
    if amount != amount.to_integral_value() or not -(2**63) <= amount < 2**63:
        raise ValueError(f"cannot convert value to integer: {string(value)}")
    return int(amount)


def is_integer(value: Any) -> bool:
    amount = _amount(value)
    return amount == amount.to_integral_value() and -(2**63) <= amount < 2**63


# --- semver ----------------------------------------------------------------------------

_SEMVER_RE = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def semver(text: str) -> dict[str, str]:
    if not _SEMVER_RE.match(text):
        raise ValueError(f"semver({text!r}): not a semantic version")
    return {_SEMVER: text}


def _semver_key(value: Any) -> tuple[Any, ...]:
    m = _SEMVER_RE.match(_expect(value, _SEMVER, "semver"))
    assert m is not None
    pre = m.group(4)
    pre_key: tuple[Any, ...] = (
        (1,) if pre is None else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    )
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), pre_key)


def _version_part(index: int) -> Fn:
    return lambda value: _semver_key(value)[index]


# --- comparisons shared by quantity and semver -----------------------------------------


def compare_to(a: Any, b: Any) -> int:
    if _tagged(a, _SEMVER) is not None:
        ka, kb = _semver_key(a), _semver_key(b)
        return (ka > kb) - (ka < kb)
    da, db = _amount(a), _amount(b)
    return (da > db) - (da < db)


def sign(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (value > 0) - (value < 0)
    amount = _amount(value)
    return (amount > 0) - (amount < 0)


# --- url -------------------------------------------------------------------------------


def _parse_url(text: str) -> Any:
    parts = urlsplit(text)
    if not (parts.scheme and parts.netloc) and not text.startswith("/"):
        raise ValueError(f"url({text!r}): must be an absolute URI or an absolute path")
    return parts


def url(text: str) -> dict[str, str]:
    _parse_url(text)
    return {_URL: text}


def is_url(text: str) -> bool:
    try:
        _parse_url(text)
    except ValueError:
        return False
    return True


def _url_part(part: str) -> Fn:
    def get(value: Any) -> Any:
        parts = urlsplit(_expect(value, _URL, "URL"))
        if part == "host":
            return parts.netloc.rpartition("@")[2]
        if part == "hostname":
            host = parts.netloc.rpartition("@")[2]
            if host.startswith("["):
                return host[1 : host.index("]")]
            return host.rpartition(":")[0] if ":" in host else host
        if part == "port":
            host = parts.netloc.rpartition("@")[2]
            tail = host.rpartition("]")[2] if host.startswith("[") else host
            return tail.rpartition(":")[2] if ":" in tail else ""
        if part == "query":
            return parse_qs(parts.query, keep_blank_values=True)
        return getattr(parts, part)

    return get


# --- ip / cidr -------------------------------------------------------------------------


def _strict_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:
        raise ValueError(f"ip({text!r}): zones are not allowed")
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise ValueError(f"ip({text!r}): IPv4-mapped IPv6 addresses are not allowed")
    return addr


def ip(value: Any) -> dict[str, str]:
    cidr_text = _tagged(value, _CIDR)
    if cidr_text is not None:  # cidr.ip(): the address part of the prefix
        return {_IP: cidr_text.partition("/")[0]}
    _strict_ip(value)
    return {_IP: value}


def is_ip(text: str) -> bool:
    try:
        _strict_ip(text)
    except ValueError:
        return False
    return True


def ip_is_canonical(text: str) -> bool:
    return str(_strict_ip(text)) == text


def _ip_of(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return _strict_ip(value if isinstance(value, str) else _expect(value, _IP, "IP"))


def _ip_predicate(test: Callable[[Any], bool]) -> Fn:
    return lambda value: test(_ip_of(value))


def cidr(text: str) -> dict[str, str]:
    ipaddress.ip_interface(text)
    if "/" not in text:
        raise ValueError(f"cidr({text!r}): a prefix length is required")
    return {_CIDR: text}


def is_cidr(text: str) -> bool:
    try:
        cidr(text)
    except ValueError:
        return False
    return True


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = value if isinstance(value, str) else _expect(value, _CIDR, "CIDR")
    return ipaddress.ip_interface(text).network


def contains_ip(net: Any, addr: Any) -> bool:
    return _ip_of(addr) in _network(net)


def contains_cidr(net: Any, other: Any) -> bool:
    inner = _network(other)
    outer = _network(net)
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def masked(net: Any) -> dict[str, str]:
    return {_CIDR: str(_network(net))}


def prefix_length(net: Any) -> int:
    return _network(net).prefixlen


# --- image (Kyverno) -------------------------------------------------------------------

_IMAGE_RE = re.compile(
    r"^(?:(?P<reg>[^/]+\.[^/]+|[^/]+:\d+|localhost)/)?(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>.+))?$"
)


def image(text: str) -> dict[str, str]:
    if not _IMAGE_RE.match(text):
        raise ValueError(f"image({text!r}): not an image reference")
    return {_IMAGE: text}


def is_image(text: str) -> bool:
    return bool(_IMAGE_RE.match(text))


def _image_part(part: str) -> Fn:
    def get(value: Any) -> str:
        m = _IMAGE_RE.match(_expect(value, _IMAGE, "image"))
        assert m is not None
        registry = m.group("reg") or "docker.io"
        repo = m.group("repo")
        if part == "registry":
            return registry
        if part == "repository":
            return f"library/{repo}" if registry == "docker.io" and "/" not in repo else repo
        if part == "tag":
            return m.group("tag") or ("" if m.group("digest") else "latest")
        if part == "digest":
            return m.group("digest") or ""
        return m.group("digest") or m.group("tag") or "latest"  # identifier

    return get


# --- the table -------------------------------------------------------------------------


FUNCTIONS: dict[str, Fn] = {
    **{k: v for k, v in STDLIB_FUNCTIONS.items() if k != "contains"},  # native contains is faster
    "string": string,
    "indexOf": index_of,
    "lastIndexOf": last_index_of,
    "isSorted": is_sorted,
    "find": find,
    "findAll": find_all,
    "format": format_,
    "quantity": quantity,
    "isQuantity": is_quantity,
    "add": quantity_add,
    "sub": quantity_sub,
    "asInteger": as_integer,
    "asApproximateFloat": lambda value: float(_amount(value)),
    "isInteger": is_integer,
    "isGreaterThan": lambda a, b: compare_to(a, b) > 0,
    "isLessThan": lambda a, b: compare_to(a, b) < 0,
    "compareTo": compare_to,
    "sign": sign,
    "semver": semver,
    "isSemver": lambda text: bool(_SEMVER_RE.match(text)),
    "major": _version_part(0),
    "minor": _version_part(1),
    "patch": _version_part(2),
    "url": url,
    "isURL": is_url,
    "getScheme": _url_part("scheme"),
    "getHost": _url_part("host"),
    "getHostname": _url_part("hostname"),
    "getPort": _url_part("port"),
    "getEscapedPath": _url_part("path"),
    "getQuery": _url_part("query"),
    "ip": ip,
    "isIP": is_ip,
    "ip.isCanonical": ip_is_canonical,
    "family": lambda value: _ip_of(value).version,
    "isUnspecified": _ip_predicate(lambda a: a.is_unspecified),
    "isLoopback": _ip_predicate(lambda a: a.is_loopback),
    "isLinkLocalMulticast": _ip_predicate(lambda a: a.is_multicast and a.is_link_local),
    "isLinkLocalUnicast": _ip_predicate(lambda a: a.is_link_local and not a.is_multicast),
    "isGlobalUnicast": _ip_predicate(
        lambda a: (
            not (a.is_unspecified or a.is_loopback or a.is_multicast or a.is_link_local)
            and a != ipaddress.IPv4Address("255.255.255.255")
        )
    ),
    "cidr": cidr,
    "isCIDR": is_cidr,
    "containsIP": contains_ip,
    "containsCIDR": contains_cidr,
    "masked": masked,
    "prefixLength": prefix_length,
    "image": image,
    "isImage": is_image,
    "registry": _image_part("registry"),
    "repository": _image_part("repository"),
    "tag": _image_part("tag"),
    "digest": _image_part("digest"),
    "identifier": _image_part("identifier"),
    "json.unmarshal": json.loads,
}
