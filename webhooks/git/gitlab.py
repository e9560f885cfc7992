"""GitLab: Push Hook, Tag Push Hook and Merge Request Hook, authenticated by the
X-Gitlab-Token header (the hook's secret token, sent as is)."""

from __future__ import annotations

from webhooks.git.common import Headers, Payload, Provider, check_equal, field, files_of, optional, text, urls
from webhooks.git.model import Event, Malformed, MergeRequestEvent, PushEvent


def _detect(headers: Headers) -> bool:
    return bool(headers.get("x-gitlab-event"))


def _verify(headers: Headers, _body: bytes, secret: str) -> None:
    check_equal(headers.get("x-gitlab-token", ""), secret, "token (X-Gitlab-Token)")


def _delivery(headers: Headers) -> str:
    return headers.get("x-gitlab-event-uuid", "")


def _project_urls(project: Payload) -> tuple[str, ...]:
    return urls(*(project.get(k) for k in ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url")))


def _parse(headers: Headers, payload: Payload) -> list[Event]:
    kind = headers.get("x-gitlab-event", "")
    delivery = _delivery(headers)
    if kind in ("Push Hook", "Tag Push Hook"):
        project = optional(payload, "project") or {}
        repository = optional(payload, "repository") or {}
        repo_urls = _project_urls(project) + _project_urls(repository)
        if not repo_urls:
            raise Malformed("payload field 'project.git_http_url' is missing")
        commits = payload.get("commits")
        total = payload.get("total_commits_count")
        truncated = isinstance(total, int) and isinstance(commits, list) and total > len(commits)
        return [
            PushEvent(
                "gitlab",
                repo_urls,
                text(payload, "ref"),
                text(payload, "before"),
                text(payload, "after"),
                files_of(commits, truncated),
                str(project.get("default_branch") or ""),
                delivery,
            )
        ]
    if kind == "Merge Request Hook":
        attrs = field(payload, "object_attributes")
        project = field(payload, "project")
        if attrs.get("state") not in (None, "opened", "reopened"):
            return []  # merged or closed: nothing to preview
        return [
            MergeRequestEvent(
                "gitlab",
                _project_urls(project),
                int(text(attrs, "iid")),
                text(project, "id"),
                text(attrs, "source_branch"),
                text(attrs, "target_branch"),
                text(attrs, "last_commit.id"),
                str(attrs.get("action") or ""),
                delivery,
            )
        ]
    return []


GITLAB = Provider("gitlab", _detect, _verify, _delivery, _parse)
