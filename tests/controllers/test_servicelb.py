"""The laptop load balancer: LoadBalancer Services get an EXTERNAL-IP and Ingresses an
ADDRESS (the Ready nodes' InternalIPs), as `kubectl get` shows them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig
from tests.conftest import Kubectl, eventually


@pytest.fixture(scope="module")
def kube() -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(None, api_port=0, config=ClusterConfig(), controllers=["servicelb"]).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def kubectl(kube: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("servicelb")
    return Kubectl(kube.write_kubeconfig(tmp / "kubeconfig"), tmp)


def apply(kubectl: Kubectl, obj: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def lb_service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80}], **spec},
    }


def ingress(name: str, class_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}
    if class_name:
        spec["ingressClassName"] = class_name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def register_node(kube: EmbeddedCluster, name: str, ip: str) -> None:
    """What a node agent does: a Node that reports its address and is Ready."""
    kube.client.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        }
    )


def column(kubectl: Kubectl, kind: str, name: str, header: str) -> str:
    lines = kubectl("get", kind, name).splitlines()
    start = lines[0].index(header)
    return lines[1][start:].split()[0]


def test_load_balancers_and_ingresses_wait_for_a_node_address_then_get_it(
    kube: EmbeddedCluster, kubectl: Kubectl
) -> None:
    """Runs first in this module: no node exists yet."""
    apply(kubectl, lb_service("shop"))
    apply(kubectl, ingress("shop"))
    assert column(kubectl, "service", "shop", "EXTERNAL-IP") == "<pending>"
    register_node(kube, "node-1", "172.18.0.2")
    eventually(lambda: column(kubectl, "service", "shop", "EXTERNAL-IP") == "172.18.0.2")
    eventually(lambda: column(kubectl, "ingress", "shop", "ADDRESS") == "172.18.0.2")
    status = json.loads(kubectl("get", "service", "shop", "-o", "json"))["status"]
    assert status["loadBalancer"]["ingress"] == [{"ip": "172.18.0.2", "ipMode": "VIP"}]

    register_node(kube, "node-2", "172.18.0.3")
    eventually(lambda: column(kubectl, "service", "shop", "EXTERNAL-IP") == "172.18.0.2,172.18.0.3")
    ports = kubectl("get", "service", "shop", "-o", "jsonpath={.spec.ports[0].nodePort}")
    assert 30000 <= int(ports) <= 32767


def test_a_service_that_stops_being_a_load_balancer_loses_its_address(kubectl: Kubectl) -> None:
    apply(kubectl, lb_service("flip"))
    eventually(lambda: column(kubectl, "service", "flip", "EXTERNAL-IP") != "<pending>")
    # (Kubernetes drops the type-dependent fields itself; the embedded API wants them cleared.)
    patch = {"spec": {"type": "ClusterIP", "externalTrafficPolicy": None, "allocateLoadBalancerNodePorts": None}}
    kubectl("patch", "service", "flip", "--type=merge", "-p", json.dumps(patch))
    eventually(lambda: column(kubectl, "service", "flip", "EXTERNAL-IP") == "<none>")


def test_another_load_balancer_class_is_left_alone(kubectl: Kubectl) -> None:
    apply(kubectl, lb_service("metal", loadBalancerClass="example.com/metal"))
    apply(kubectl, lb_service("after-metal"))  # queued after: once it has an address, "metal" was seen
    eventually(lambda: column(kubectl, "service", "after-metal", "EXTERNAL-IP") != "<pending>")
    assert column(kubectl, "service", "metal", "EXTERNAL-IP") == "<pending>"


def test_ingresses_of_our_class_get_an_address_and_others_do_not(kubectl: Kubectl) -> None:
    classes = json.loads(kubectl("get", "ingressclass", "gitops", "-o", "json"))
    assert classes["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    apply(
        kubectl,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "nginx"},
            "spec": {"controller": "k8s.io/ingress-nginx"},
        },
    )
    apply(kubectl, ingress("elsewhere", "nginx"))
    apply(kubectl, ingress("ours", "gitops"))
    eventually(lambda: column(kubectl, "ingress", "ours", "ADDRESS") == "172.18.0.2,172.18.0.3")
    assert kubectl("get", "ingress", "elsewhere", "-o", "jsonpath={.status.loadBalancer.ingress}") == ""


def test_addresses_come_from_the_simulated_nodes(tmp_path: Path) -> None:
    """With the real node agents: `kubectl get svc` shows the nodes' InternalIPs."""
    config = ClusterConfig.default(2)
    config.heartbeat_seconds = 0.5
    c = EmbeddedCluster(None, api_port=0, config=config, controllers=["nodes", "servicelb"]).start()
    try:
        kubectl = Kubectl(c.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
        apply(kubectl, lb_service("web"))
        node_ips = kubectl(
            "get", "nodes", "-o", 'jsonpath={.items[*].status.addresses[?(@.type=="InternalIP")].address}'
        )
        expected = ",".join(node_ips.split())
        eventually(lambda: column(kubectl, "service", "web", "EXTERNAL-IP") == expected)
    finally:
        c.stop()
