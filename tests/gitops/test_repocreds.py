"""Private repositories reached with credentials from Argo CD-style repository Secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controllers.cluster import EmbeddedCluster
from gitops.repocreds import SecretCredentials
from gitops.source.git import Credentials
from tests.conftest import Kubectl, eventually
from tests.gitops.conftest import GitServer, running_engine
from tests.gitops.test_engine import Env

CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: private
"""


def secret(name: str, secret_type: str, **data: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "labels": {"argocd.argoproj.io/secret-type": secret_type}},
        "stringData": data,
    }


def test_exact_repository_wins_then_longest_prefix_then_environment(
    kube: EmbeddedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPS_GIT_GIT_EXAMPLE_COM_PASSWORD", "from-env")
    client = kube.client
    client.create(secret("org", "repo-creds", url="https://gitlab.example.com/acme", username="u", password="org"))
    client.create(secret("team", "repo-creds", url="https://gitlab.example.com/acme/team", password="team"))
    client.create(secret("shop", "repository", url="https://gitlab.example.com/acme/team/shop.git", password="shop"))
    client.create(secret("broken", "repository", username="no-url"))
    creds = SecretCredentials(client, "default", ttl=0)

    def password(url: str) -> str:
        found = creds(url)
        return found.password if isinstance(found, Credentials) else ""

    assert password("https://gitlab.example.com/acme/team/shop") == "shop"
    assert password("https://gitlab.example.com/acme/team/other.git") == "team"
    assert password("https://gitlab.example.com/acme/web.git") == "org"
    assert password("https://git.example.com/x/y.git") == "from-env"
    assert creds("https://github.com/public/repo.git") is None


def test_a_private_repo_syncs_once_its_repository_secret_exists(
    kube: EmbeddedCluster, kube_kubectl: Kubectl, git_server_auth: GitServer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    repo = git_server_auth.repo("private")
    sha = repo.commit({"app/cm.yaml": CONFIGMAP})
    data = tmp_path / "engine"
    with running_engine(kube, data) as engine:
        env = Env(kube, engine, kube_kubectl, data)
        env.create_app("private", repo, "app")
        eventually(
            lambda: "Authentication failed" in str((env.app("private").get("status") or {}).get("conditions")),
            what="the failed fetch shown in the app's conditions",
        )
        prefix = repo.url().rsplit("/", 1)[0]
        kube.client.create(secret("org", "repo-creds", url=prefix, username="alice", password=GitServer.PASSWORD))

        def synced() -> bool:
            env.refresh("private")  # the credentials are re-read within seconds; ask until then
            return env.status("private") == ("Synced", "Healthy", sha)

        eventually(synced, what="the app synced with the Secret's credentials")
        assert kube.client.get("v1", "ConfigMap", "settings", "default")["data"]["mode"] == "private"
    assert GitServer.PASSWORD not in caplog.text
