"""Deleting a namespace with kubectl: its content of every kind (custom resources too)
goes first, then the namespace; meanwhile it is Terminating, refuses new content and
says what is left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from controllers import errors
from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig
from tests.conftest import Kubectl, eventually

HOLD = "example.com/hold"


@pytest.fixture(scope="module")
def kube() -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(None, api_port=0, config=ClusterConfig(), controllers=["namespace", "gc"]).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def kubectl(kube: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("ns")
    return Kubectl(kube.write_kubeconfig(tmp / "kubeconfig"), tmp)


GADGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def content(ns: str) -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{color: blue}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {ns}}}
stringData: {{password: hunter2}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  containers: [{{name: web, image: nginx}}]
---
apiVersion: example.com/v1
kind: Gadget
metadata: {{name: g1, namespace: {ns}}}
"""


def count_in(kube: EmbeddedCluster, namespace: str) -> int:
    """Objects of every namespaced kind left in the store for `namespace`."""
    total = 0
    for rt in kube.api.registry.all():
        if rt.namespaced:
            total += len(kube.client.list(rt.api_version, rt.kind, namespace)["items"])
    return total


def apply_when_served(kubectl: Kubectl, manifest: str) -> None:
    """Apply, retrying while a just-created CRD's kind is not served yet."""

    def attempt() -> bool:
        proc = kubectl.run("apply", "-f", "-", input=manifest, check=False)
        assert proc.returncode == 0 or "no matches for kind" in proc.stderr, proc.stderr
        return proc.returncode == 0

    eventually(attempt)


def test_kubectl_delete_namespace_returns_once_it_and_its_content_are_gone(
    kube: EmbeddedCluster, kubectl: Kubectl
) -> None:
    kubectl("apply", "-f", "-", input=GADGET_CRD)
    apply_when_served(kubectl, content("team-a"))
    assert count_in(kube, "team-a") == 5

    kubectl("delete", "namespace", "team-a", timeout=60)  # kubectl waits for the namespace to go

    proc = kubectl.run("get", "namespace", "team-a", check=False)
    assert proc.returncode != 0 and "NotFound" in proc.stderr
    assert count_in(kube, "team-a") == 0
    assert "gadgets" in kubectl("api-resources", "--api-group=example.com")  # the kind itself stays


def test_a_terminating_namespace_refuses_content_and_reports_what_remains(
    kube: EmbeddedCluster, kubectl: Kubectl
) -> None:
    kubectl("apply", "-f", "-", input='{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}')
    for name in ("held-1", "held-2"):
        kube.client.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "team-b", "finalizers": [HOLD]},
            }
        )
    kubectl("delete", "namespace", "team-b", "--wait=false")
    assert "Terminating" in kubectl("get", "namespace", "team-b")

    def conditions() -> dict[str, dict[str, Any]] | None:
        ns = json.loads(kubectl("get", "namespace", "team-b", "-o", "json"))
        conds = {c["type"]: c for c in ns["status"].get("conditions") or []}
        return conds if "NamespaceContentRemaining" in conds else None

    conds = eventually(conditions)
    assert conds["NamespaceContentRemaining"]["status"] == "True"
    assert conds["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: configmaps. has 2 resource instances"
    )
    assert conds["NamespaceFinalizersRemaining"]["message"] == (
        f"Some content in the namespace has finalizers remaining: {HOLD} in 2 resource instances"
    )
    assert conds["NamespaceDeletionContentFailure"]["status"] == "False"

    late = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late", "namespace": "team-b"}}'
    proc = kubectl.run("apply", "-f", "-", input=late, check=False)
    assert proc.returncode != 0
    assert "unable to create new content in namespace team-b because it is being terminated" in proc.stderr

    for name in ("held-1", "held-2"):
        kubectl("patch", "configmap", name, "-n", "team-b", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    kubectl("wait", "--for=delete", "namespace/team-b", "--timeout=30s")
    with pytest.raises(errors.NotFound):
        kube.client.get("v1", "Namespace", "team-b")
