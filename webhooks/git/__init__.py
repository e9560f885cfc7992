"""Git-provider push events in: recognise the provider from the headers, authenticate the
raw body, and read the payload into provider-neutral events."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from webhooks.git.bitbucket import BITBUCKET, BITBUCKET_SERVER
from webhooks.git.common import Provider
from webhooks.git.generic import GENERIC
from webhooks.git.github import GITEA, GITHUB, GOGS
from webhooks.git.gitlab import GITLAB
from webhooks.git.model import (
    ZERO_SHA,
    Event,
    Malformed,
    MergeRequestEvent,
    PushEvent,
    Unauthorized,
    WebhookError,
    WebhookSecrets,
)
from webhooks.git.urls import repo_key

__all__ = [
    "PROVIDERS",
    "ZERO_SHA",
    "Event",
    "Malformed",
    "MergeRequestEvent",
    "Provider",
    "PushEvent",
    "Unauthorized",
    "WebhookError",
    "WebhookSecrets",
    "detect",
    "read",
    "repo_key",
]

# Order matters: Gitea also sends Gogs' and GitHub's event headers.
PROVIDERS: tuple[Provider, ...] = (GENERIC, GITLAB, GITEA, GOGS, GITHUB, BITBUCKET, BITBUCKET_SERVER)


def detect(headers: Mapping[str, str]) -> Provider | None:
    """The provider that sent a request with these (lower-case) headers."""
    return next((p for p in PROVIDERS if p.detect(headers)), None)


def read(provider: Provider, headers: Mapping[str, str], body: bytes, secrets: WebhookSecrets) -> list[Event]:
    """Authenticate, then parse; raises Unauthorized or Malformed. An empty secret for the
    provider means its requests are taken unauthenticated."""
    secret = secrets.for_provider(provider.name)
    if secret:
        provider.verify(headers, body, secret)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise Malformed("body must be a JSON object")
    try:
        return provider.parse(headers, payload)
    except (TypeError, ValueError, AttributeError) as exc:
        raise Malformed(f"unexpected {provider.name} payload: {exc}") from None
