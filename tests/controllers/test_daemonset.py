"""The DaemonSet controller with the real kubectl on the whole simulated stack: one pod per
eligible node (taints, tolerations, nodeSelector), nodes that appear or change labels,
and rolling updates that keep within maxUnavailable or surge first with maxSurge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers.cluster import EmbeddedCluster
from controllers.manager import NodeSpec
from controllers.workloads.daemonset import daemon_tolerations, node_should_run, target_node
from tests.conftest import Kubectl, eventually
from tests.controllers.test_statefulset import STACK, PodLog, apply, needs, stack

Obj = dict[str, Any]

DAEMONS = [*STACK, "daemonset"]
needs_stack = needs(*DAEMONS)
TAINT = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}


def daemonset(name: str, image: str = "agent:1", **spec: Any) -> Obj:
    template_spec = spec.pop("template_spec", {})
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": image}], **template_spec},
            },
            **spec,
        },
    }


def placement(cluster: EmbeddedCluster, app: str) -> dict[str, str]:
    """node -> image of the live daemon pod there (pods pinned but not yet bound count)."""
    items = cluster.client.list("v1", "Pod", "default", label_selector=f"app={app}")["items"]
    return {
        str(target_node(p)): p["spec"]["containers"][0]["image"]
        for p in items
        if not p["metadata"].get("deletionTimestamp")
    }


def ds_row(kubectl: Kubectl, name: str) -> list[str]:
    """NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE ... as `kubectl get ds` prints them."""
    return kubectl("get", "daemonset", name, "--no-headers").split()


def test_eligibility_follows_selectors_and_taints() -> None:
    node = {"metadata": {"name": "n1", "labels": {"disk": "ssd"}}, "spec": {"taints": [TAINT]}}
    plain: Obj = {"containers": []}
    assert node_should_run(plain, node) == (False, True), "NoSchedule keeps new pods away, not running ones"
    assert node_should_run({**plain, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}, node) == (True, True)
    evicting = {**node, "spec": {"taints": [{**TAINT, "effect": "NoExecute"}]}}
    assert node_should_run(plain, evicting) == (False, False)
    assert node_should_run({**plain, "nodeSelector": {"disk": "hdd"}}, {**node, "spec": {}}) == (False, False)
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]
            }
        }
    }
    assert node_should_run({**plain, "affinity": affinity}, {**node, "spec": {}}) == (True, True)
    unschedulable = {**node, "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}
    assert node_should_run({**plain, "tolerations": daemon_tolerations(False)}, unschedulable) == (True, True)
    network = {**node, "spec": {"taints": [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}
    assert node_should_run({**plain, "tolerations": daemon_tolerations(False)}, network)[0] is False
    assert node_should_run({**plain, "tolerations": daemon_tolerations(True)}, network)[0] is True


@needs_stack
def test_one_pod_per_node_that_tolerates_its_taints(tmp_path: Path) -> None:
    nodes = [NodeSpec("node-1"), NodeSpec("node-2"), NodeSpec("node-3", taints=[TAINT])]
    tolerant = daemonset("tolerant", template_spec={"tolerations": [{"key": "dedicated", "operator": "Exists"}]})
    with stack(tmp_path, DAEMONS, nodes=nodes) as (cluster, kubectl):
        apply(kubectl, daemonset("agent"), tolerant)
        eventually(lambda: ds_row(kubectl, "agent")[1:6] == ["2", "2", "2", "2", "2"], what="agent on 2 nodes")
        eventually(lambda: ds_row(kubectl, "tolerant")[1:6] == ["3", "3", "3", "3", "3"], what="tolerant on 3")
        assert set(placement(cluster, "agent")) == {"node-1", "node-2"}
        pods = cluster.client.list("v1", "Pod", "default", label_selector="app=agent")["items"]
        for pod in pods:
            pin = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert pin == {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [pod["spec"]["nodeName"]]}]}
                ]
            }, "each daemon pod is pinned to its node by node affinity, and the scheduler bound it there"
            keys = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
            assert ("node.kubernetes.io/unreachable", "NoExecute") in keys
            assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys

        kubectl("taint", "node", "node-3", "dedicated-")
        eventually(lambda: ds_row(kubectl, "agent")[1:4] == ["3", "3", "3"], what="agent on the untainted node")
        kubectl("taint", "node", "node-1", "evict=now:NoExecute")
        eventually(lambda: set(placement(cluster, "agent")) == {"node-2", "node-3"}, what="evicted from node-1")


@needs_stack
def test_nodes_that_appear_or_change_labels_get_or_lose_a_pod(tmp_path: Path) -> None:
    edge_only = daemonset("edge", template_spec={"nodeSelector": {"role": "edge"}})
    with stack(tmp_path, DAEMONS) as (cluster, kubectl):
        apply(kubectl, edge_only)
        eventually(lambda: len(ds_row(kubectl, "edge")) > 1 and ds_row(kubectl, "edge")[1] == "0")
        kubectl("label", "node", "node-2", "role=edge")
        eventually(lambda: placement(cluster, "edge") == {"node-2": "agent:1"}, what="a pod on the relabelled node")
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-9", "labels": {"role": "edge"}}}
        apply(kubectl, node)
        eventually(lambda: set(placement(cluster, "edge")) == {"node-2", "node-9"}, what="a pod for the new node")
        kubectl("label", "node", "node-2", "role-")
        eventually(lambda: "node-2" not in placement(cluster, "edge"), what="the pod of an unlabelled node gone")


def _max_nodes_without_available_pod(log: PodLog, nodes: set[str]) -> int:
    """Replaying the watch: the most nodes at once that had no available daemon pod."""
    state = {e.name: e for e in log.initial}
    worst = 0
    for ev in log.events:
        state[ev.name] = ev
        serving = {e.node for e in state.values() if e.available}
        worst = max(worst, len(nodes - serving))
    return worst


def _max_pods_on_a_node(log: PodLog) -> int:
    """Replaying the watch: the most live (not terminating) daemon pods one node had at once."""
    state = {e.name: e for e in log.initial}
    worst = 0
    for ev in log.events:
        state[ev.name] = ev
        per_node: dict[str, int] = {}
        for e in state.values():
            if e.type != "DELETED" and not e.deleting and e.node:
                per_node[e.node] = per_node.get(e.node, 0) + 1
        worst = max(worst, *per_node.values(), 0)
    return worst


@needs_stack
def test_rolling_update_keeps_to_max_unavailable(tmp_path: Path) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    with stack(tmp_path, DAEMONS) as (cluster, kubectl):
        apply(kubectl, daemonset("agent", updateStrategy=strategy))
        kubectl("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90)
        log = PodLog(cluster)
        kubectl("set", "image", "daemonset/agent", "agent=agent:2")
        out = kubectl("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90)
        assert 'daemon set "agent" successfully rolled out' in out
        assert placement(cluster, "agent") == {f"node-{i}": "agent:2" for i in (1, 2, 3)}
        log.stop()
        nodes = {"node-1", "node-2", "node-3"}
        assert _max_nodes_without_available_pod(log, nodes) == 1
        assert _max_pods_on_a_node(log) == 1


@needs_stack
def test_rolling_update_with_surge_starts_the_new_pod_first(tmp_path: Path) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    with stack(tmp_path, DAEMONS) as (cluster, kubectl):
        apply(kubectl, daemonset("agent", updateStrategy=strategy))
        kubectl("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90)
        log = PodLog(cluster)
        kubectl("set", "image", "daemonset/agent", "agent=agent:2")
        kubectl("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90)
        eventually(lambda: placement(cluster, "agent") == {f"node-{i}": "agent:2" for i in (1, 2, 3)})
        log.stop()
        assert _max_nodes_without_available_pod(log, {"node-1", "node-2", "node-3"}) == 0
        assert _max_pods_on_a_node(log) == 2, "old and new pod share a node while the new one starts"
        revisions = kubectl("get", "controllerrevisions", "-o", "jsonpath={.items[*].revision}").split()
        assert sorted(revisions) == ["1", "2"]
