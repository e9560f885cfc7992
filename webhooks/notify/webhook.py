"""A generic JSON webhook: the event POSTed as is, signed like our generic receiver
(`X-Gitops-Signature: sha256=<HMAC of the body>`) when a secret is set."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from webhooks.notify.events import TRIGGERS
from webhooks.notify.http import request_json


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str = field(default="", repr=False)
    triggers: frozenset[str] = frozenset()  # empty: every trigger

    def __post_init__(self) -> None:
        unknown = sorted(self.triggers - set(TRIGGERS))
        if unknown:
            raise ValueError(f"webhook {self.url}: unknown trigger(s) {unknown}; known: {', '.join(TRIGGERS)}")

    def wants(self, trigger: str) -> bool:
        return not self.triggers or trigger in self.triggers

    def send(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, sort_keys=True).encode()
        headers = {"X-Gitops-Event": str(event.get("trigger", ""))}
        if self.secret:
            headers["X-Gitops-Signature"] = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        request_json("POST", self.url, body, headers)
