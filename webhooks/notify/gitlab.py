"""GitLab's API for what we tell it: commit statuses and merge-request notes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from webhooks.notify.http import request_json

STATES = ("pending", "running", "success", "failed", "canceled")


class GitLab:
    def __init__(self, base_url: str, token: str) -> None:
        self.api = base_url.rstrip("/") + "/api/v4"
        self._headers = {"PRIVATE-TOKEN": token}

    def __repr__(self) -> str:
        return f"GitLab({self.api!r})"

    def _project(self, project: str) -> str:
        """A numeric id, or a path (`group/project`) URL-encoded as GitLab accepts it."""
        return f"{self.api}/projects/{quote(project, safe='')}"

    def commit_status(
        self, project: str, sha: str, state: str, name: str, target_url: str = "", description: str = ""
    ) -> None:
        """POST /projects/:id/statuses/:sha."""
        if state not in STATES:
            raise ValueError(f"GitLab commit status state must be one of {STATES}, not {state!r}")
        body: dict[str, Any] = {"state": state, "name": name, "description": description[:255]}
        if target_url:
            body["target_url"] = target_url
        request_json("POST", f"{self._project(project)}/statuses/{sha}", body, self._headers)

    def upsert_note(self, project: str, mr_iid: int, marker: str, body: str) -> None:
        """The merge request's note that contains `marker` is edited in place, or created:
        one note per marker however often the preview changes."""
        notes_url = f"{self._project(project)}/merge_requests/{mr_iid}/notes"
        text = f"{body}\n\n{marker}"
        page = 1
        while True:
            notes = request_json("GET", f"{notes_url}?per_page=100&page={page}", None, self._headers) or []
            for note in notes:
                if marker in str(note.get("body", "")):
                    request_json("PUT", f"{notes_url}/{note['id']}", {"body": text}, self._headers)
                    return
            if len(notes) < 100:
                break
            page += 1
        request_json("POST", notes_url, {"body": text}, self._headers)
