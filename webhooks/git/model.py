"""What a git provider's webhook tells us, independent of the provider: the events and
the errors a receiver answers with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ZERO_SHA = "0" * 40


class WebhookError(Exception):
    """A request the receiver refuses; `status` is the HTTP status to answer with."""

    status = 400


class Malformed(WebhookError):
    """The body is not what the provider documents (400)."""


class Unauthorized(WebhookError):
    """The secret or signature is missing or wrong (401)."""

    status = 401


@dataclass(frozen=True)
class PushEvent:
    """One ref moved in one repository.

    `changed_files` is None when the payload cannot tell (no commit list, or a list the
    provider truncated): the dispatcher then asks git for `before..after`."""

    provider: str
    repo_urls: tuple[str, ...]
    ref: str
    before: str
    after: str
    changed_files: tuple[str, ...] | None = None
    default_branch: str = ""
    delivery: str = ""

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""

    @property
    def tag(self) -> str:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else ""

    @property
    def deleted(self) -> bool:
        return self.after == ZERO_SHA


@dataclass(frozen=True)
class MergeRequestEvent:
    """A merge (pull) request opened or updated: its head commit, for a diff preview."""

    provider: str
    repo_urls: tuple[str, ...]  # the target repository
    number: int  # GitLab's iid, GitHub's PR number
    project: str  # how the provider's API names the target project (GitLab id, GitHub owner/repo)
    source_branch: str
    target_branch: str
    head_sha: str
    action: str = ""
    delivery: str = ""


Event = PushEvent | MergeRequestEvent


@dataclass(frozen=True)
class WebhookSecrets:
    """The shared secret, and per-provider ones that take precedence (e.g. from the config
    file or a cluster Secret). An empty secret means the provider's requests are not
    verified. `repr` never shows them."""

    shared: str = field(default="", repr=False)
    per_provider: Mapping[str, str] = field(default_factory=dict, repr=False)

    def for_provider(self, provider: str) -> str:
        return self.per_provider.get(provider) or self.shared

    def __repr__(self) -> str:
        configured = sorted(p for p, s in self.per_provider.items() if s)
        return f"WebhookSecrets(shared={'***' if self.shared else ''!r}, per_provider={configured!r})"
