"""Push webhooks end to end: a real git server on loopback, the engine on the embedded
cluster, and GitLab's documented push payload posted over HTTP to POST /api/webhook
served by the production WSGI server."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from controllers.client import LocalClient
from controllers.cluster import EmbeddedCluster
from controllers.wsgi import WSGIServer
from gitops import apps
from gitops.engine import Engine
from gitops.push import SECRET_NAME, cluster_secrets, push_blueprint
from tests.conftest import SHARED, eventually
from tests.gitops.conftest import GitRepo, GitServer, running_engine

SECRET = "gl-token-1234567890"
GITLAB_PUSH = json.loads((SHARED / "fixtures" / "gitlab" / "push-hook.json").read_text())


def configmap(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: '{value}'\n"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def gitlab_push(repo: GitRepo, before: str, after: str, files: list[str], total: int | None = None) -> bytes:
    """GitLab's documented Push Hook payload, pointed at the local repository."""
    payload = copy.deepcopy(GITLAB_PUSH)
    http = repo.url()
    web = http.removesuffix(".git")
    ssh = f"git@127.0.0.1:{repo.name}.git"
    payload.update(before=before, after=after, checkout_sha=after, ref="refs/heads/main")
    payload["project"].update(
        web_url=web, git_http_url=http, git_ssh_url=ssh, homepage=web, url=ssh, ssh_url=ssh, http_url=http
    )
    payload["project"]["default_branch"] = "main"
    payload["repository"].update(url=ssh, homepage=web, git_http_url=http, git_ssh_url=ssh)
    commit = payload["commits"][-1]
    commit.update(id=after, added=[], modified=files, removed=[])
    payload["commits"] = [commit]
    payload["total_commits_count"] = 1 if total is None else total
    return json.dumps(payload).encode()


@dataclass
class Hooked:
    cluster: EmbeddedCluster
    engine: Engine
    url: str

    def create_app(self, name: str, repo: GitRepo, path: str) -> None:
        self.cluster.client.create(
            {
                "apiVersion": apps.API_VERSION,
                "kind": "Application",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "source": {"repoURL": repo.url(), "path": path, "targetRevision": "main"},
                    "destination": {"server": apps.IN_CLUSTER, "namespace": "default"},
                    "syncPolicy": {"automated": {"prune": True}},
                },
            }
        )

    def revision(self, name: str) -> str:
        app = self.cluster.client.get(apps.API_VERSION, "Application", name, "default")
        st = app.get("status") or {}
        return (
            str((st.get("sync") or {}).get("revision", "")) if (st.get("sync") or {}).get("status") == "Synced" else ""
        )

    def value(self, name: str) -> str:
        return str(self.cluster.client.get("v1", "ConfigMap", name, "default")["data"]["value"])

    def refreshes(self, name: str) -> int:
        return self.engine.push.refreshes[f"{apps.API_VERSION}|default/{name}"]

    def gitlab(self, body: bytes, token: str = SECRET, **headers: str) -> tuple[int, dict[str, Any]]:
        return post(self.url, body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token, **headers})


@pytest.fixture
def hooked(cluster: EmbeddedCluster, tmp_path: Path) -> Iterator[Hooked]:
    """The engine (no git polling) with POST /api/webhook on a real HTTP server."""
    with running_engine(cluster, tmp_path / "engine") as engine:
        app = Flask(__name__)
        app.register_blueprint(push_blueprint(engine, SECRET))
        server = WSGIServer(app, threads=32).start()
        try:
            yield Hooked(cluster, engine, server.url + "/api/webhook")
        finally:
            server.stop()


def test_gitlab_push_applies_the_new_commit_and_a_wrong_token_does_nothing(
    hooked: Hooked, git_server: GitServer
) -> None:
    repo = git_server.repo("shop")
    first = repo.commit({"web/cm.yaml": configmap("web", "1")})
    hooked.create_app("shop", repo, "web")
    eventually(lambda: hooked.revision("shop") == first, what="first revision synced")

    second = repo.commit({"web/cm.yaml": configmap("web", "2")})
    fetches = git_server.fetch_sessions("shop")
    status, body = hooked.gitlab(gitlab_push(repo, first, second, ["web/cm.yaml"]), token="wrong-token")
    assert (status, body["status"]) == (401, "unauthorized")
    status, _ = hooked.gitlab(gitlab_push(repo, first, second, ["web/cm.yaml"]), token="")
    assert status == 401
    time.sleep(1.5)
    assert hooked.revision("shop") == first and hooked.value("web") == "1"
    assert git_server.fetch_sessions("shop") == fetches  # nothing even fetched

    started = time.monotonic()
    status, body = hooked.gitlab(gitlab_push(repo, first, second, ["web/cm.yaml"]))
    assert (status, body["status"]) == (202, "accepted")
    eventually(lambda: hooked.value("web") == "2", what="configmap at the pushed commit")
    eventually(lambda: hooked.revision("shop") == second, what="app synced at the pushed commit")
    assert time.monotonic() - started < 30


def test_same_idempotency_key_twice_refreshes_once(hooked: Hooked, git_server: GitServer) -> None:
    repo = git_server.repo("idem")
    first = repo.commit({"app/cm.yaml": configmap("idem", "1")})
    hooked.create_app("idem", repo, "app")
    eventually(lambda: hooked.revision("idem") == first, what="first revision synced")
    second = repo.commit({"app/cm.yaml": configmap("idem", "2")})
    body = gitlab_push(repo, first, second, ["app/cm.yaml"])
    key = str(uuid.uuid4())
    assert hooked.gitlab(body, **{"Idempotency-Key": key})[1]["status"] == "accepted"
    assert hooked.gitlab(body, **{"Idempotency-Key": key})[1]["status"] == "duplicate"
    event_uuid = str(uuid.uuid4())  # GitLab's own delivery id de-duplicates as well
    eventually(lambda: hooked.revision("idem") == second, what="pushed commit synced")
    assert hooked.refreshes("idem") == 1
    assert hooked.gitlab(body, **{"X-Gitlab-Event-UUID": event_uuid})[1]["status"] == "accepted"
    assert hooked.gitlab(body, **{"X-Gitlab-Event-UUID": event_uuid})[1]["status"] == "duplicate"
    eventually(lambda: hooked.refreshes("idem") == 2, what="second delivery refreshed")
    time.sleep(0.5)
    assert hooked.refreshes("idem") == 2


def test_a_push_touching_one_app_path_refreshes_only_that_app(hooked: Hooked, git_server: GitServer) -> None:
    repo = git_server.repo("mono")
    first = repo.commit({"a/cm.yaml": configmap("a", "1"), "b/cm.yaml": configmap("b", "1")})
    hooked.create_app("a", repo, "a")
    hooked.create_app("b", repo, "b")
    eventually(lambda: hooked.revision("a") == first and hooked.revision("b") == first, what="both synced")

    a_version = hooked.cluster.client.get("v1", "ConfigMap", "a", "default")["metadata"]["resourceVersion"]
    second = repo.commit({"b/cm.yaml": configmap("b", "2")})
    assert hooked.gitlab(gitlab_push(repo, first, second, ["b/cm.yaml"]))[0] == 202
    eventually(lambda: hooked.revision("b") == second, what="b synced at the new commit")
    # The commit list is truncated (total_commits_count > listed): git tells what changed.
    third = repo.commit({"b/cm.yaml": configmap("b", "3")})
    assert hooked.gitlab(gitlab_push(repo, second, third, ["a/cm.yaml"], total=5))[0] == 202
    eventually(lambda: hooked.revision("b") == third, what="b synced at the third commit")
    time.sleep(1.0)
    assert (hooked.refreshes("a"), hooked.refreshes("b")) == (0, 2)
    assert hooked.value("b") == "3"
    assert hooked.cluster.client.get("v1", "ConfigMap", "a", "default")["metadata"]["resourceVersion"] == a_version


def test_a_flood_of_pushes_makes_a_few_refreshes_and_the_newest_commit_wins(
    hooked: Hooked, git_server: GitServer
) -> None:
    repo = git_server.repo("flood")
    first = repo.commit({"app/cm.yaml": configmap("flood", "0")})
    hooked.create_app("flood", repo, "app")
    eventually(lambda: hooked.revision("flood") == first, what="first revision synced")
    fetches = git_server.fetch_sessions("flood")

    head = [first]
    done = threading.Event()

    def pusher() -> None:
        n = 0
        while not done.is_set():
            n += 1
            head.append(repo.commit({"app/cm.yaml": configmap("flood", str(n))}, f"commit {n}"))

    thread = threading.Thread(target=pusher)
    thread.start()
    statuses = []
    start = time.monotonic()
    try:
        for i in range(200):
            time.sleep(max(0.0, start + i * 0.01 - time.monotonic()))
            statuses.append(
                hooked.gitlab(gitlab_push(repo, head[-2] if len(head) > 1 else first, head[-1], ["app/cm.yaml"]))[0]
            )
    finally:
        done.set()
        thread.join()
    newest = head[-1]
    statuses.append(hooked.gitlab(gitlab_push(repo, head[-2], newest, ["app/cm.yaml"]))[0])
    elapsed = time.monotonic() - start
    assert statuses == [202] * 201
    value = str(len(head) - 1)
    eventually(lambda: hooked.revision("flood") == newest, what="the newest commit synced")
    assert hooked.value("flood") == value
    refreshes = hooked.refreshes("flood")
    print(f"{len(statuses)} webhooks, {len(head) - 1} commits in {elapsed:.1f}s: {refreshes} refreshes, "
          f"{git_server.fetch_sessions('flood') - fetches} fetches")  # fmt: skip
    assert refreshes <= 2 + elapsed  # one per max_wait (1 s) of the flood, plus the last
    assert git_server.fetch_sessions("flood") - fetches <= 2 + elapsed


def test_per_provider_secrets_from_a_cluster_secret(hooked: Hooked) -> None:
    """`webhook.<provider>.secret` keys of the Secret gitops-webhook take precedence over the
    shared secret for their provider; none of them is ever echoed back."""
    client = hooked.cluster.client
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET_NAME, "namespace": "default"},
            "stringData": {"webhook.github.secret": "gh-only-secret"},
        }
    )
    secrets = cluster_secrets(LocalClient(hooked.cluster.api), "default", shared=SECRET)
    app = Flask(__name__)
    app.register_blueprint(push_blueprint(hooked.engine, secrets))
    server = WSGIServer(app, threads=4).start()
    try:
        body = json.dumps({"zen": "hello"}).encode()
        for key, expected in (("gh-only-secret", 202), (SECRET, 401)):
            sig = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
            status, answer = post(
                server.url + "/api/webhook", body, {"X-GitHub-Event": "ping", "X-Hub-Signature-256": sig}
            )
            assert status == expected and "gh-only-secret" not in json.dumps(answer)
        status, _ = post(server.url + "/api/webhook", b"{}", {"X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": SECRET})
        assert status == 202  # other providers keep the shared secret
    finally:
        server.stop()
