"""The default bundle's signed-images policy as `gitops up --signed-registry` configures
it, enforced by the API server's policy gate against a real registry on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.cluster import EmbeddedCluster
from gitops.policygate import apply_policies, load_policies
from policies.admission import ClusterPolicies, install, uninstall
from policies.images import ImageVerifier
from tests.conftest import Kubectl
from tests.policies.images_registry import REGISTRY_BIN, CosignKey, Registry, sign_legacy

pytestmark = pytest.mark.skipif(
    not Path(REGISTRY_BIN).exists(), reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry (.ci/run does)"
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    (tmp_path / "registry").mkdir()
    reg = Registry(tmp_path / "registry").start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def signed_gate(cluster: EmbeddedCluster, registry: Registry) -> Iterator[tuple[ClusterPolicies, CosignKey]]:
    key = CosignKey()
    policies = install(cluster, cluster.client, verifier=ImageVerifier(frozenset({registry.host}), timeout=10.0))
    apply_policies(cluster.client, load_policies("default", (f"{registry.host}/*",), key.public_pem))
    try:
        yield policies, key
    finally:
        uninstall(cluster, policies)


def pod(name: str, image: str) -> str:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": image}]},
    }
    return yaml.safe_dump(obj)


def test_signed_images_from_configured_registries_only(
    signed_gate: tuple[ClusterPolicies, CosignKey], registry: Registry, kubectl: Kubectl
) -> None:
    _, key = signed_gate
    digest = registry.push_image("shop/web", "v1", b"web v1")
    sign_legacy(registry, "shop/web", digest, key)
    registry.push_image("shop/unsigned", "v1", b"not signed")

    # Signed: admitted, and the tag is pinned to the verified digest.
    kubectl("apply", "-f", "-", input=pod("signed", f"{registry.host}/shop/web:v1"))
    image = kubectl("get", "pod", "signed", "-o", "jsonpath={.spec.containers[0].image}")
    assert image == f"{registry.host}/shop/web:v1@{digest}"

    # Unsigned image from a configured registry: refused, naming policy and rule.
    proc = kubectl.run("apply", "-f", "-", input=pod("unsigned", f"{registry.host}/shop/unsigned:v1"), check=False)
    assert proc.returncode != 0
    assert "require-signed-images: verify-signature:" in proc.stderr
    assert "shop/unsigned" in proc.stderr

    # Other registries are not asked for signatures (the rest of the bundle still applies).
    kubectl("apply", "-f", "-", input=pod("elsewhere", "docker.io/library/nginx:1.25"))
