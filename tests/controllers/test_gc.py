"""The garbage collector, driven the way users drive it: `kubectl delete` with each
`--cascade` mode on owners whose dependents name them in ownerReferences."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from controllers import errors
from controllers.client import RemoteClient
from controllers.cluster import EmbeddedCluster
from controllers.gc import GarbageCollector, served_resources
from controllers.manager import ClusterConfig, ControllerContext
from controllers.runtime import Informer, InformerFactory
from tests.conftest import Kubectl, eventually

HOLD = "example.com/hold"  # a finalizer the test owns, to keep a dependent terminating


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(None, api_port=0, config=ClusterConfig(), controllers=["gc"]).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def kubectl(kube: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("gc")
    return Kubectl(kube.write_kubeconfig(tmp / "kubeconfig"), tmp)


def ref(owner: dict[str, Any], block: bool = False) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "blockOwnerDeletion": block,
    }


def configmap(
    kube: EmbeddedCluster, name: str, owners: Sequence[dict[str, Any]] = (), finalizers: Sequence[str] = ()
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"test": "gc"}}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return kube.client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})


def live(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any] | None:
    """The object as `kubectl get -o json` shows it, or None once it is gone."""
    proc = kubectl.run("get", kind, name, "-o", "json", check=False)
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    return json.loads(proc.stdout)


def gone(kubectl: Kubectl, kind: str, *names: str) -> Callable[[], bool]:
    return lambda: all(live(kubectl, kind, n) is None for n in names)


def settled(kube: EmbeddedCluster, kubectl: Kubectl, name: str) -> None:
    """Wait until the collector has worked through what was queued before now: a sentinel
    with an owner that never existed, queued last, is collected."""
    never = {"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": str(uuid.uuid4())}
    configmap(kube, name, [never])
    eventually(gone(kubectl, "configmap", name))


def release(kubectl: Kubectl, name: str) -> None:
    kubectl("patch", "configmap", name, "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')


def test_background_deletes_the_owner_at_once_and_the_dependents_after(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    owner = configmap(kube, "bg-owner")
    configmap(kube, "bg-dep-1", [ref(owner)])
    configmap(kube, "bg-dep-2", [ref(owner, block=True)])
    kubectl("delete", "configmap", "bg-owner", "--cascade=background")
    assert live(kubectl, "configmap", "bg-owner") is None
    eventually(gone(kubectl, "configmap", "bg-dep-1", "bg-dep-2"))


def test_foreground_keeps_the_owner_until_its_blocking_dependents_are_gone(
    kube: EmbeddedCluster, kubectl: Kubectl
) -> None:
    owner = configmap(kube, "fg-owner")
    configmap(kube, "fg-blocker", [ref(owner, block=True)], [HOLD])
    configmap(kube, "fg-plain", [ref(owner, block=False)])
    kubectl("delete", "configmap", "fg-owner", "--cascade=foreground", "--wait=false")

    eventually(gone(kubectl, "configmap", "fg-plain"))
    blocker = eventually(
        lambda: (o := live(kubectl, "configmap", "fg-blocker")) and o["metadata"].get("deletionTimestamp") and o
    )
    assert blocker["metadata"]["finalizers"] == [HOLD]
    waiting = live(kubectl, "configmap", "fg-owner")
    assert waiting is not None, "the owner went before its blocking dependent"
    assert waiting["metadata"]["deletionTimestamp"]
    assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]

    release(kubectl, "fg-blocker")
    eventually(gone(kubectl, "configmap", "fg-blocker", "fg-owner"))


def test_foreground_propagates_down_a_chain_of_owners(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    top = configmap(kube, "chain-top")
    middle = configmap(kube, "chain-middle", [ref(top, block=True)])
    configmap(kube, "chain-bottom", [ref(middle, block=True)], [HOLD])
    kubectl("delete", "configmap", "chain-top", "--cascade=foreground", "--wait=false")

    def middle_waits() -> bool:
        o = live(kubectl, "configmap", "chain-middle")
        return bool(
            o and o["metadata"].get("deletionTimestamp") and "foregroundDeletion" in o["metadata"]["finalizers"]
        )

    eventually(middle_waits)
    assert (live(kubectl, "configmap", "chain-bottom") or {}).get("metadata", {}).get("deletionTimestamp")
    assert live(kubectl, "configmap", "chain-top") is not None
    release(kubectl, "chain-bottom")
    eventually(gone(kubectl, "configmap", "chain-bottom", "chain-middle", "chain-top"))


def test_orphan_leaves_the_dependents_without_the_reference(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    owner = configmap(kube, "or-owner")
    other = configmap(kube, "or-other-owner")
    configmap(kube, "or-dep-1", [ref(owner, block=True)])
    configmap(kube, "or-dep-2", [ref(owner), ref(other)])
    kubectl("delete", "configmap", "or-owner", "--cascade=orphan")  # waits until it is gone
    assert live(kubectl, "configmap", "or-owner") is None
    refs = kubectl("get", "configmap", "or-dep-1", "-o", "jsonpath={.metadata.ownerReferences}")
    assert refs == ""
    dep2 = live(kubectl, "configmap", "or-dep-2")
    assert dep2 is not None
    assert [r["name"] for r in dep2["metadata"]["ownerReferences"]] == ["or-other-owner"]


def test_a_dangling_owner_is_collected_and_a_remaining_owner_keeps_its_dependent(
    kube: EmbeddedCluster, kubectl: Kubectl
) -> None:
    owner = configmap(kube, "dg-owner")
    never = {"apiVersion": "v1", "kind": "ConfigMap", "name": "dg-never", "uid": str(uuid.uuid4())}
    configmap(kube, "dg-orphaned", [never])
    configmap(kube, "dg-kept", [ref(owner), never])
    eventually(gone(kubectl, "configmap", "dg-orphaned"))

    def only_real_owner_left() -> bool:
        o = live(kubectl, "configmap", "dg-kept")
        assert o is not None, "a dependent with a live owner was deleted"
        return [r["name"] for r in o["metadata"].get("ownerReferences") or []] == ["dg-owner"]

    eventually(only_real_owner_left)


def test_dependents_of_live_owners_are_left_alone(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    for i in range(20):
        owner = configmap(kube, f"race-owner-{i}")
        configmap(kube, f"race-dep-{i}", [ref(owner)])
    settled(kube, kubectl, "race-sentinel")
    names = kubectl("get", "configmap", "-o", "name")
    assert all(f"configmap/race-dep-{i}" in names for i in range(20))


def test_a_cluster_scoped_dependent_of_a_namespaced_owner_is_kept_with_a_warning(
    kube: EmbeddedCluster, kubectl: Kubectl
) -> None:
    owner = configmap(kube, "ns-owner")
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "invalid-dependent", "ownerReferences": [ref(owner)]},
                "rules": [],
            }
        ),
    )

    def warned() -> bool:
        events = json.loads(kubectl("get", "events", "-A", "-o", "json"))["items"]
        return any(
            e["reason"] == "OwnerRefInvalidNamespace" and e["involvedObject"]["name"] == "invalid-dependent"
            for e in events
        )

    eventually(warned)
    kubectl("delete", "configmap", "ns-owner")
    settled(kube, kubectl, "ns-sentinel")
    assert live(kubectl, "clusterrole", "invalid-dependent") is not None


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def test_custom_resources_own_and_are_owned(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    """A kind that appears after start is watched: its objects' dependents are collected,
    and its objects are collected when their owner goes."""
    kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    widget = eventually(lambda: _create_widget(kube, "w1"))
    configmap(kube, "w1-config", [ref(widget, block=True)])
    owner = configmap(kube, "widget-owner")
    kube.client.create(
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w2", "namespace": "default", "ownerReferences": [ref(owner)]},
        }
    )
    kubectl("delete", "widget", "w1", "--cascade=foreground")  # returns once w1 is gone
    assert live(kubectl, "configmap", "w1-config") is None
    kubectl("delete", "configmap", "widget-owner")
    eventually(gone(kubectl, "widget", "w2"))


def _create_widget(kube: EmbeddedCluster, name: str) -> dict[str, Any] | None:
    try:
        return kube.client.create(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": "default"}}
        )
    except errors.NotFound:
        return None  # the kind is not served yet


def test_served_resources_are_the_same_in_process_and_over_http(kube: EmbeddedCluster, tmp_path: Path) -> None:
    remote = RemoteClient.from_kubeconfig(str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    local = {(i.api_version, i.kind, i.plural, i.namespaced) for i in served_resources(kube.client)}
    assert {(i.api_version, i.kind, i.plural, i.namespaced) for i in served_resources(remote)} == local
    assert ("apps/v1", "Deployment", "deployments", True) in local
    assert ("v1", "Namespace", "namespaces", False) in local


def test_an_owner_the_cache_has_not_seen_is_checked_live(kube: EmbeddedCluster) -> None:
    """Caches lag behind writes: an owner missing from them is only taken for gone once
    a GET by name does not find its uid."""
    ctx = ControllerContext(kube.client, InformerFactory(kube.client), ClusterConfig())
    collector = GarbageCollector(ctx)  # informers never started: every cache is empty
    owner = configmap(kube, "live-owner")
    dependent = configmap(kube, "live-dep", [ref(owner)])
    info = kube.client.resource_info("v1", "ConfigMap")
    assert collector.owner_state(info, dependent, ref(owner)) == GarbageCollector.SOLID
    recreated = {**ref(owner), "uid": str(uuid.uuid4())}
    assert collector.owner_state(info, dependent, recreated) == GarbageCollector.DANGLING
    ctx.stop_recorders()


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}], "terminationGracePeriodSeconds": 1},
        },
    },
}


def test_foreground_deletion_of_a_deployment_removes_pods_then_replicaset_then_deployment(tmp_path: Path) -> None:
    """On the real stack: the kubelet stops the pods, and only then do their owners go."""
    config = ClusterConfig.default(2)
    config.heartbeat_seconds = 0.5
    names = ["nodes", "kubelet", "scheduler", "replicaset", "deployment", "gc"]
    c = EmbeddedCluster(None, api_port=0, config=config, controllers=names).start()
    watched = [
        Informer(c.client, v, k, "default")
        for v, k in (("v1", "Pod"), ("apps/v1", "ReplicaSet"), ("apps/v1", "Deployment"))
    ]
    deleted: list[tuple[int, str]] = []  # (resourceVersion of the removal, kind): the store's global order
    try:
        kubectl = Kubectl(c.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
        kubectl("apply", "-f", "-", input=json.dumps(DEPLOYMENT))
        kubectl("rollout", "status", "deployment/web", "--timeout=60s", timeout=90)

        def record(etype: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
            if etype == "DELETED":
                deleted.append((int(obj["metadata"]["resourceVersion"]), obj["kind"]))

        for inf in watched:
            inf.add_handler(record)
            inf.start()
            assert inf.wait_for_sync(10)

        kubectl("delete", "deployment", "web", "--cascade=foreground", timeout=60)  # waits until it is gone

        eventually(lambda: any(kind == "Deployment" for _, kind in deleted))
        order = [kind for _, kind in sorted(deleted)]
        assert order.count("Pod") >= 2 and order.count("ReplicaSet") == 1
        assert order == sorted(order, key=["Pod", "ReplicaSet", "Deployment"].index)
        assert kubectl("get", "pods", "-l", "app=web", "-o", "name") == ""
    finally:
        for inf in watched:
            inf.stop()
        c.stop()
