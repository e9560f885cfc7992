"""A node that dies: its pods are evicted and their Deployment runs them elsewhere."""

from __future__ import annotations

from typing import Any

from controllers.cluster import EmbeddedCluster
from tests.conftest import eventually


def test_pods_of_a_dead_node_are_rescheduled_elsewhere(kube: EmbeddedCluster) -> None:
    client = kube.client
    client.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 6,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        }
    )

    def running() -> list[dict[str, Any]]:
        pods = client.list("v1", "Pod", "default", "app=web")["items"]
        return [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]

    eventually(lambda: len(running()) == 6, what="6 pods running")
    victim = next(p["spec"]["nodeName"] for p in running())
    assert kube.manager is not None
    kube.manager.controllers["nodes"].stop_node(victim)  # type: ignore[attr-defined]

    def node_ready(name: str) -> str:
        node = client.get("v1", "Node", name)
        return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")

    eventually(lambda: node_ready(victim) != "True", what=f"{victim} NotReady")
    # Evicted after the toleration (2 s in the test cluster), replaced on the live nodes.
    eventually(
        lambda: len(running()) == 6 and all(p["spec"]["nodeName"] != victim for p in running()),
        what="all 6 pods running on the other nodes",
    )
    taints = client.get("v1", "Node", victim)["spec"].get("taints") or []
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in taints)
