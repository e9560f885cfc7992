"""The GitOps engine end to end: a real git server on loopback, the embedded cluster with
every controller (pods really roll), the engine, kubectl and the `gitops app` CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from controllers.cluster import EmbeddedCluster
from gitops import apps
from gitops.engine import Engine
from tests.conftest import SHARED, Kubectl, eventually
from tests.gitops.conftest import GitServer, OnEngine
from tests.manifests import WEB_SERVICE

PEER_APPS = SHARED / "peer-suites" / "argocd-example-apps"


def deployment(image: str, replicas: int = 2, name: str = "web") -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: {name}
        image: {image}
        ports:
        - containerPort: 80
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
"""


class Env(OnEngine):
    """A running engine on an embedded cluster, with helpers to read what users read."""

    def __init__(self, cluster: EmbeddedCluster, engine: Engine, kubectl: Kubectl, data_dir: Path) -> None:
        super().__init__(cluster, engine)
        self.kubectl, self.data_dir = kubectl, data_dir

    def wait_synced_healthy(self, name: str, revision: str, timeout: float = 90) -> None:
        eventually(
            lambda: self.status(name) == ("Synced", "Healthy", revision),
            timeout,
            f"{name} Synced+Healthy at {revision[:7]}",
        )

    def refresh(self, name: str) -> None:
        self.engine.controller.refresh(f"{apps.API_VERSION}|default/{name}")

    def pods(self, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
        return self.client.list("v1", "Pod", namespace, selector)["items"]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kubeconfig = self.cluster.write_kubeconfig(self.data_dir / "kubeconfig")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gitops.cli",
                "app",
                "--kubeconfig",
                str(kubeconfig),
                "--data-dir",
                str(self.data_dir),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"gitops app {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def env(kube: EmbeddedCluster, engine: Engine, kube_kubectl: Kubectl, tmp_path: Path) -> Env:
    return Env(kube, engine, kube_kubectl, tmp_path / "engine")


def running_images(env: Env, selector: str) -> set[str]:
    return {
        p["spec"]["containers"][0]["image"]
        for p in env.pods(selector)
        if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    }


def test_push_rolls_out_prunes_and_self_heals(env: Env, git_server: GitServer) -> None:
    repo = git_server.repo("shop")
    first = repo.commit({"web/deploy.yaml": deployment("nginx:1.25"), "web/svc.yaml": WEB_SERVICE})
    env.create_app("shop", repo, "web")
    env.wait_synced_healthy("shop", first)
    assert running_images(env, "app=web") == {"nginx:1.25"}
    assert len(env.pods("app=web")) == 2

    # A new image tag: a rolling update, back to Synced+Healthy at the new revision.
    second = repo.commit({"web/deploy.yaml": deployment("nginx:1.26")})
    env.refresh("shop")
    env.wait_synced_healthy("shop", second)
    eventually(lambda: running_images(env, "app=web") == {"nginx:1.26"}, what="new pods running")

    # A deletion with prune on: the Service goes.
    third = repo.commit({"web/svc.yaml": None})
    env.refresh("shop")
    env.wait_synced_healthy("shop", third)
    eventually(
        lambda: not env.client.list("v1", "Service", "default", field_selector="metadata.name=web")["items"],
        what="service pruned",
    )

    # Drift by kubectl scale is reverted (selfHeal).
    env.kubectl("scale", "deployment", "web", "--replicas=5")
    eventually(
        lambda: env.client.get("apps/v1", "Deployment", "web", "default")["spec"]["replicas"] == 2,
        what="replicas healed back to 2",
    )
    history = env.app("shop")["status"]["history"]
    assert [h["revision"] for h in history][:3] == [first, second, third]


def test_drift_without_self_heal_shows_out_of_sync_and_manual_sync(env: Env, git_server: GitServer) -> None:
    repo = git_server.repo("manual")
    sha = repo.commit({"app/deploy.yaml": deployment("nginx:1.25", 1, name="api")})
    env.create_app("manual", repo, "app", automated=False)
    eventually(lambda: env.status("manual")[0] == "OutOfSync", what="manual app OutOfSync")
    time.sleep(1)
    assert env.status("manual")[0] == "OutOfSync"  # nothing applies it by itself
    assert env.cli("diff", "manual", check=False).returncode == 1
    env.cli("sync", "manual", "--wait", "--timeout", "90")
    env.wait_synced_healthy("manual", sha)
    assert env.cli("diff", "manual", check=False).returncode == 0

    env.kubectl("scale", "deployment", "api", "--replicas=3")
    eventually(lambda: env.status("manual")[0] == "OutOfSync", what="drift shown as OutOfSync")
    assert env.client.get("apps/v1", "Deployment", "api", "default")["spec"]["replicas"] == 3


def test_rollback_restores_the_previous_revision(env: Env, git_server: GitServer) -> None:
    repo = git_server.repo("rb")
    one = repo.commit(
        {
            "app/deploy.yaml": deployment("nginx:1.25", 1, name="rb"),
            "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rb-config}\ndata: {v: '1'}\n",
        }
    )
    env.create_app("rb", repo, "app", automated=False)
    env.cli("sync", "rb", "--wait", "--timeout", "90")
    env.wait_synced_healthy("rb", one)
    two = repo.commit({"app/deploy.yaml": deployment("nginx:1.26", 1, name="rb"), "app/cm.yaml": None})
    env.refresh("rb")
    env.cli("sync", "rb", "--prune", "--wait", "--timeout", "90")
    env.wait_synced_healthy("rb", two)
    history = env.cli("history", "rb").stdout
    assert one[:7] in history or one in history
    env.cli("rollback", "rb", "0", "--wait", "--timeout", "90")
    eventually(
        lambda: env.client.get("v1", "ConfigMap", "rb-config", "default")["data"] == {"v": "1"},
        what="configmap restored",
    )
    dep = env.client.get("apps/v1", "Deployment", "rb", "default")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_broken_yaml_empty_render_and_git_down_lose_nothing(env: Env, git_server: GitServer) -> None:
    repo = git_server.repo("safe")
    good = repo.commit(
        {
            "app/deploy.yaml": deployment("nginx:1.25", 1, name="safe"),
            "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {a: b}\n",
        }
    )
    env.create_app("safe", repo, "app")
    env.wait_synced_healthy("safe", good)

    repo.commit({"app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n data: [\n"})
    env.refresh("safe")
    cond = eventually(
        lambda: next(
            (c for c in env.app("safe")["status"].get("conditions", []) if c["type"] == "ComparisonError"), None
        ),
        what="ComparisonError",
    )
    assert "app/cm.yaml:5:" in cond["message"], cond["message"]
    assert env.client.get("v1", "ConfigMap", "keep", "default")["data"] == {"a": "b"}  # nothing pruned

    repo.commit({"app/cm.yaml": None, "app/deploy.yaml": None, "app/README.md": "nothing here"})
    env.refresh("safe")
    eventually(lambda: env.status("safe")[0] == "OutOfSync", what="empty render seen")
    time.sleep(1.5)
    assert env.client.get("v1", "ConfigMap", "keep", "default")  # an empty render never prunes
    assert env.client.get("apps/v1", "Deployment", "safe", "default")

    git_server.stop()
    env.refresh("safe")
    cond = eventually(
        lambda: next(
            (
                c
                for c in env.app("safe")["status"].get("conditions", [])
                if c["type"] == "ComparisonError" and "fetch" in c["message"]
            ),
            None,
        ),
        what="git down reported",
    )
    assert repo.url() in cond["message"] or "127.0.0.1" in cond["message"]
    assert env.client.get("apps/v1", "Deployment", "safe", "default")
    git_server.start()
    fixed = repo.commit({"app/deploy.yaml": deployment("nginx:1.26", 1, name="safe")})
    env.refresh("safe")
    env.wait_synced_healthy("safe", fixed)


@pytest.mark.parametrize("example", ["guestbook", "kustomize-guestbook", "helm-guestbook", "sync-waves"])
def test_argocd_example_apps_sync_to_healthy(env: Env, git_server: GitServer, example: str) -> None:
    if not PEER_APPS.exists():
        pytest.fail(f"peer suite missing at {PEER_APPS}")
    repo = git_server.repo(example)
    sha = repo.add_tree(PEER_APPS / example, example)
    env.create_app(example, repo, example, automated=False, namespace=example)
    env.cli("sync", example, "--wait", "--timeout", "120")
    env.wait_synced_healthy(example, sha, timeout=120)
    assert env.cli("diff", example, check=False).returncode == 0, env.cli("diff", example, check=False).stdout
    if example == "sync-waves":
        results = env.app(example)["status"]["operationState"]["syncResult"]["resources"]
        order = [r["name"] for r in results]
        assert order.index("backend") < order.index("frontend")
        assert order.index("maint-page-up") < order.index("frontend") < order.index("maint-page-down")
        assert order[0].startswith("upgrade-sql-schema")  # the PreSync hook ran first


def test_kubectl_sees_the_application(env: Env, git_server: GitServer) -> None:
    repo = git_server.repo("seen")
    sha = repo.commit({"app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seen}\n"})
    env.create_app("seen", repo, "app")
    env.wait_synced_healthy("seen", sha)
    out = env.kubectl("get", "applications")
    assert "seen" in out and "Synced" in out and "Healthy" in out
    assert shutil.which("kubectl")


def test_app_of_apps_with_argo_cd_manifests(env: Env, git_server: GitServer) -> None:
    repo = git_server.repo("platform")
    child = f"""apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: child
  namespace: default
spec:
  project: default
  source: {{repoURL: "{repo.url()}", path: child, targetRevision: main}}
  destination: {{server: "https://kubernetes.default.svc", namespace: child-ns}}
  syncPolicy:
    automated: {{prune: true}}
    syncOptions: [CreateNamespace=true]
"""
    sha = repo.commit(
        {
            "parent/child-app.yaml": child,
            "child/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-child}\n",
        }
    )
    env.create_app("parent", repo, "parent", namespace="default")
    env.wait_synced_healthy("parent", sha)
    created = env.client.get(apps.API_VERSION, "Application", "child", "default")  # converted to ours
    assert created["spec"]["destination"]["namespace"] == "child-ns"
    env.wait_synced_healthy("child", sha)
    assert env.client.get("v1", "ConfigMap", "from-child", "child-ns")


def test_app_delete_cascades_through_the_engine_or_keeps_resources(env: Env, git_server: GitServer) -> None:
    repo = git_server.repo("del")
    sha = repo.commit(
        {"a/deploy.yaml": deployment("nginx:1.25", name="a"), "b/deploy.yaml": deployment("nginx:1.25", name="b")}
    )
    env.create_app("a", repo, "a")
    env.create_app("b", repo, "b")
    env.wait_synced_healthy("a", sha)
    env.wait_synced_healthy("b", sha)

    def deployments() -> set[str]:
        return {d["metadata"]["name"] for d in env.client.list("apps/v1", "Deployment", "default")["items"]}

    env.cli("delete", "a")  # cascade (the default): the engine deletes what the app owns, then the app
    eventually(lambda: "a" not in deployments(), what="app a's Deployment deleted")
    eventually(
        lambda: (
            not env.client.list(apps.API_VERSION, "Application", "default", field_selector="metadata.name=a")["items"]
        ),
        what="app a gone",
    )
    env.cli("delete", "b", "--no-cascade")
    eventually(
        lambda: (
            not env.client.list(apps.API_VERSION, "Application", "default", field_selector="metadata.name=b")["items"]
        ),
        what="app b gone",
    )
    assert "b" in deployments(), "--no-cascade keeps the resources"
