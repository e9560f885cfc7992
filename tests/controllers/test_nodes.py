"""Simulated nodes and the node lifecycle, seen through kubectl and the API: registration,
Lease heartbeats, a dead node going NotReady with the unreachable taint and its pods
evicted, revival, cordon and user NoExecute taints."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controllers import errors
from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig, NodeSpec
from controllers.nodes import Nodes
from controllers.tables import pod_status
from tests.conftest import Kubectl, eventually


@pytest.fixture
def cluster() -> Iterator[EmbeddedCluster]:
    config = ClusterConfig.default(3)
    config.nodes.append(
        NodeSpec(
            "gpu-1",
            cpu="16",
            memory="64Gi",
            pods=50,
            zone="zone-a",
            labels={"accelerator": "a100"},
            taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}],
        )
    )
    config.heartbeat_seconds = 0.3
    config.node_monitor_grace_seconds = 2
    config.pod_eviction_seconds = 2
    c = EmbeddedCluster(None, api_port=0, config=config, controllers=["nodes", "kubelet"]).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def kubectl(cluster: EmbeddedCluster, tmp_path: Path) -> Kubectl:
    return Kubectl(cluster.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)


def nodes_of(cluster: EmbeddedCluster) -> Nodes:
    assert cluster.manager is not None
    nodes = cluster.manager.controllers["nodes"]
    assert isinstance(nodes, Nodes)
    return nodes


def node_rows(kubectl: Kubectl, *args: str) -> dict[str, list[str]]:
    lines = kubectl("get", "nodes", "--no-headers", *args).splitlines()
    return {cols[0]: cols for cols in (line.split() for line in lines)}


def pod(name: str, node: str, tolerations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "app", "image": "nginx:1.27"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def get_pod(cluster: EmbeddedCluster, name: str) -> dict[str, Any] | None:
    try:
        return cluster.client.get("v1", "Pod", name, "default")
    except errors.NotFound:
        return None


def is_ready(obj: dict[str, Any] | None) -> bool:
    conds = (obj or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def taints(cluster: EmbeddedCluster, node: str) -> set[tuple[str, str]]:
    obj = cluster.client.get("v1", "Node", node)
    return {(t["key"], t["effect"]) for t in obj.get("spec", {}).get("taints") or []}


def test_nodes_register_ready_with_addresses_labels_and_capacity(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    rows = eventually(lambda: (r := node_rows(kubectl, "-o", "wide")) and len(r) == 4 and r)
    assert {name: cols[1] for name, cols in rows.items()} == dict.fromkeys(
        ["gpu-1", "node-1", "node-2", "node-3"], "Ready"
    )
    assert {cols[4] for cols in rows.values()} == {"v1.32.0"}
    internal_ips = {cols[5] for cols in rows.values()}
    assert len(internal_ips) == 4 and all(
        ipaddress.ip_address(ip) in ipaddress.ip_network("172.18.0.0/16") for ip in internal_ips
    )

    gpu = json.loads(kubectl("get", "node", "gpu-1", "-o", "json"))
    labels = gpu["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "gpu-1"
    assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"] == "amd64"
    assert labels["topology.kubernetes.io/zone"] == "zone-a" and labels["topology.kubernetes.io/region"]
    assert labels["node.kubernetes.io/instance-type"] and labels["accelerator"] == "a100"
    assert gpu["status"]["capacity"] == {"cpu": "16", "memory": "64Gi", "pods": "50", "ephemeral-storage": "100Gi"}
    assert gpu["status"]["allocatable"]["cpu"] == "16"
    assert {"key": "gpu", "value": "true", "effect": "NoSchedule"} in gpu["spec"]["taints"]
    conditions = {c["type"]: (c["status"], c.get("reason")) for c in gpu["status"]["conditions"]}
    assert conditions == {
        "Ready": ("True", "KubeletReady"),
        "MemoryPressure": ("False", "KubeletHasSufficientMemory"),
        "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
        "PIDPressure": ("False", "KubeletHasSufficientPID"),
    }
    cidrs = {json.loads(kubectl("get", "node", n, "-o", "json"))["spec"]["podCIDR"] for n in rows}
    assert len(cidrs) == 4  # one pod range per node


def test_leases_are_renewed_every_heartbeat(cluster: EmbeddedCluster) -> None:
    def renew_time() -> str:
        lease = cluster.client.get("coordination.k8s.io/v1", "Lease", "node-1", "kube-node-lease")
        return lease["spec"]["renewTime"]

    first = eventually(lambda: _quiet(renew_time))
    eventually(lambda: renew_time() != first, timeout=10)
    lease = cluster.client.get("coordination.k8s.io/v1", "Lease", "node-1", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "node-1"
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"


def _quiet(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except errors.NotFound:
        return None


def test_dead_node_goes_unknown_gets_tainted_and_loses_its_pods(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    eventually(lambda: node_rows(kubectl).get("node-2", [None, None])[1] == "Ready")
    unreachable = "node.kubernetes.io/unreachable"
    cluster.client.create(pod("evicted-by-default", "node-2"))  # the API's default toleration: 2 s
    cluster.client.create(
        pod("stays", "node-2", [{"key": unreachable, "operator": "Exists", "effect": "NoExecute"}])  # forever
    )
    cluster.client.create(pod("elsewhere", "node-1"))
    for name in ("evicted-by-default", "stays", "elsewhere"):
        eventually(lambda name=name: is_ready(get_pod(cluster, name)))

    nodes_of(cluster).stop_node("node-2")
    eventually(lambda: node_rows(kubectl)["node-2"][1] == "NotReady", timeout=20)
    node = json.loads(kubectl("get", "node", "node-2", "-o", "json"))
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["message"]) == ("Unknown", "Kubelet stopped posting node status.")
    assert {(unreachable, "NoSchedule"), (unreachable, "NoExecute")} <= taints(cluster, "node-2")
    # Pods of the unreachable node stop being Ready; the default toleration runs out and
    # the pod is force-deleted (no kubelet would finish a graceful delete).
    eventually(lambda: get_pod(cluster, "evicted-by-default") is None, timeout=20)
    stays = get_pod(cluster, "stays")
    assert stays is not None and not is_ready(stays) and not stays["metadata"].get("deletionTimestamp")
    assert is_ready(get_pod(cluster, "elsewhere"))
    assert node_rows(kubectl)["node-1"][1] == "Ready"
    events = kubectl("get", "events", "--field-selector", "reason=TaintManagerEviction", "-o", "name")
    assert events.strip()

    nodes_of(cluster).start_node("node-2")
    eventually(lambda: node_rows(kubectl)["node-2"][1] == "Ready", timeout=20)
    eventually(lambda: not any(key == unreachable for key, _ in taints(cluster, "node-2")), timeout=20)
    eventually(lambda: is_ready(get_pod(cluster, "stays")), timeout=20)


def test_noexecute_taint_evicts_pods_that_do_not_tolerate_it(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    cluster.client.create(pod("intolerant", "node-3"))
    cluster.client.create(
        pod("tolerant", "node-3", [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"}])
    )
    cluster.client.create(
        pod(
            "briefly",
            "node-3",
            [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}],
        )
    )
    for name in ("intolerant", "tolerant", "briefly"):
        eventually(lambda name=name: is_ready(get_pod(cluster, name)))
    kubectl("taint", "nodes", "node-3", "dedicated=db:NoExecute")
    tainted = time.monotonic()
    # The node is alive: the eviction is a graceful delete the kubelet finishes.
    eventually(lambda: get_pod(cluster, "intolerant") is None, timeout=20)
    eventually(lambda: get_pod(cluster, "briefly") is None, timeout=20)
    assert time.monotonic() - tainted >= 1  # it tolerated the taint for 2 s (timeAdded has 1 s resolution)
    assert is_ready(get_pod(cluster, "tolerant"))


def test_cordon_adds_the_unschedulable_taint(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    unschedulable = ("node.kubernetes.io/unschedulable", "NoSchedule")
    eventually(lambda: "node-1" in node_rows(kubectl))
    kubectl("cordon", "node-1")
    assert node_rows(kubectl)["node-1"][1] == "Ready,SchedulingDisabled"
    eventually(lambda: unschedulable in taints(cluster, "node-1"))
    kubectl("uncordon", "node-1")
    eventually(lambda: unschedulable not in taints(cluster, "node-1"))


def test_a_deleted_node_registers_again(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    eventually(lambda: "node-3" in node_rows(kubectl))
    uid = cluster.client.get("v1", "Node", "node-3")["metadata"]["uid"]
    kubectl("delete", "node", "node-3")
    eventually(
        lambda: (
            (_quiet(lambda: cluster.client.get("v1", "Node", "node-3")) or {}).get("metadata", {}).get("uid")
            not in (None, uid)
        )
    )
    eventually(lambda: node_rows(kubectl)["node-3"][1] == "Ready")


def test_pods_on_nodes_get_unique_ips_from_the_node_range(cluster: EmbeddedCluster) -> None:
    for i in range(6):
        cluster.client.create(pod(f"ip-{i}", f"node-{i % 3 + 1}"))
    pods = [
        eventually(lambda i=i: (p := get_pod(cluster, f"ip-{i}")) and pod_status(p) == "Running" and p)
        for i in range(6)
    ]
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 6
    for p in pods:
        node = cluster.client.get("v1", "Node", p["spec"]["nodeName"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(node["spec"]["podCIDR"])
        assert p["status"]["hostIP"] == next(
            a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"
        )
