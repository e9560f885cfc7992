"""GitHub's commit status API (POST /repos/:owner/:repo/statuses/:sha)."""

from __future__ import annotations

from webhooks.notify.http import request_json

# Our states (GitLab's names) as GitHub's: it has no "running".
_STATES = {"pending": "pending", "running": "pending", "success": "success", "failed": "failure", "canceled": "error"}


class GitHub:
    def __init__(self, token: str, api_url: str = "https://api.github.com") -> None:
        self.api = api_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

    def __repr__(self) -> str:
        return f"GitHub({self.api!r})"

    def commit_status(
        self, repo: str, sha: str, state: str, context: str, target_url: str = "", description: str = ""
    ) -> None:
        """`repo` is owner/name; `state` one of GitLab's names, mapped."""
        body = {"state": _STATES[state], "context": context, "description": description[:140]}
        if target_url:
            body["target_url"] = target_url
        request_json("POST", f"{self.api}/repos/{repo}/statuses/{sha}", body, self._headers)
