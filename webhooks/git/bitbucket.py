"""Bitbucket Cloud (X-Event-Key repo:push, pullrequest:*) and Bitbucket Server / Data
Center (repo:refs_changed, pr:*). Both sign with X-Hub-Signature (`sha256=` + HMAC of the
raw body); Cloud hooks without a secret are matched by their X-Hook-UUID instead.
Neither lists changed files: the dispatcher asks git."""

from __future__ import annotations

from typing import Any

from webhooks.git.common import Headers, Payload, Provider, check_equal, check_hmac, field, text, urls
from webhooks.git.model import ZERO_SHA, Event, Malformed, MergeRequestEvent, PushEvent


def _verify(headers: Headers, body: bytes, secret: str) -> None:
    signature = headers.get("x-hub-signature", "")
    if signature or "x-hook-uuid" not in headers:
        check_hmac(signature, secret, body, "X-Hub-Signature", "sha256=")
    else:
        check_equal(headers.get("x-hook-uuid", ""), secret, "hook UUID (X-Hook-UUID)")


# -------------------------------------------------------------------------- Cloud
def _cloud_detect(headers: Headers) -> bool:
    return bool(headers.get("x-event-key")) and bool(headers.get("x-hook-uuid") or headers.get("x-request-uuid"))


def _cloud_delivery(headers: Headers) -> str:
    return headers.get("x-request-uuid", "")


def _cloud_urls(repo: Payload) -> tuple[str, ...]:
    full_name = text(repo, "full_name")
    html = ((repo.get("links") or {}).get("html") or {}).get("href")
    return urls(html, f"https://bitbucket.org/{full_name}.git", f"git@bitbucket.org:{full_name}.git")


def _ref(side: Any) -> tuple[str, str]:
    """(full ref, commit) of one side of a Bitbucket Cloud change; None side = no ref."""
    if not isinstance(side, dict):
        return "", ZERO_SHA
    prefix = "refs/tags/" if side.get("type") == "tag" else "refs/heads/"
    return prefix + text(side, "name"), text(side, "target.hash")


def _cloud_parse(headers: Headers, payload: Payload) -> list[Event]:
    kind = headers.get("x-event-key", "")
    delivery = _cloud_delivery(headers)
    if kind == "repo:push":
        repo_urls = _cloud_urls(field(payload, "repository"))
        events: list[Event] = []
        for change in field(payload, "push.changes"):
            new_ref, after = _ref(change.get("new"))
            old_ref, before = _ref(change.get("old"))
            if not (new_ref or old_ref):
                raise Malformed("payload field 'push.changes[].new' is missing")
            events.append(PushEvent("bitbucket", repo_urls, new_ref or old_ref, before, after, None, "", delivery))
        return events
    if kind in ("pullrequest:created", "pullrequest:updated"):
        pr = field(payload, "pullrequest")
        repo = field(payload, "repository")
        return [
            MergeRequestEvent(
                "bitbucket",
                _cloud_urls(repo),
                int(text(pr, "id")),
                text(repo, "full_name"),
                text(pr, "source.branch.name"),
                text(pr, "destination.branch.name"),
                text(pr, "source.commit.hash"),
                kind.partition(":")[2],
                delivery,
            )
        ]
    return []


BITBUCKET = Provider("bitbucket", _cloud_detect, _verify, _cloud_delivery, _cloud_parse)


# -------------------------------------------------------------------------- Server
def _server_detect(headers: Headers) -> bool:
    return bool(headers.get("x-event-key")) and bool(headers.get("x-request-id"))


def _server_delivery(headers: Headers) -> str:
    return headers.get("x-request-id", "")


def _server_urls(repo: Payload) -> tuple[str, ...]:
    links = repo.get("links") or {}
    found = [
        link.get("href") for group in ("clone", "self") for link in links.get(group) or [] if isinstance(link, dict)
    ]
    if not found:
        raise Malformed("payload field 'repository.links.clone' is missing")
    return urls(*found)


def _server_parse(headers: Headers, payload: Payload) -> list[Event]:
    kind = headers.get("x-event-key", "")
    delivery = _server_delivery(headers)
    if kind in ("repo:refs_changed", "repo:push"):
        repo_urls = _server_urls(field(payload, "repository"))
        return [
            PushEvent(
                "bitbucket-server",
                repo_urls,
                text(change, "ref.id"),
                text(change, "fromHash"),
                text(change, "toHash"),
                None,
                "",
                delivery,
            )
            for change in field(payload, "changes")
        ]
    if kind in ("pr:opened", "pr:from_ref_updated"):
        pr = field(payload, "pullRequest")
        target = field(pr, "toRef.repository")
        return [
            MergeRequestEvent(
                "bitbucket-server",
                _server_urls(target),
                int(text(pr, "id")),
                f"{text(target, 'project.key')}/{text(target, 'slug')}",
                text(pr, "fromRef.displayId"),
                text(pr, "toRef.displayId"),
                text(pr, "fromRef.latestCommit"),
                kind.partition(":")[2],
                delivery,
            )
        ]
    return []  # diagnostics:ping and the rest


BITBUCKET_SERVER = Provider("bitbucket-server", _server_detect, _verify, _server_delivery, _server_parse)
