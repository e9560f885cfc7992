"""`gitops hook install` + a plain `git push`: the app updates with no git provider
involved (the post-receive hook posts to the generic receiver of POST /api/webhook)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from tests.conftest import eventually
from tests.gitops import test_push
from tests.gitops.conftest import GitServer
from tests.gitops.test_push import SECRET, Hooked, configmap

hooked = test_push.hooked  # the engine with POST /api/webhook on a real HTTP server


def gitops(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gitops.cli", *args], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_hook_install_then_git_push_updates_the_app(hooked: Hooked, git_server: GitServer) -> None:
    repo = git_server.repo("plain")
    first = repo.commit({"http/cm.yaml": configmap("via-http", "1"), "path/cm.yaml": configmap("via-path", "1")})
    out = gitops("hook", "install", str(repo.bare), "--url", hooked.url, "--secret", SECRET, "--repo-url", repo.url())
    assert "post-receive hook installed" in out.stdout
    config = repo.bare / "hooks" / "gitops-hook.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # the secret is readable by its owner only
    assert SECRET not in (repo.bare / "hooks" / "post-receive").read_text()

    hooked.create_app("via-http", repo, "http")  # known to the hook by --repo-url
    hooked.cluster.client.create(
        {
            "apiVersion": "gitops.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "via-path", "namespace": "default"},
            "spec": {
                "source": {"repoURL": str(repo.bare), "path": "path", "targetRevision": "main"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
                "syncPolicy": {"automated": {}},
            },
        }
    )
    eventually(lambda: hooked.revision("via-http") == first and hooked.revision("via-path") == first, what="synced")

    second = repo.commit({"http/cm.yaml": configmap("via-http", "2"), "path/cm.yaml": configmap("via-path", "2")})
    eventually(lambda: hooked.value("via-http") == "2", what="the http app updated by the push alone")
    eventually(lambda: hooked.value("via-path") == "2", what="the path app updated by the push alone")
    eventually(lambda: hooked.revision("via-http") == second and hooked.revision("via-path") == second)
    assert hooked.refreshes("via-http") == 1 and hooked.refreshes("via-path") == 1

    # A wrong secret: the push still succeeds (git prints the hook's warning), nothing refreshes.
    gitops("hook", "install", str(repo.bare), "--url", hooked.url, "--secret", "not-the-secret")
    repo.commit({"http/cm.yaml": configmap("via-http", "3")})
    eventually(lambda: hooked.value("via-http") == "2")
    assert hooked.refreshes("via-http") == 1
