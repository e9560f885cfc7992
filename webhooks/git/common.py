"""Helpers the provider parsers share: constant-time checks, field access that names the
missing field, and changed files from commit lists."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhooks.git.model import Event, Malformed, Unauthorized

Headers = Mapping[str, str]  # lower-case names
Payload = dict[str, Any]


@dataclass(frozen=True)
class Provider:
    """How to recognise, authenticate and read one provider's requests."""

    name: str
    detect: Callable[[Headers], bool]
    verify: Callable[[Headers, bytes, str], None]  # raises Unauthorized
    delivery: Callable[[Headers], str]  # the provider's id of this delivery ("" if none)
    parse: Callable[[Headers, Payload], list[Event]]  # [] for an event we ignore


def hmac_sha256(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_equal(given: str, expected: str, what: str) -> None:
    """Constant-time comparison; the message never contains either value."""
    if not given:
        raise Unauthorized(f"missing {what}")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(f"wrong {what}")


def check_hmac(given: str, secret: str, body: bytes, header: str, prefix: str = "") -> None:
    """`given` must be `prefix` + hex HMAC-SHA256 of the raw body with `secret`."""
    check_equal(given.strip().lower(), prefix + hmac_sha256(secret, body), f"signature ({header})")


def field(payload: Any, path: str) -> Any:
    """payload["a"]["b"] for "a.b", or Malformed naming the field that is missing."""
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            raise Malformed(f"payload field {path!r} is missing")
        value = value[part]
    return value


def text(payload: Any, path: str) -> str:
    value = field(payload, path)
    if not isinstance(value, str | int):
        raise Malformed(f"payload field {path!r} must be a string")
    return str(value)


def optional(payload: Any, path: str) -> Any:
    try:
        return field(payload, path)
    except Malformed:
        return None


def urls(*candidates: Any) -> tuple[str, ...]:
    """The distinct non-empty string URLs among `candidates`, in order."""
    seen: dict[str, None] = {}
    for c in candidates:
        if isinstance(c, str) and c.strip():
            seen.setdefault(c.strip(), None)
    return tuple(seen)


def files_of(commits: Any, truncated: bool) -> tuple[str, ...] | None:
    """Every added, modified or removed path of the listed commits; None when the list is
    empty or truncated (then only git knows)."""
    if truncated or not isinstance(commits, list) or not commits:
        return None
    out: dict[str, None] = {}
    for commit in commits:
        if not isinstance(commit, dict):
            raise Malformed("payload field 'commits' must be a list of objects")
        for kind in ("added", "modified", "removed"):
            for path in commit.get(kind) or []:
                if isinstance(path, str):
                    out.setdefault(path, None)
    return tuple(out)
