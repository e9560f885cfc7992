"""POST /api/webhook: one endpoint for every git provider, as Argo CD's.

It answers before any work is done: the request is authenticated, parsed and handed to
`on_events`, which must only queue (the sync happens later, elsewhere). Status codes
follow what providers expect: 202 for accepted events and for authenticated ones we
ignore (GitLab disables a hook after repeated 4xx), 401 for a wrong secret, 400 for a
body that is not the provider's payload, 413 above `max_body`. A delivery seen before
(Idempotency-Key, X-Gitlab-Event-UUID, X-GitHub-Delivery...) is answered 202 and dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request

from webhooks.git import Event, WebhookError, WebhookSecrets, detect, read

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 25 * 1024 * 1024  # as Argo CD's default webhook.maxPayloadSizeMB

Observer = Callable[[str, str], None]
"""Told (provider, outcome) of every request, for gitops_webhook_requests_total."""


class DeliveryLog:
    """The delivery ids seen recently (bounded, oldest forgotten first): a provider's retry
    of a delivery we already queued must not refresh twice."""

    def __init__(self, size: int = 10_000, ttl: float = 3600.0) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.size, self.ttl = size, ttl

    def first_time(self, key: str) -> bool:
        """Records `key`; False when it was recorded within the TTL."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen < self.ttl:
                return False
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True


def webhook_blueprint(
    secrets: WebhookSecrets,
    on_events: Callable[[list[Event]], None],
    max_body: int = DEFAULT_MAX_BODY,
    observe: Observer | None = None,
    name: str = "git_webhooks",
) -> Blueprint:
    """A blueprint serving POST /api/webhook; `on_events` receives the authenticated,
    de-duplicated events of one request and must return at once."""
    bp = Blueprint(name, __name__)
    deliveries = DeliveryLog()

    def answer(provider: str, outcome: str, status: int, **body: object) -> Response:
        if observe is not None:
            observe(provider, outcome)
        resp = jsonify({"status": outcome, **body})
        resp.status_code = status
        return resp

    @bp.post("/api/webhook")
    def receive() -> Response:
        if request.content_length is not None and request.content_length > max_body:
            return answer("unknown", "too_large", 413, error=f"body larger than {max_body} bytes")
        body = request.stream.read(max_body + 1)
        if len(body) > max_body:
            return answer("unknown", "too_large", 413, error=f"body larger than {max_body} bytes")
        headers = {k.lower(): v for k, v in request.headers.items()}
        provider = detect(headers)
        if provider is None:
            return answer("unknown", "bad_request", 400, error="unknown webhook: no git provider event header")
        try:
            events = read(provider, headers, body, secrets)
        except WebhookError as exc:
            outcome = "unauthorized" if exc.status == 401 else "bad_request"
            log.info("webhook from %s refused (%d): %s", provider.name, exc.status, exc)
            return answer(provider.name, outcome, exc.status, error=str(exc))
        delivery = headers.get("idempotency-key") or provider.delivery(headers)
        if delivery and not deliveries.first_time(f"{provider.name}|{delivery}"):
            return answer(provider.name, "duplicate", 202, delivery=delivery)
        if not events:
            return answer(provider.name, "ignored", 202)
        on_events(events)
        return answer(provider.name, "accepted", 202, events=len(events))

    return bp
