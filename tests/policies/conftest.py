"""Shared helpers for the policy tests: the peer suite's location and a request builder."""

from __future__ import annotations

from typing import Any

from policies.types import Request
from tests.conftest import SHARED
from tests.gitops.conftest import git_server as git_server  # the git server fixture, for the sync gate tests

PEER_SUITE = SHARED / "peer-suites" / "kyverno-policies"


def pod(name: str = "p", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    """A Pod with one container; keyword arguments replace fields of its spec."""
    body: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": body}


def controllers_of(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Deployment and a CronJob in "ns" around the same pod template, for autogen rules."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": {"template": template},
    }
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {"jobTemplate": {"spec": {"template": template}}},
    }
    return deployment, cronjob


def create(obj: dict[str, Any], **kw: Any) -> Request:
    return Request(operation="CREATE", object=obj, **kw)
