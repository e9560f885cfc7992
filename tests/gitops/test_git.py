"""RepoCache against real git servers: revisions, refresh, shared fetches, credentials, outages, symlinks."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from pathlib import Path

import pytest

from gitops.source.git import (
    Credentials,
    GitError,
    GitRequest,
    RepoCache,
    credentials_by_prefix,
    env_credentials,
    normalize_url,
)
from tests.gitops.conftest import GitServer, Symlink

DEPLOY = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"


def test_resolves_branches_tags_short_shas_and_the_default_branch(git_server: GitServer, repo_cache: RepoCache) -> None:
    repo = git_server.repo("apps")
    first = repo.commit({"web/deploy.yaml": DEPLOY}, "first")
    repo.tag("v1.0", message="release 1.0")  # annotated: resolves to the commit, not the tag object
    repo.tag("light")
    second = repo.commit({"web/deploy.yaml": DEPLOY + "  labels: {a: b}\n"}, "on dev", branch="dev")
    url = repo.url()

    assert repo_cache.resolve(url, "main") == first
    assert repo_cache.resolve(url, "HEAD") == first
    assert repo_cache.resolve(url, "") == first
    assert repo_cache.resolve(url, "v1.0") == first
    assert repo_cache.resolve(url, "light") == first
    assert repo_cache.resolve(url, "dev") == second
    assert repo_cache.resolve(url, "refs/heads/dev") == second
    assert repo_cache.resolve(url, second[:7]) == second
    assert repo_cache.resolve(url, first) == first
    with pytest.raises(GitError, match=r"revision 'nope' not found in http://127\.0\.0\.1:\d+/apps\.git"):
        repo_cache.resolve(url, "nope")
    with pytest.raises(GitError, match="invalid revision"):
        repo_cache.resolve(url, "--upload-pack=evil")


def test_a_new_commit_is_seen_after_a_refresh_and_not_before(git_server: GitServer, repo_cache: RepoCache) -> None:
    repo = git_server.repo("apps")
    first = repo.commit({"a.yaml": DEPLOY})
    url = repo.url()
    assert repo_cache.resolve(url, "main") == first
    second = repo.commit({"b.yaml": DEPLOY}, "second")

    fetches = repo_cache.fetches
    assert repo_cache.resolve(url, "main") == first  # known locally: answered without the network
    assert repo_cache.fetches == fetches
    assert repo_cache.resolve(url, "main", refresh=True) == second
    assert repo_cache.changed_files(url, first, second) == ["b.yaml"]


def test_an_arbitrary_ref_is_fetched_on_demand(git_server: GitServer, repo_cache: RepoCache) -> None:
    repo = git_server.repo("apps")
    repo.commit({"a.yaml": DEPLOY})
    pr = repo.commit({"a.yaml": DEPLOY + "  annotations: {pr: '1'}\n"}, "pr", branch="feature")
    repo.push_ref("refs/pull/1/head", pr)
    url = repo.url()
    assert repo_cache.resolve(url, "refs/pull/1/head") == pr
    fetches = repo_cache.fetches
    assert repo_cache.resolve(url, "refs/pull/1/head") == pr
    assert repo_cache.fetches == fetches


def test_concurrent_resolves_share_one_fetch(git_server: GitServer, repo_cache: RepoCache) -> None:
    repo = git_server.repo("apps")
    sha = repo.commit({"a.yaml": DEPLOY})
    git_server.delay = 0.5  # each HTTP round trip is slow, so every caller arrives while the fetch runs
    callers = 8
    barrier = threading.Barrier(callers)
    results: list[str] = []

    def resolve() -> None:
        barrier.wait()
        results.append(repo_cache.resolve(repo.url(), "main", refresh=True))

    threads = [threading.Thread(target=resolve) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [sha] * callers
    assert repo_cache.fetches == 1
    assert git_server.fetch_sessions("apps") == 1


def test_credentials_reach_the_server_but_never_errors_logs_or_disk(
    git_server_auth: GitServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = git_server_auth.repo("private")
    sha = repo.commit({"a.yaml": DEPLOY})
    url = repo.url()
    wrong = "wr0ng-Pa55word"
    seen: list[GitRequest] = []

    anonymous = RepoCache(tmp_path / "anon", timeout=30)
    with pytest.raises(GitError, match=r"cannot fetch http://127\.0\.0\.1:\d+/private\.git: .*Authentication failed"):
        anonymous.resolve(url, "main")

    bad = RepoCache(tmp_path / "bad", credentials=lambda u: Credentials(GitServer.USERNAME, wrong), timeout=30)
    with pytest.raises(GitError) as failed:
        bad.resolve(url, "main")
    assert wrong not in str(failed.value)

    provider = credentials_by_prefix({url.rsplit("/", 1)[0]: Credentials(GitServer.USERNAME, GitServer.PASSWORD)})
    good = RepoCache(tmp_path / "good", credentials=provider, timeout=30, on_request=seen.append)
    assert good.resolve(url, "main") == sha
    assert [r.ok for r in seen] == [True] and seen[0].operation == "fetch"
    assert any(user == GitServer.USERNAME for *_, user in git_server_auth.requests)

    in_url = url.replace("http://", f"http://{GitServer.USERNAME}:{GitServer.PASSWORD}@")
    from_url = RepoCache(tmp_path / "from-url", timeout=30)  # userinfo in the URL moves out of git's argv
    assert from_url.resolve(in_url, "main") == sha
    git_server_auth.stop()
    with pytest.raises(GitError, match=r"cannot fetch http://127\.0\.0\.1:\d+/private\.git: ") as down:
        from_url.resolve(in_url, "main", refresh=True)
    assert GitServer.PASSWORD not in str(down.value)

    for secret in (GitServer.PASSWORD, wrong):
        assert secret not in caplog.text
        for cache in (anonymous, bad, good, from_url):
            for path in cache.root.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), path


def test_environment_credentials_prefer_the_host_specific_ones() -> None:
    env = {
        "GITOPS_GIT_USERNAME": "global",
        "GITOPS_GIT_PASSWORD": "global-token",
        "GITOPS_GIT_GITLAB_EXAMPLE_COM_USERNAME": "oauth2",
        "GITOPS_GIT_GITLAB_EXAMPLE_COM_PASSWORD": "gitlab-token",
    }
    lookup = env_credentials(env)
    assert lookup("https://gitlab.example.com/group/app.git") == Credentials("oauth2", "gitlab-token")
    assert lookup("https://github.com/org/app.git") == Credentials("global", "global-token")
    assert env_credentials({})("https://github.com/org/app.git") is None
    assert "gitlab-token" not in repr(lookup("https://gitlab.example.com/group/app.git"))


def test_an_ssh_key_is_used_from_a_private_file_that_is_removed_afterwards(tmp_path: Path) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-material\n-----END OPENSSH PRIVATE KEY-----"
    cache = RepoCache(tmp_path / "cache", credentials=lambda u: Credentials(ssh_private_key=key), timeout=20)
    refused = r"cannot fetch ssh://\*\*\*@127\.0\.0\.1:1/org/app\.git: ssh: connect .*Connection refused"
    with pytest.raises(GitError, match=refused) as err:
        cache.resolve("ssh://git@127.0.0.1:1/org/app.git", "main")
    assert "not-a-real-key-material" not in str(err.value)
    assert not list((tmp_path / "cache").glob(".ssh-key-*"))


@pytest.mark.parametrize("protocol", ["http", "git"])
def test_a_server_that_is_down_gives_a_clear_error_and_the_cache_keeps_serving(
    git_server: GitServer, repo_cache: RepoCache, protocol: str
) -> None:
    repo = git_server.repo("apps")
    sha = repo.commit({"web/deploy.yaml": DEPLOY})
    url = repo.url(protocol)
    assert repo_cache.resolve(url, "main") == sha

    git_server.stop()
    with pytest.raises(GitError, match=rf"cannot fetch {protocol}://127\.0\.0\.1:\d+/apps\.git: .*(refused|connect)"):
        repo_cache.resolve(url, "main", refresh=True)
    assert repo_cache.fetch_failures == 1
    assert repo_cache.resolve(url, "main") == sha
    assert repo_cache.read_file(url, sha, "web/deploy.yaml") == DEPLOY.encode()

    git_server.start()
    newer = repo.commit({"web/svc.yaml": DEPLOY})
    assert repo_cache.resolve(url, "main", refresh=True) == newer


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/apps.git"
        cache = RepoCache(tmp_path / "cache", timeout=2)
        with pytest.raises(GitError, match=rf"^cannot fetch {re.escape(url)}: timed out after 2s$"):
            cache.resolve(url, "main")
    assert cache.fetch_failures == 1


def test_files_are_read_at_a_commit_and_symlinks_must_stay_inside(git_server: GitServer, repo_cache: RepoCache) -> None:
    repo = git_server.repo("apps")
    old = repo.commit({"base/cm.yaml": "kind: old\n"}, "old")
    sha = repo.commit(
        {
            "base/cm.yaml": "kind: new\n",
            "apps/web/cm.yaml": Symlink("../../base/cm.yaml"),
            "apps/web/shared": Symlink("../../base"),
            "apps/web/run.sh": "#!/bin/sh\n",
        },
        "links",
    )
    url = repo.url()
    repo_cache.resolve(url, "main")
    assert repo_cache.read_file(url, old, "base/cm.yaml") == b"kind: old\n"  # each commit reads its own content
    assert repo_cache.read_file(url, sha, "apps/web/cm.yaml") == b"kind: new\n"
    assert repo_cache.read_file(url, sha, "apps/web/shared/cm.yaml") == b"kind: new\n"
    assert [(e.path, e.mode) for e in repo_cache.ls_tree(url, sha, "apps/web")] == [
        ("apps/web/cm.yaml", "120000"),
        ("apps/web/run.sh", "100644"),
        ("apps/web/shared", "120000"),
    ]
    with pytest.raises(GitError, match="does not exist"):
        repo_cache.ls_tree(url, sha, "apps/nope")

    exported = repo_cache.export(url, sha, "", Path(repo_cache.root.parent / "export"))
    assert os.readlink(exported / "apps/web/cm.yaml") == "../../base/cm.yaml"
    assert (exported / "apps/web/shared/cm.yaml").read_text() == "kind: new\n"

    evil = repo.commit({"apps/web/passwd.yaml": Symlink("../../../../../etc/passwd")}, "escape")
    repo_cache.resolve(url, "main", refresh=True)
    with pytest.raises(GitError, match=r"symlink apps/web/passwd\.yaml -> \.\./\.\./\.\./\.\./\.\./etc/passwd points"):
        repo_cache.read_file(url, evil, "apps/web/passwd.yaml")
    with pytest.raises(GitError, match=r"symlink apps/web/passwd\.yaml .* outside the repository"):
        repo_cache.export(url, evil, "apps", Path(repo_cache.root.parent / "export-evil"))
    with pytest.raises(GitError, match="must be relative"):
        repo_cache.read_file(url, sha, "../outside.yaml")


def test_commit_info_names_subject_author_and_date(git_server: GitServer, repo_cache: RepoCache) -> None:
    repo = git_server.repo("apps")
    sha = repo.commit({"a.yaml": DEPLOY}, "Deploy web v2\n\nLonger explanation.")
    repo_cache.resolve(repo.url(), "main")
    info = repo_cache.commit_info(repo.url(), sha)
    assert (info.sha, info.subject, info.author) == (sha, "Deploy web v2", "Test Author <author@example.com>")
    assert info.message == "Deploy web v2\n\nLonger explanation."
    assert info.date[:4].isdigit() and "T" in info.date


def test_one_clone_per_repository_however_its_url_is_spelled(git_server: GitServer, repo_cache: RepoCache) -> None:
    repo = git_server.repo("apps")
    sha = repo.commit({"a.yaml": DEPLOY})
    assert repo_cache.resolve(repo.url("path"), "main") == sha
    assert repo_cache.resolve(repo.url("file"), "main") == sha
    assert len(list(repo_cache.root.glob("*.git"))) == 1


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://GitHub.com/Org/Repo.git", "https://github.com/Org/Repo"),
        ("https://user:token@github.com/org/repo/", "https://github.com/org/repo"),
        ("git@github.com:org/repo.git", "ssh://github.com/org/repo"),
        ("ssh://git@github.com/org/repo", "ssh://github.com/org/repo"),
        ("http://127.0.0.1:8080/apps.git", "http://127.0.0.1:8080/apps"),
        ("file:///srv/git/apps.git", "file:///srv/git/apps"),
        ("/srv/git/apps.git/", "file:///srv/git/apps"),
    ],
)
def test_normalize_url(url: str, normalized: str) -> None:
    assert normalize_url(url) == normalized
