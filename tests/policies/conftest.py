"""Shared helpers for the policy tests: the peer suite's location and a request builder."""

from __future__ import annotations

from typing import Any

from policies.types import Request
from tests.conftest import SHARED

PEER_SUITE = SHARED / "peer-suites" / "kyverno-policies"


def pod(name: str = "p", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    """A Pod with one container; keyword arguments replace fields of its spec."""
    body: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": body}


def create(obj: dict[str, Any], **kw: Any) -> Request:
    return Request(operation="CREATE", object=obj, **kw)
