"""Kyverno mutate and generate rules: strategic merge with anchors, JSON patches,
foreach, and the objects generate rules describe."""

from __future__ import annotations

from typing import Any

from policies.engine import PolicySet
from tests.policies.conftest import create, pod


def mutate_policy(name: str, mutate: dict[str, Any], kinds: tuple[str, ...] = ("Pod",)) -> dict[str, Any]:
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": name},
        "spec": {"rules": [{"name": "m", "match": {"any": [{"resources": {"kinds": list(kinds)}}]}, "mutate": mutate}]},
    }


def test_add_if_absent_and_global_anchor() -> None:
    policy = mutate_policy(
        "evict",
        {
            "patchStrategicMerge": {
                "metadata": {"annotations": {"+(safe-to-evict)": "true"}},
                "spec": {"volumes": [{"<(emptyDir)": {}}]},
            }
        },
    )
    policies = PolicySet.from_objects([policy])
    with_empty_dir = pod(volumes=[{"name": "tmp", "emptyDir": {}}])
    outcome = policies.admit(create(with_empty_dir))
    assert outcome.patched is not None
    assert outcome.patched["metadata"]["annotations"] == {"safe-to-evict": "true"}
    assert outcome.patched["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert "annotations" not in with_empty_dir["metadata"], "the request's object is not modified"
    # No emptyDir: the global anchor skips the rule. Already annotated: nothing to patch.
    assert [r.status for r in policies.admit(create(pod())).results] == ["skip"]
    annotated = pod(volumes=[{"name": "tmp", "emptyDir": {}}])
    annotated["metadata"]["annotations"] = {"safe-to-evict": "false"}
    outcome = policies.admit(create(annotated))
    assert outcome.patched is None and [r.status for r in outcome.results] == ["skip"]


def test_conditional_anchor_patches_matching_list_elements_by_merge_key() -> None:
    policy = mutate_policy(
        "pull",
        {"patchStrategicMerge": {"spec": {"containers": [{"(image)": "*:latest", "imagePullPolicy": "Always"}]}}},
    )
    obj = pod(containers=[{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:latest"}])
    patched = PolicySet.from_objects([policy]).admit(create(obj)).patched
    assert patched is not None
    assert patched["spec"]["containers"] == [
        {"name": "a", "image": "x:1"},
        {"name": "b", "image": "y:latest", "imagePullPolicy": "Always"},
    ]


def test_merge_adds_named_elements_and_variables() -> None:
    policy = mutate_policy(
        "sidecar",
        {
            "patchStrategicMerge": {
                "metadata": {"labels": {"owner": "{{ request.object.metadata.namespace }}"}},
                "spec": {"containers": [{"name": "proxy", "image": "envoy:1.30"}]},
            }
        },
    )
    patched = PolicySet.from_objects([policy]).admit(create(pod())).patched
    assert patched is not None
    assert patched["metadata"]["labels"] == {"owner": "shop"}
    assert [c["name"] for c in patched["spec"]["containers"]] == ["app", "proxy"]


def test_json6902_and_foreach() -> None:
    json_patch = mutate_policy(
        "jp",
        {
            "patchesJson6902": (
                "- op: add\n  path: /metadata/labels\n  value: {team: '{{ request.object.metadata.name }}'}\n"
            )
        },
    )
    patched = PolicySet.from_objects([json_patch]).admit(create(pod(name="web"))).patched
    assert patched is not None and patched["metadata"]["labels"] == {"team": "web"}

    foreach = mutate_policy(
        "fe",
        {
            "foreach": [
                {
                    "list": "request.object.spec.containers",
                    "patchStrategicMerge": {
                        "spec": {
                            "containers": [{"name": "{{ element.name }}", "securityContext": {"runAsNonRoot": True}}]
                        }
                    },
                }
            ]
        },
    )
    obj = pod(containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])
    patched = PolicySet.from_objects([foreach]).admit(create(obj)).patched
    assert patched is not None
    assert all(c["securityContext"] == {"runAsNonRoot": True} for c in patched["spec"]["containers"])


def test_mutation_runs_before_validation() -> None:
    add_label = mutate_policy("add", {"patchStrategicMerge": {"metadata": {"labels": {"+(team)": "core"}}}})
    require = {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "require"},
        "spec": {
            "validationFailureAction": "Enforce",
            "rules": [
                {
                    "name": "team",
                    "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "validate": {"pattern": {"metadata": {"labels": {"team": "?*"}}}},
                }
            ],
        },
    }
    outcome = PolicySet.from_objects([require, add_label]).admit(create(pod()))
    assert outcome.allowed
    assert [(r.policy, r.status) for r in outcome.results] == [("add", "pass"), ("require", "pass")]


def test_generate_data() -> None:
    policy = {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "netpol"},
        "spec": {
            "rules": [
                {
                    "name": "deny-all",
                    "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
                    "generate": {
                        "apiVersion": "networking.k8s.io/v1",
                        "kind": "NetworkPolicy",
                        "name": "default-deny",
                        "namespace": "{{ request.object.metadata.name }}",
                        "data": {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
                    },
                }
            ]
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    outcome = PolicySet.from_objects([policy]).admit(create(namespace))
    assert outcome.generated == [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": "team-a"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }
    ]
