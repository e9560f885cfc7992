"""POST /api/webhook over real HTTP for every provider: detection from the headers,
authentication of the raw body, the status codes providers expect, and the events read."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from controllers.wsgi import WSGIServer
from tests.conftest import SHARED
from webhooks.git import Event, MergeRequestEvent, PushEvent, WebhookSecrets, repo_key
from webhooks.receiver import webhook_blueprint

SECRET = "s3cret-for-hooks"
SHA1, SHA2 = "a" * 40, "b" * 40


class Receiver:
    def __init__(self, url: str, events: list[Event], outcomes: list[tuple[str, str]]) -> None:
        self.url, self.events, self.outcomes = url, events, outcomes

    def post(self, body: bytes | dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json", **headers})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    events: list[Event] = []
    outcomes: list[tuple[str, str]] = []
    app = Flask(__name__)
    secrets = WebhookSecrets(SECRET, {"bitbucket": "{hook-uuid-1234}"})
    bp = webhook_blueprint(secrets, events.extend, max_body=64 * 1024, observe=lambda p, o: outcomes.append((p, o)))
    app.register_blueprint(bp)
    server = WSGIServer(app, threads=8).start()
    try:
        yield Receiver(server.url + "/api/webhook", events, outcomes)
    finally:
        server.stop()


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_push() -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/feature/x",
            "before": SHA1,
            "after": SHA2,
            "repository": {
                "full_name": "Org/Repo",
                "clone_url": "https://github.com/Org/Repo.git",
                "ssh_url": "git@github.com:Org/Repo.git",
                "html_url": "https://github.com/Org/Repo",
                "default_branch": "main",
            },
            "commits": [{"id": SHA2, "added": ["a.yaml"], "modified": ["dir/b.yaml"], "removed": ["c.yaml"]}],
        }
    ).encode()


def test_gitlab_token_checked_and_documented_payloads_read(receiver: Receiver) -> None:
    push = (SHARED / "fixtures" / "gitlab" / "push-hook.json").read_bytes()
    assert receiver.post(push, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"})[0] == 401
    assert receiver.post(push, **{"X-Gitlab-Event": "Push Hook"})[0] == 401
    assert receiver.events == []
    status, body = receiver.post(push, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET})
    assert (status, body["status"]) == (202, "accepted")
    (event,) = receiver.events
    assert isinstance(event, PushEvent)
    assert (event.branch, event.after, event.default_branch) == (
        "master",
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "master",
    )
    assert event.changed_files is None  # total_commits_count 4 > 2 listed: truncated, git must tell
    assert {repo_key(u) for u in event.repo_urls} == {"example.com/mike/diaspora"}

    tag = (SHARED / "fixtures" / "gitlab" / "tag-push-hook.json").read_bytes()
    assert receiver.post(tag, **{"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": SECRET})[0] == 202
    assert receiver.events[-1].tag == "v1.0.0"  # type: ignore[union-attr]

    note = {"object_kind": "note"}
    assert receiver.post(note, **{"X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": SECRET})[1]["status"] == "ignored"
    assert ("gitlab", "unauthorized") in receiver.outcomes and ("gitlab", "ignored") in receiver.outcomes


def test_github_signature_ping_and_pull_request(receiver: Receiver) -> None:
    body = github_push()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}
    assert receiver.post(body, **headers, **{"X-Hub-Signature-256": "sha256=" + sign(body, "wrong")})[0] == 401
    assert receiver.post(body, **headers)[0] == 401
    assert receiver.post(body, **headers, **{"X-Hub-Signature-256": "sha256=" + sign(body)})[0] == 202
    # The same delivery again (GitHub's redelivery) is acknowledged and dropped.
    assert receiver.post(body, **headers, **{"X-Hub-Signature-256": "sha256=" + sign(body)})[1]["status"] == "duplicate"
    (event,) = receiver.events
    assert isinstance(event, PushEvent)
    assert event.branch == "feature/x" and event.changed_files == ("a.yaml", "dir/b.yaml", "c.yaml")

    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    sig = {"X-Hub-Signature-256": "sha256=" + sign(ping)}
    assert receiver.post(ping, **{"X-GitHub-Event": "ping"}, **sig) == (202, {"status": "ignored"})

    pr = json.dumps(
        {
            "action": "synchronize",
            "number": 42,
            "pull_request": {
                "head": {"ref": "feature", "sha": SHA2},
                "base": {
                    "ref": "main",
                    "repo": {"full_name": "Org/Repo", "clone_url": "https://github.com/Org/Repo.git"},
                },
            },
        }
    ).encode()
    assert (
        receiver.post(pr, **{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": "sha256=" + sign(pr)})[0] == 202
    )
    mr = receiver.events[-1]
    assert isinstance(mr, MergeRequestEvent) and (mr.number, mr.head_sha, mr.project) == (42, SHA2, "Org/Repo")


def test_gitea_and_gogs_sign_without_prefix(receiver: Receiver) -> None:
    body = json.loads(github_push())
    body["total_commits"] = 30  # more than listed: truncated
    raw = json.dumps(body).encode()
    gitea = {"X-Gitea-Event": "push", "X-Gogs-Event": "push", "X-GitHub-Event": "push"}
    assert receiver.post(raw, **gitea, **{"X-Hub-Signature-256": "sha256=" + sign(raw)})[0] == 401
    assert receiver.post(raw, **gitea, **{"X-Gitea-Signature": sign(raw)})[0] == 202
    assert receiver.post(raw, **{"X-Gogs-Event": "push", "X-Gogs-Signature": sign(raw)})[0] == 202
    assert [e.provider for e in receiver.events] == ["gitea", "gogs"]
    assert receiver.events[0].changed_files is None  # type: ignore[union-attr]


def test_bitbucket_cloud_and_server(receiver: Receiver) -> None:
    cloud = json.dumps(
        {
            "repository": {"full_name": "team/repo", "links": {"html": {"href": "https://bitbucket.org/team/repo"}}},
            "push": {
                "changes": [
                    {
                        "new": {"type": "branch", "name": "main", "target": {"hash": SHA2}},
                        "old": {"type": "branch", "name": "main", "target": {"hash": SHA1}},
                    },
                    {"new": {"type": "tag", "name": "v2", "target": {"hash": SHA2}}, "old": None},
                ]
            },
        }
    ).encode()
    headers = {"X-Event-Key": "repo:push", "X-Request-UUID": "r-1"}
    assert receiver.post(cloud, **headers, **{"X-Hook-UUID": "{other}"})[0] == 401
    assert receiver.post(cloud, **headers, **{"X-Hook-UUID": "{hook-uuid-1234}"})[0] == 202
    branch, tag = receiver.events
    assert (branch.ref, branch.before, tag.ref, tag.before) == ("refs/heads/main", SHA1, "refs/tags/v2", "0" * 40)  # type: ignore[union-attr]
    assert repo_key(branch.repo_urls[0]) == repo_key("git@bitbucket.org:team/repo.git")

    server = json.dumps(
        {
            "repository": {
                "slug": "repo",
                "project": {"key": "PRJ"},
                "links": {"clone": [{"href": "ssh://git@bb.example.com:7999/prj/repo.git", "name": "ssh"}]},
            },
            "changes": [{"ref": {"id": "refs/heads/main", "type": "BRANCH"}, "fromHash": SHA1, "toHash": SHA2}],
        }
    ).encode()
    headers = {"X-Event-Key": "repo:refs_changed", "X-Request-Id": "s-1"}
    assert receiver.post(server, **headers, **{"X-Hub-Signature": "sha256=" + sign(server, "x")})[0] == 401
    assert receiver.post(server, **headers, **{"X-Hub-Signature": "sha256=" + sign(server)})[0] == 202
    event = receiver.events[-1]
    assert event.provider == "bitbucket-server"
    assert repo_key(event.repo_urls[0]) == repo_key("https://bb.example.com/scm/PRJ/repo.git")


def test_status_codes_for_bad_requests(receiver: Receiver) -> None:
    big = b"{" + b" " * (64 * 1024) + b"}"
    assert receiver.post(big, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET})[0] == 413
    assert receiver.post(b"{}", **{"X-Unknown": "1"})[0] == 400  # no provider header
    gl = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}
    status, body = receiver.post(b"not json", **gl)
    assert status == 400 and "not JSON" in body["error"]
    status, body = receiver.post({"object_kind": "push", "before": SHA1, "after": SHA2}, **gl)
    assert status == 400 and "'project.git_http_url' is missing" in body["error"]
    generic = json.dumps({"repositories": ["/srv/git/app.git"], "changes": [{"ref": "refs/heads/main"}]}).encode()
    status, body = receiver.post(generic, **{"X-Gitops-Event": "push", "X-Gitops-Signature": "sha256=" + sign(generic)})
    assert status == 400 and "'before'" in body["error"]
    assert SECRET not in json.dumps(receiver.outcomes)
    assert receiver.events == []


@pytest.mark.parametrize(
    "url",
    [
        "https://GitLab.example.com/Group/Sub/App.git",
        "https://user:token@gitlab.example.com:8443/group/sub/app/",
        "ssh://git@gitlab.example.com:2222/group/sub/app.git",
        "git@gitlab.example.com:group/sub/app.git",
        "http://gitlab.example.com/group/sub/app",
    ],
)
def test_repository_urls_normalise_alike(url: str) -> None:
    assert repo_key(url) == "gitlab.example.com/group/sub/app"


def test_local_paths_and_file_urls_normalise_alike(tmp_path: Any) -> None:
    bare = tmp_path / "repo.git"
    assert repo_key(str(bare)) == repo_key(bare.as_uri()) == repo_key(str(tmp_path / "repo") + "/")
    assert repo_key(str(bare)) != repo_key("https://example.com" + str(bare))
