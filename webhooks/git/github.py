"""GitHub (push, ping, pull_request; X-Hub-Signature-256) and the services that copy its
payloads: Gitea (X-Gitea-Signature) and Gogs (X-Gogs-Signature), both a bare hex
HMAC-SHA256 of the raw body. Gitea also sends GitHub's and Gogs' event headers, so it is
recognised first."""

from __future__ import annotations

from collections.abc import Callable

from webhooks.git.common import Headers, Payload, Provider, check_hmac, field, files_of, text, urls
from webhooks.git.model import Event, MergeRequestEvent, PushEvent

# GitHub lists at most this many commits in a push payload; a full list may be truncated.
_GITHUB_MAX_COMMITS = 2048


def _repo_urls(repo: Payload) -> tuple[str, ...]:
    return urls(*(repo.get(k) for k in ("clone_url", "ssh_url", "html_url", "git_url", "url")))


def _make(name: str, event_header: str, signature_header: str, prefix: str, delivery_header: str) -> Provider:
    def detect(headers: Headers) -> bool:
        return bool(headers.get(event_header))

    def verify(headers: Headers, body: bytes, secret: str) -> None:
        check_hmac(headers.get(signature_header, ""), secret, body, signature_header, prefix)

    def delivery(headers: Headers) -> str:
        return headers.get(delivery_header, "")

    return Provider(name, detect, verify, delivery, _parser(name, event_header, delivery))


def _parser(
    name: str, event_header: str, delivery: Callable[[Headers], str]
) -> Callable[[Headers, Payload], list[Event]]:
    def parse(headers: Headers, payload: Payload) -> list[Event]:
        kind = headers.get(event_header, "")
        if kind == "push":
            repo = field(payload, "repository")
            commits = payload.get("commits")
            total = payload.get("total_commits")  # Gitea and Gogs tell; GitHub does not
            listed = len(commits) if isinstance(commits, list) else 0
            truncated = (isinstance(total, int) and total > listed) or listed >= _GITHUB_MAX_COMMITS
            return [
                PushEvent(
                    name,
                    _repo_urls(repo),
                    text(payload, "ref"),
                    text(payload, "before"),
                    text(payload, "after"),
                    files_of(commits, truncated),
                    str(repo.get("default_branch") or ""),
                    delivery(headers),
                )
            ]
        if kind == "pull_request":
            if payload.get("action") not in ("opened", "reopened", "synchronize", "synchronized", "edited"):
                return []
            pr = field(payload, "pull_request")
            base_repo = field(pr, "base.repo")
            return [
                MergeRequestEvent(
                    name,
                    _repo_urls(base_repo),
                    int(text(payload, "number")),
                    text(base_repo, "full_name"),
                    text(pr, "head.ref"),
                    text(pr, "base.ref"),
                    text(pr, "head.sha"),
                    str(payload.get("action")),
                    delivery(headers),
                )
            ]
        return []  # ping and every other event: authenticated, nothing to do

    return parse


GITEA = _make("gitea", "x-gitea-event", "x-gitea-signature", "", "x-gitea-delivery")
GOGS = _make("gogs", "x-gogs-event", "x-gogs-signature", "", "x-gogs-delivery")
GITHUB = _make("github", "x-github-event", "x-hub-signature-256", "sha256=", "x-github-delivery")
