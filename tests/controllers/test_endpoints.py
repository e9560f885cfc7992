"""Endpoints and EndpointSlices follow the pods behind a Service, as `kubectl get
endpoints` and `kubectl get endpointslices` show them. The test plays the kubelet here
(pod IPs and readiness through the status subresource); the last test runs the real
nodes, kubelet and scheduler."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controllers.cluster import EmbeddedCluster
from controllers.endpoints import MAX_ENDPOINTS_PER_SLICE
from controllers.manager import ClusterConfig
from tests.conftest import Kubectl, eventually


def until(read: Callable[[], Any], ok: Callable[[Any], Any], timeout: float = 20.0) -> Any:
    """The first value `read` returns that `ok` accepts."""
    seen: list[Any] = []

    def check() -> bool:
        seen[:] = [read()]
        return bool(ok(seen[0]))

    eventually(check, timeout)
    return seen[0]


@pytest.fixture(scope="module")
def kube() -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(None, api_port=0, config=ClusterConfig(), controllers=["endpoints", "gc"]).start()
    c.client.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "zone-a"}},
        }
    )
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def kubectl(kube: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("endpoints")
    return Kubectl(kube.write_kubeconfig(tmp / "kubeconfig"), tmp)


def service(kubectl: Kubectl, name: str, *, publish_not_ready: bool = False, selector: bool = True) -> None:
    spec: dict[str, Any] = {
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9090},
        ],
        "publishNotReadyAddresses": publish_not_ready,
    }
    if selector:
        spec["selector"] = {"app": name}
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}
    kubectl("apply", "-f", "-", input=json.dumps(body))


def run_pod(kube: EmbeddedCluster, app: str, name: str, ip: str, ready: bool, node: str = "node-a") -> None:
    """What the scheduler and kubelet would do: a pod on `node` with `ip`, ready or not."""
    kube.client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}],
            },
        }
    )
    set_ready(kube, name, ready, ip)


def set_ready(kube: EmbeddedCluster, name: str, ready: bool, ip: str = "") -> None:
    pod = kube.client.get("v1", "Pod", name, "default")
    status = pod["status"]
    status.update(phase="Running", podIP=ip or status["podIP"], podIPs=[{"ip": ip or status["podIP"]}])
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    kube.client.update_status(pod)


def endpoints(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "endpoints", name, "-o", "json"))


def addresses(ep: dict[str, Any], field: str = "addresses") -> list[str]:
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get(field) or [])


def slices(kubectl: Kubectl, service_name: str) -> list[dict[str, Any]]:
    out = kubectl("get", "endpointslices", "-l", f"kubernetes.io/service-name={service_name}", "-o", "json")
    return json.loads(out)["items"]


def slice_endpoints(kubectl: Kubectl, service_name: str) -> dict[str, dict[str, Any]]:
    return {e["addresses"][0]: e for s in slices(kubectl, service_name) for e in s["endpoints"] or []}


def test_endpoints_follow_pod_readiness(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    service(kubectl, "web")
    run_pod(kube, "web", "web-1", "10.244.0.11", ready=True)
    run_pod(kube, "web", "web-2", "10.244.0.12", ready=False)
    run_pod(kube, "other", "other-1", "10.244.0.13", ready=True)

    ep = until(lambda: endpoints(kubectl, "web"), lambda e: addresses(e, "notReadyAddresses"))
    assert addresses(ep) == ["10.244.0.11"]
    assert addresses(ep, "notReadyAddresses") == ["10.244.0.12"]
    address = ep["subsets"][0]["addresses"][0]
    assert address["nodeName"] == "node-a"
    assert address["targetRef"]["kind"] == "Pod" and address["targetRef"]["name"] == "web-1"
    # The named targetPort resolves to the container's port.
    assert sorted((p["name"], p["port"]) for p in ep["subsets"][0]["ports"]) == [("http", 8080), ("metrics", 9090)]
    row = kubectl("get", "endpoints", "web", "--no-headers")
    assert "10.244.0.11:8080" in row and "10.244.0.12" not in row

    set_ready(kube, "web-2", True)
    eventually(lambda: addresses(endpoints(kubectl, "web")) == ["10.244.0.11", "10.244.0.12"])
    set_ready(kube, "web-1", False)
    eventually(lambda: addresses(endpoints(kubectl, "web"), "notReadyAddresses") == ["10.244.0.11"])
    kubectl("delete", "pod", "web-2", "--grace-period=0", "--force")
    until(
        lambda: endpoints(kubectl, "web"),
        lambda e: addresses(e) == [] and addresses(e, "notReadyAddresses") == ["10.244.0.11"],
    )


def test_endpoint_slices_carry_conditions_zone_and_terminating_pods(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    service(kubectl, "api")
    run_pod(kube, "api", "api-1", "10.244.1.11", ready=True)
    run_pod(kube, "api", "api-2", "10.244.1.12", ready=False)
    eps = until(lambda: slice_endpoints(kubectl, "api"), lambda e: len(e) == 2)
    (s,) = slices(kubectl, "api")
    assert s["metadata"]["name"].startswith("api-")
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert s["addressType"] == "IPv4"
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert sorted((p["name"], p["port"]) for p in s["ports"]) == [("http", 8080), ("metrics", 9090)]
    ready = eps["10.244.1.11"]
    assert ready["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert ready["nodeName"] == "node-a" and ready["zone"] == "zone-a"
    assert ready["targetRef"]["name"] == "api-1"
    assert eps["10.244.1.12"]["conditions"] == {"ready": False, "serving": False, "terminating": False}

    # A pod on a node stops gracefully: while it terminates it leaves Endpoints but stays
    # in its slice, serving but no longer ready.
    kubectl("delete", "pod", "api-1", "--wait=false")
    terminating = until(
        lambda: slice_endpoints(kubectl, "api")["10.244.1.11"], lambda e: e["conditions"]["terminating"]
    )
    assert terminating["conditions"] == {"ready": False, "serving": True, "terminating": True}
    eventually(lambda: addresses(endpoints(kubectl, "api")) == [])
    assert "10.244.1.11" not in json.dumps(endpoints(kubectl, "api"))


def test_publish_not_ready_addresses_lists_every_pod_as_ready(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    service(kubectl, "peers", publish_not_ready=True)
    run_pod(kube, "peers", "peers-1", "10.244.2.11", ready=False)
    eventually(lambda: addresses(endpoints(kubectl, "peers")) == ["10.244.2.11"])
    eventually(lambda: (slice_endpoints(kubectl, "peers").get("10.244.2.11") or {}).get("conditions", {}).get("ready"))


def test_a_service_without_selector_keeps_the_users_endpoints(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    service(kubectl, "external", selector=False)
    manual = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "external", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"name": "http", "port": 80}]}],
    }
    kubectl("apply", "-f", "-", input=json.dumps(manual))
    run_pod(kube, "external", "external-1", "10.244.3.11", ready=True)
    service(kubectl, "sentinel")  # queued after: once it has Endpoints, "external" was looked at
    eventually(lambda: kubectl.run("get", "endpoints", "sentinel", check=False).returncode == 0)
    assert addresses(endpoints(kubectl, "external")) == ["192.0.2.10"]
    assert slices(kubectl, "external") == []


def test_large_services_are_split_into_slices_of_100(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    service(kubectl, "big")
    count = MAX_ENDPOINTS_PER_SLICE + 30
    for i in range(count):
        run_pod(kube, "big", f"big-{i}", f"10.245.{i // 200}.{i % 200 + 1}", ready=True)
    eventually(lambda: len(slice_endpoints(kubectl, "big")) == count, timeout=40)
    assert sorted(len(s["endpoints"]) for s in slices(kubectl, "big")) == [30, MAX_ENDPOINTS_PER_SLICE]
    # Two ports per pod: 260 address:port pairs, three of them shown.
    assert "+ 257 more..." in kubectl("get", "endpoints", "big", "--no-headers")


def test_deleting_a_service_removes_its_endpoints_and_slices(kube: EmbeddedCluster, kubectl: Kubectl) -> None:
    service(kubectl, "brief")
    run_pod(kube, "brief", "brief-1", "10.244.4.11", ready=True)
    eventually(lambda: slice_endpoints(kubectl, "brief") and addresses(endpoints(kubectl, "brief")))
    kubectl("delete", "service", "brief")
    eventually(lambda: kubectl.run("get", "endpoints", "brief", check=False).returncode != 0)
    eventually(lambda: slices(kubectl, "brief") == [])  # owned by the Service: the garbage collector


def test_endpoints_follow_pods_on_the_real_stack(tmp_path: Path) -> None:
    """Node agents, scheduler and kubelet: the pod is published not-ready until its
    readiness probe's delay has passed, then ready, then dropped as it stops."""
    config = ClusterConfig.default(2)
    config.heartbeat_seconds = 0.5
    names = ["nodes", "kubelet", "scheduler", "endpoints", "gc"]
    c = EmbeddedCluster(None, api_port=0, config=config, controllers=names).start()
    try:
        kubectl = Kubectl(c.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
        service(kubectl, "real")
        probe = {"httpGet": {"path": "/", "port": 8080}, "initialDelaySeconds": 3}
        container = {"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "real-1", "namespace": "default", "labels": {"app": "real"}},
            "spec": {"containers": [{**container, "readinessProbe": probe}]},
        }
        kubectl("apply", "-f", "-", input=json.dumps(pod))
        starting = until(lambda: endpoints(kubectl, "real"), lambda e: addresses(e, "notReadyAddresses"), timeout=40)
        (ip,) = addresses(starting, "notReadyAddresses")
        assert addresses(starting) == []
        ready = until(lambda: endpoints(kubectl, "real"), addresses, timeout=40)
        address = ready["subsets"][0]["addresses"][0]
        node = kubectl("get", "pod", "real-1", "-o", "jsonpath={.spec.nodeName}")
        assert address["ip"] == ip and address["nodeName"] == node
        assert f"{ip}:8080" in kubectl("get", "endpoints", "real")
        zone = kubectl("get", "node", node, "-o", "jsonpath={.metadata.labels.topology\\.kubernetes\\.io/zone}")
        assert slice_endpoints(kubectl, "real")[ip]["zone"] == zone != ""

        kubectl("delete", "pod", "real-1", "--wait=false")
        until(lambda: endpoints(kubectl, "real"), lambda e: not addresses(e), timeout=40)
        until(lambda: slice_endpoints(kubectl, "real"), lambda e: e == {}, timeout=40)
    finally:
        c.stop()
