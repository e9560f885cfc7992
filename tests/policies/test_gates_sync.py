"""The sync's policy pre-flight end to end: a real git server, the embedded cluster with
every controller and the policy plugin, and the engine gated by `SyncPolicyGate`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers import errors
from controllers.client import LocalClient, RemoteClient
from controllers.cluster import EmbeddedCluster
from gitops import apps
from gitops.controller import Violation
from gitops.engine import Engine
from gitops.policygate import BUNDLE_DIR, SyncPolicyGate, apply_policies, load_policies
from policies.admission import install, uninstall, watch_policies
from tests.conftest import Kubectl, eventually
from tests.gitops.conftest import GitRepo, GitServer, running_engine
from tests.policies.test_gates_admission import MAX_REPLICAS


def deployment(
    name: str, image: str, resources: str = "{requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 16Mi}}"
) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: {image}
        resources: {resources}
"""


CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
"""


class Gated:
    """The engine on a cluster whose policies gate both the API and the syncs."""

    def __init__(self, cluster: EmbeddedCluster, engine: Engine) -> None:
        self.cluster, self.engine, self.client = cluster, engine, cluster.client

    def create_app(self, name: str, repo: GitRepo, path: str) -> None:
        self.client.create(
            {
                "apiVersion": apps.API_VERSION,
                "kind": "Application",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": repo.url(), "path": path, "targetRevision": "main"},
                    "destination": {"server": apps.IN_CLUSTER, "namespace": "default"},
                    "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
                },
            }
        )

    def status(self, name: str) -> dict[str, Any]:
        return self.client.get(apps.API_VERSION, "Application", name, "default").get("status") or {}

    def operation(self, name: str, revision: str, phase: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            op = self.status(name).get("operationState") or {}
            return op if op.get("phase") == phase and op["syncResult"]["revision"] == revision else None

        return eventually(done, 90, f"{name} operation {phase} at {revision[:7]}")

    def condition(self, name: str, ctype: str) -> str:
        return next((c["message"] for c in self.status(name).get("conditions") or [] if c["type"] == ctype), "")

    def exists(self, api_version: str, kind: str, name: str, namespace: str = "default") -> bool:
        try:
            self.client.get(api_version, kind, name, namespace)
            return True
        except errors.NotFound:
            return False


@pytest.fixture
def gated(kube: EmbeddedCluster, tmp_path: Path) -> Iterator[Gated]:
    client = LocalClient(kube.api)
    policies = install(kube, client, kube.manager.ctx.informers if kube.manager else None)
    try:
        with running_engine(kube, tmp_path / "engine", workers=2, gate=SyncPolicyGate(policies)) as engine:
            yield Gated(kube, engine)
    finally:
        uninstall(kube, policies)


def test_one_enforce_violation_blocks_the_whole_sync_and_every_violation_is_listed(
    gated: Gated, git_server: GitServer
) -> None:
    apply_policies(gated.client, load_policies("default"))
    repo = git_server.repo("blocked")
    sha = repo.commit(
        {
            "app/web.yaml": deployment("web", "nginx:latest"),
            "app/api.yaml": deployment("api", "nginx:latest"),
            "app/ok.yaml": deployment("ok", "nginx:1.25"),
            "app/cm.yaml": CONFIGMAP,
        }
    )
    gated.create_app("blocked", repo, "app")
    op = gated.operation("blocked", sha, "Failed")
    assert op["message"].startswith("blocked by policy:")
    violation = gated.condition("blocked", "PolicyViolation")
    for name in ("web", "api"):
        assert (
            f"policy disallow-latest-tag rule autogen-validate-image-tag denied Deployment/default/{name}:" in violation
        )
    assert "the `latest` tag is not allowed" in violation
    assert "Deployment/default/ok" not in violation
    # All or nothing: not even the compliant objects were applied.
    for kind, name in (("Deployment", "web"), ("Deployment", "api"), ("Deployment", "ok")):
        assert not gated.exists("apps/v1", kind, name)
    assert not gated.exists("v1", "ConfigMap", "settings")


def test_audit_violations_are_warnings_and_the_sync_goes_on(gated: Gated, git_server: GitServer) -> None:
    apply_policies(gated.client, load_policies("default"))
    repo = git_server.repo("audited")
    sha = repo.commit({"app/web.yaml": deployment("lazy", "nginx:1.25", resources="{}"), "app/cm.yaml": CONFIGMAP})
    gated.create_app("audited", repo, "app")
    gated.operation("audited", sha, "Succeeded")
    warning = gated.condition("audited", "PolicyWarning")
    assert "policy require-requests-limits rule autogen-validate-resources audit on Deployment/default/lazy:" in warning
    assert not gated.condition("audited", "PolicyViolation")
    assert gated.exists("apps/v1", "Deployment", "lazy") and gated.exists("v1", "ConfigMap", "settings")


def test_a_policy_delivered_by_the_app_is_applied_first_and_gates_the_rest(
    gated: Gated, git_server: GitServer, kube_kubectl: Kubectl
) -> None:
    policy = (BUNDLE_DIR / "disallow-latest-tag.yaml").read_text()
    repo = git_server.repo("self-gated")
    first = repo.commit({"app/policy.yaml": policy, "app/web.yaml": deployment("web", "nginx:latest")})
    gated.create_app("self-gated", repo, "app")
    gated.operation("self-gated", first, "Failed")
    assert "Deployment/default/web" in gated.condition("self-gated", "PolicyViolation")
    assert not gated.exists("kyverno.io/v1", "ClusterPolicy", "disallow-latest-tag", "")
    assert not gated.exists("apps/v1", "Deployment", "web")

    second = repo.commit({"app/web.yaml": deployment("web", "nginx:1.25")})
    gated.engine.controller.refresh(f"{apps.API_VERSION}|default/self-gated")
    gated.operation("self-gated", second, "Succeeded")
    live_policy = gated.client.get("kyverno.io/v1", "ClusterPolicy", "disallow-latest-tag")
    live_web = gated.client.get("apps/v1", "Deployment", "web", "default")
    assert int(live_policy["metadata"]["resourceVersion"]) < int(live_web["metadata"]["resourceVersion"])
    # The delivered policy now gates the API too.
    proc = kube_kubectl.run("run", "latest", "--image=nginx:latest", check=False)
    assert proc.returncode != 0 and "disallow-latest-tag" in proc.stderr


def test_a_delivered_policy_that_does_not_compile_blocks_the_sync(gated: Gated, git_server: GitServer) -> None:
    broken = """apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: half-written
spec:
  rules:
  - name: check
    validate:
      pattern:
        metadata:
          name: "?*"
"""
    repo = git_server.repo("broken")
    sha = repo.commit({"app/policy.yaml": broken, "app/cm.yaml": CONFIGMAP})
    gated.create_app("broken", repo, "app")
    gated.operation("broken", sha, "Failed")
    violation = gated.condition("broken", "PolicyViolation")
    assert "policy half-written rule  denied ClusterPolicy//half-written: policy does not compile:" in violation
    assert "spec.rules[0] (check).match" in violation
    assert not gated.exists("v1", "ConfigMap", "settings")


def test_a_real_cluster_gate_watches_the_policy_kinds_it_serves(cluster: EmbeddedCluster, kubeconfig: Path) -> None:
    """Against a cluster over HTTP (as a real one): no Kyverno CRDs, only the built-in
    ValidatingAdmissionPolicy kinds are watched, and they gate the pre-flight."""
    remote = RemoteClient.from_kubeconfig(str(kubeconfig))
    policies = watch_policies(remote)
    try:
        remote.create(yaml.safe_load(MAX_REPLICAS.split("---")[0]))
        remote.create(yaml.safe_load(MAX_REPLICAS.split("---")[1]))
        gate = SyncPolicyGate(policies)
        wide = yaml.safe_load(deployment("wide", "nginx:1.25").replace("replicas: 1", "replicas: 9"))
        wide["metadata"]["namespace"] = "default"

        def violations() -> list[Violation]:
            return gate.check([wide])

        found = eventually(violations, 30, "the CEL policy seen by the gate")
        assert found == [Violation("max-replicas", "max-replicas", "Deployment/default/wide", "at most 5 replicas")]
    finally:
        policies.stop()
