"""The one way notifications talk HTTP: JSON in, JSON out, errors that say whether a retry
can help. Tokens go in headers and never into a message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class DeliveryError(Exception):
    """A request failed; `retry` is False when sending it again cannot succeed (4xx but 429)."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def request_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> Any:
    """`body` is sent as JSON, or as is when already bytes (a signed body)."""
    if not url.startswith(("http://", "https://")):
        raise DeliveryError(f"{url!r} is not an http(s) URL", retry=False)
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http(s) only, checked above)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
    except urllib.error.HTTPError as err:
        detail = err.read(300).decode(errors="replace").strip()
        retry = err.code == 429 or err.code >= 500
        raise DeliveryError(f"{method} {url}: HTTP {err.code} {detail}", retry) from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DeliveryError(f"{method} {url}: {getattr(err, 'reason', err)}", True) from None
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
