"""The generic receiver, for anything that can run a script on push (a post-receive hook,
a CI job): header `X-Gitops-Event: push`, signature `X-Gitops-Signature: sha256=<hex
HMAC-SHA256 of the raw body>`, and the body

    {"repositories": ["https://git.example.com/org/repo.git", ...],
     "changes": [{"ref": "refs/heads/main", "before": "<sha>", "after": "<sha>",
                  "files": ["optional/changed/paths"]}]}
"""

from __future__ import annotations

from webhooks.git.common import Headers, Payload, Provider, check_hmac, field, text, urls
from webhooks.git.model import Event, Malformed, PushEvent

EVENT_HEADER = "X-Gitops-Event"
SIGNATURE_HEADER = "X-Gitops-Signature"


def _detect(headers: Headers) -> bool:
    return bool(headers.get(EVENT_HEADER.lower()))


def _verify(headers: Headers, body: bytes, secret: str) -> None:
    check_hmac(headers.get(SIGNATURE_HEADER.lower(), ""), secret, body, SIGNATURE_HEADER, "sha256=")


def _delivery(_headers: Headers) -> str:
    return ""  # Idempotency-Key, which the receiver reads for every provider


def _parse(headers: Headers, payload: Payload) -> list[Event]:
    if headers.get(EVENT_HEADER.lower()) != "push":
        return []
    repos = field(payload, "repositories")
    if not isinstance(repos, list) or not urls(*repos):
        raise Malformed("payload field 'repositories' must be a non-empty list of URLs")
    changes = field(payload, "changes")
    if not isinstance(changes, list):
        raise Malformed("payload field 'changes' must be a list")
    events: list[Event] = []
    for i, change in enumerate(changes):
        files = change.get("files") if isinstance(change, dict) else None
        if files is not None and not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
            raise Malformed(f"payload field 'changes[{i}].files' must be a list of paths")
        events.append(
            PushEvent(
                "generic",
                urls(*repos),
                text(change, "ref"),
                text(change, "before"),
                text(change, "after"),
                tuple(files) if files is not None else None,
            )
        )
    return events


GENERIC = Provider("generic", _detect, _verify, _delivery, _parse)
