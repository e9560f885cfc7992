"""The policy gate in the embedded API server, seen through the real kubectl and the
cluster client: denials name policy, rule and reason; new policies apply at once; Audit
becomes a kubectl warning; mutations reach the pods a Deployment creates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controllers import errors
from controllers.cluster import EmbeddedCluster
from gitops.policygate import BUNDLE_DIR
from policies.admission import ClusterPolicies, install, uninstall
from tests.conftest import SHARED, Kubectl, eventually
from tests.manifests import ADD_TEAM_LABEL, WEB_DEPLOYMENT


def pod(name: str, image: str, namespace: str = "default", resources: bool = True) -> dict:
    container: dict = {"name": "main", "image": image}
    if resources:
        container["resources"] = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [container]},
    }


def bundle_policy(name: str) -> dict:
    return yaml.safe_load((BUNDLE_DIR / f"{name}.yaml").read_text())


OWNER_IN_PROD = """apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: owner-in-prod
spec:
  rules:
  - name: require-owner
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaceSelector:
            matchLabels:
              env: prod
    validate:
      failureAction: Enforce
      message: "pods in production namespaces need an owner label"
      pattern:
        metadata:
          labels:
            owner: "?*"
"""

LOCKED_BY_CONFIGMAP = """apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: freeze
spec:
  rules:
  - name: respect-freeze
    match:
      any:
      - resources:
          kinds: [Pod]
    context:
    - name: freeze
      configMap:
        name: freeze
        namespace: default
    validate:
      failureAction: Enforce
      message: "deployments are frozen: {{ freeze.data.reason }}"
      deny:
        conditions:
          any:
          - key: "{{ freeze.data.mode }}"
            operator: Equals
            value: locked
"""


@pytest.fixture
def gated(cluster: EmbeddedCluster) -> Iterator[ClusterPolicies]:
    """The bare API server with the policy plugin installed (its own informers)."""
    policies = install(cluster, cluster.client)
    try:
        yield policies
    finally:
        uninstall(cluster, policies)


def test_kubectl_apply_of_a_violating_pod_fails_naming_policy_rule_and_reason(
    gated: ClusterPolicies, kubectl: Kubectl, tmp_path: Path
) -> None:
    kubectl("apply", "-f", str(BUNDLE_DIR / "disallow-latest-tag.yaml"))
    proc = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(pod("web", "nginx:latest")), check=False)
    assert proc.returncode != 0
    assert "Forbidden" in proc.stderr
    assert "resource Pod/default/web was blocked due to the following policies" in proc.stderr
    assert "disallow-latest-tag: validate-image-tag:" in proc.stderr
    assert "the `latest` tag is not allowed" in proc.stderr
    assert kubectl.run("get", "pod", "web", check=False).returncode != 0  # nothing stored

    untagged = kubectl.run("run", "bare", "--image=nginx", check=False)
    assert untagged.returncode != 0 and "require-image-tag" in untagged.stderr
    kubectl("apply", "-f", "-", input=yaml.safe_dump(pod("web", "nginx:1.25")))
    assert "nginx:1.25" in kubectl("get", "pod", "web", "-o", "jsonpath={.spec.containers[0].image}")


def test_a_new_policy_applies_at_once_and_a_deleted_one_stops(gated: ClusterPolicies, cluster: EmbeddedCluster) -> None:
    client = cluster.client
    policy = bundle_policy("disallow-privileged-containers")
    privileged = pod("root", "busybox:1.36")
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    for _ in range(5):  # no sleeping between the writes: the policy applies to the very next one
        client.create(policy)
        with pytest.raises(errors.Forbidden) as denied:
            client.create(privileged)
        assert "disallow-privileged-containers: privileged-containers: validation error: privileged" in str(
            denied.value
        )
        client.delete("kyverno.io/v1", "ClusterPolicy", "disallow-privileged-containers")
        client.create(privileged)
        client.delete("v1", "Pod", "root", "default")


def test_audit_policy_admits_with_a_warning_kubectl_shows(gated: ClusterPolicies, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(BUNDLE_DIR / "require-requests-limits.yaml"))
    proc = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(pod("lazy", "nginx:1.25", resources=False)))
    assert proc.returncode == 0
    assert "Warning: policy require-requests-limits.validate-resources:" in proc.stderr
    assert "requests and a memory limit are required" in proc.stderr
    assert kubectl("get", "pod", "lazy", "-o", "name").strip() == "pod/lazy"
    quiet = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(pod("busy", "nginx:1.25")))
    assert "Warning" not in quiet.stderr


def test_namespace_selector_reads_namespace_labels(gated: ClusterPolicies, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=OWNER_IN_PROD)
    for name, labels in (("shop", {"env": "prod"}), ("sandbox", {"env": "dev"})):
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
    denied = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(pod("a", "nginx:1.25", "shop")), check=False)
    assert denied.returncode != 0 and "owner-in-prod: require-owner:" in denied.stderr
    kubectl("apply", "-f", "-", input=yaml.safe_dump(pod("a", "nginx:1.25", "sandbox")))
    owned = pod("a", "nginx:1.25", "shop")
    owned["metadata"]["labels"] = {"owner": "team-a"}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(owned))


def test_context_configmap_is_read_from_the_cluster(gated: ClusterPolicies, cluster: EmbeddedCluster) -> None:
    client = cluster.client
    client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "freeze", "namespace": "default"},
            "data": {"mode": "locked", "reason": "release week"},
        }
    )
    client.create(yaml.safe_load(LOCKED_BY_CONFIGMAP))
    with pytest.raises(errors.Forbidden) as denied:
        client.create(pod("p", "nginx:1.25"))
    assert "freeze: respect-freeze:" in str(denied.value) and "deployments are frozen: release week" in str(
        denied.value
    )
    client.patch("v1", "ConfigMap", "freeze", {"data": {"mode": "open"}}, "default", "merge")
    client.create(pod("p", "nginx:1.25"))


def test_mutate_policy_labels_the_pods_a_deployment_creates(kube: EmbeddedCluster, kube_kubectl: Kubectl) -> None:
    policies = install(kube, kube.client, kube.manager.ctx.informers if kube.manager else None)
    try:
        kube_kubectl("apply", "-f", "-", input=ADD_TEAM_LABEL)
        kube_kubectl("apply", "-f", "-", input=WEB_DEPLOYMENT)

        def two_pods() -> list[dict] | None:
            items = kube.client.list("v1", "Pod", "default", "app=web")["items"]
            return items if len(items) == 2 else None

        pods = eventually(two_pods, 60, "the Deployment's two pods")
        assert all(p["metadata"]["labels"].get("team") == "gates" for p in pods)
        labels = kube_kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.labels.team}")
        assert labels.split() == ["gates", "gates"]
    finally:
        uninstall(kube, policies)


def test_a_policy_that_does_not_compile_is_refused_naming_the_field(gated: ClusterPolicies, kubectl: Kubectl) -> None:
    bad = {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "half-written"},
        "spec": {"rules": [{"name": "check", "validate": {"message": "x", "pattern": {"metadata": {"name": "?*"}}}}]},
    }
    proc = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert proc.returncode != 0
    assert "policy not accepted: ClusterPolicy half-written: spec.rules[0] (check).match:" in proc.stderr
    assert kubectl.run("get", "clusterpolicy", "half-written", check=False).returncode != 0


def test_deletes_and_controller_writes_pass_under_enforce_policies(gated: ClusterPolicies, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(BUNDLE_DIR))
    names = kubectl("get", "clusterpolicies", "-o", "jsonpath={.items[*].metadata.name}").split()
    assert sorted(names) == ["disallow-latest-tag", "disallow-privileged-containers", "require-requests-limits"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(pod("ok", "nginx:1.25")))
    kubectl("delete", "pod", "ok", "--wait=false")
    kubectl("label", "namespace", "default", "team=gates")  # objects no policy matches are untouched


MAX_REPLICAS = """apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: max-replicas
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
  validations:
  - expression: object.spec.replicas <= 5
    message: at most 5 replicas
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: max-replicas
spec:
  policyName: max-replicas
  validationActions: [Deny]
"""


def test_cel_admission_policy_with_its_binding_gates_kubectl(gated: ClusterPolicies, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=MAX_REPLICAS)
    wide = WEB_DEPLOYMENT.replace("replicas: 2", "replicas: 7")
    proc = kubectl.run("apply", "-f", "-", input=wide, check=False)
    assert proc.returncode != 0 and "max-replicas: max-replicas: at most 5 replicas" in proc.stderr
    kubectl("apply", "-f", "-", input=WEB_DEPLOYMENT)


def test_a_namespaced_policy_applies_only_in_its_namespace(gated: ClusterPolicies, cluster: EmbeddedCluster) -> None:
    client = cluster.client
    for ns in ("team-a", "team-b"):
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    policy = bundle_policy("disallow-latest-tag")
    policy["kind"] = "Policy"
    policy["metadata"]["namespace"] = "team-a"
    client.create(policy)
    with pytest.raises(errors.Forbidden, match="disallow-latest-tag: validate-image-tag:"):
        client.create(pod("p", "nginx:latest", "team-a"))
    client.create(pod("p", "nginx:latest", "team-b"))


def test_generate_rule_creates_its_object_after_the_trigger(gated: ClusterPolicies, kubectl: Kubectl) -> None:
    policy = SHARED / "peer-suites" / "kyverno-policies" / "best-practices" / "add-network-policy"
    kubectl("apply", "-f", str(policy / "add-network-policy.yaml"))
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant"}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
    eventually(
        lambda: kubectl.run("get", "networkpolicy", "default-deny", "-n", "tenant", check=False).returncode == 0,
        30,
        "the generated NetworkPolicy",
    )
    spec = kubectl("get", "networkpolicy", "default-deny", "-n", "tenant", "-o", "jsonpath={.spec.policyTypes}")
    assert "Ingress" in spec and "Egress" in spec
