"""Notifications out, against a small local HTTP server that records the calls (a stand-in
for GitLab's API and for a webhook receiver): commit statuses as an app syncs, triggers
once per revision, retries after errors, and the merge-request preview note upserted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gitops import apps
from gitops.notifier import AppNotifier, NotifySettings
from tests.conftest import eventually
from tests.gitops import test_push
from tests.gitops.conftest import GitRepo, GitServer
from tests.gitops.test_push import Hooked, configmap, post
from webhooks.notify import DeliveryWorker, GitLab, Webhook

hooked = test_push.hooked  # the engine with POST /api/webhook on a real HTTP server

TOKEN = "glpat-test-token"


class Recorder(ThreadingHTTPServer):
    """Records every request; serves merge-request notes like GitLab; answers 503 to the
    first `failures` requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[tuple[str, str, dict[str, str], Any]] = []
        self.notes: dict[int, dict[str, Any]] = {}
        self.failures = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def posted(self, prefix: str) -> list[Any]:
        with self.lock:
            return [body for method, path, _, body in self.calls if method == "POST" and path.startswith(prefix)]


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        srv = self.server
        with srv.lock:
            if srv.failures > 0:
                srv.failures -= 1
                self._reply(503, {"message": "try later"})
                return
            srv.calls.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            path = self.path.partition("?")[0]
            if path.endswith("/notes") and self.command == "GET":
                self._reply(200, list(srv.notes.values()))
            elif path.endswith("/notes") and self.command == "POST":
                note = {"id": len(srv.notes) + 1, "body": body["body"]}
                srv.notes[note["id"]] = note
                self._reply(201, note)
            elif "/notes/" in path and self.command == "PUT":
                srv.notes[int(path.rsplit("/", 1)[1])]["body"] = body["body"]
                self._reply(200, srv.notes[int(path.rsplit("/", 1)[1])])
            else:
                self._reply(201, {"ok": True})

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    srv = Recorder()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def notifier(hooked: Hooked, recorder: Recorder) -> Iterator[AppNotifier]:
    settings = NotifySettings(
        dashboard_url="http://gitops.example/",
        gitlab=GitLab(recorder.url, TOKEN),
        webhooks=[Webhook(recorder.url + "/hook", secret="hook-secret")],
    )
    engine = hooked.engine
    n = AppNotifier(engine.informers, settings, DeliveryWorker(base_delay=0.1)).start()
    engine.push.merge_request_handlers.append(n.preview_merge_request(engine.client, engine.repos, engine.renderer))
    try:
        yield n
    finally:
        n.stop()


def create_app(hooked: Hooked, name: str, repo: GitRepo) -> None:
    hooked.cluster.client.create(
        {
            "apiVersion": apps.API_VERSION,
            "kind": "Application",
            "metadata": {"name": name, "namespace": "default", "annotations": {"gitops.dev/gitlab-project": "15"}},
            "spec": {
                "source": {"repoURL": repo.url(), "path": "app", "targetRevision": "main"},
                "destination": {"server": apps.IN_CLUSTER, "namespace": "default"},
                "syncPolicy": {"automated": {}},
            },
        }
    )


def test_commit_status_and_triggers_follow_the_sync(
    hooked: Hooked, notifier: AppNotifier, recorder: Recorder, git_server: GitServer
) -> None:
    repo = git_server.repo("notified")
    first = repo.commit({"app/cm.yaml": configmap("notified", "1")})
    create_app(hooked, "notified", repo)
    statuses = f"/api/v4/projects/15/statuses/{first}"
    eventually(lambda: [b["state"] for b in recorder.posted(statuses)][-1:] == ["success"], what="success status")
    sent = recorder.posted(statuses)
    states = [b["state"] for b in sent]
    order = ["pending", "running", "success"]  # a newer state supersedes one not yet delivered
    assert states[0] != "success" and states == sorted(set(states), key=order.index), states
    assert {b["name"] for b in sent} == {"gitops/notified"}
    assert {b["target_url"] for b in sent} == {"http://gitops.example/apps/default/notified"}
    headers = next(h for m, p, h, _ in recorder.calls if p == statuses)
    assert headers["private-token"] == TOKEN

    hooks = lambda: [b["trigger"] for b in recorder.posted("/hook") if b["revision"] == first]  # noqa: E731
    eventually(lambda: {"on-sync-running", "on-sync-succeeded", "on-deployed"} <= set(hooks()), what="triggers")
    # A refresh with nothing new sends nothing again: once per revision, status unchanged.
    calls = len(recorder.calls)
    hooked.engine.controller.refresh(f"{apps.API_VERSION}|default/notified")
    eventually(lambda: hooked.engine.push.controller.controller.queue.depth() == 0)
    threading.Event().wait(1.0)
    assert len(recorder.calls) == calls
    assert sorted(hooks()) == sorted(set(hooks()))

    # A commit that cannot be applied: failed status and on-sync-failed for that revision,
    # delivered although the service first answers 503 (retried with back-off).
    recorder.failures = 3
    bad = repo.commit({"app/cm.yaml": configmap("Not_A_Valid_Name", "2")})
    hooked.engine.controller.refresh(f"{apps.API_VERSION}|default/notified")
    eventually(
        lambda: "failed" in [b["state"] for b in recorder.posted(f"/api/v4/projects/15/statuses/{bad}")],
        what="failed status",
    )
    eventually(lambda: any(b["trigger"] == "on-sync-failed" and b["revision"] == bad for b in recorder.posted("/hook")))


def merge_request_hook(repo: GitRepo, iid: int, head: str) -> bytes:
    """GitLab's Merge Request Hook (the fields the engine reads, as documented)."""
    http = repo.url()
    project = {"id": 15, "web_url": http.removesuffix(".git"), "git_http_url": http, "default_branch": "main"}
    return json.dumps(
        {
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "project": project,
            "object_attributes": {
                "iid": iid,
                "source_branch": "feature",
                "target_branch": "main",
                "state": "opened",
                "action": "update",
                "last_commit": {"id": head},
                "source": project,
                "target": project,
            },
        }
    ).encode()


def test_merge_request_note_is_upserted(
    hooked: Hooked, notifier: AppNotifier, recorder: Recorder, git_server: GitServer
) -> None:
    repo = git_server.repo("preview")
    first = repo.commit({"app/cm.yaml": configmap("preview", "1")})
    create_app(hooked, "preview", repo)
    eventually(lambda: hooked.revision("preview") == first, what="synced")

    head = repo.commit({"app/cm.yaml": configmap("preview", "from-the-branch")}, branch="feature")
    headers = {"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": test_push.SECRET}
    assert post(hooked.url, merge_request_hook(repo, 7, head), headers)[0] == 202
    eventually(lambda: len(recorder.notes) == 1, what="a note")
    eventually(lambda: "from-the-branch" in recorder.notes[1]["body"], what="the diff in the note")

    head2 = repo.commit({"app/cm.yaml": configmap("preview", "second-push")}, branch="feature")
    assert post(hooked.url, merge_request_hook(repo, 7, head2), headers)[0] == 202
    eventually(lambda: "second-push" in recorder.notes[1]["body"], what="the note edited in place")
    assert len(recorder.notes) == 1
    assert [m for m, p, _, _ in recorder.calls if "/merge_requests/7/notes" in p].count("PUT") == 1
    assert hooked.value("preview") == "1"  # a preview applies nothing
