"""Kyverno validate rules as a user sees them through PolicySet.admit: patterns with
wildcards, operators and anchors, anyPattern, deny conditions, foreach, autogen and
failure actions."""

from __future__ import annotations

from typing import Any

import pytest

from policies.engine import PolicyError, PolicySet
from policies.types import Request
from tests.policies.conftest import controllers_of, create, pod


def cluster_policy(name: str, *rules: dict[str, Any], action: str = "Enforce", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": name},
        "spec": {"validationFailureAction": action, "rules": list(rules), **spec},
    }


def rule(name: str, validate: dict[str, Any], kinds: tuple[str, ...] = ("Pod",), **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": {"any": [{"resources": {"kinds": list(kinds)}}]}, "validate": validate, **extra}


def statuses(policy: dict[str, Any], obj: dict[str, Any], **kw: Any) -> dict[str, str]:
    outcome = PolicySet.from_objects([policy]).admit(create(obj, **kw))
    return {r.rule: r.status for r in outcome.results}


def test_violation_is_denied_with_policy_rule_and_path() -> None:
    policy = cluster_policy(
        "no-latest",
        rule("tag", {"message": "Use a pinned tag.", "pattern": {"spec": {"containers": [{"image": "!*:latest"}]}}}),
    )
    ok = PolicySet.from_objects([policy]).admit(create(pod()))
    assert ok.allowed and [r.status for r in ok.results] == ["pass"]

    bad = pod(containers=[{"name": "a", "image": "x:1"}, {"name": "b", "image": "nginx:latest"}])
    outcome = PolicySet.from_objects([policy]).admit(create(bad))
    assert not outcome.allowed
    [failure] = outcome.blocking
    assert (failure.policy, failure.rule, failure.resource) == ("no-latest", "tag", "Pod/shop/p")
    assert failure.message == "validation error: Use a pinned tag. rule tag failed at path /spec/containers/1/image/"


@pytest.mark.parametrize(
    ("pattern", "value", "status"),
    [
        ("?*", "x", "pass"),
        ("?*", "", "fail"),
        ("*:*", "nginx", "fail"),
        ("eu.foo.io/* | bar.io/*", "bar.io/app", "pass"),
        ("eu.foo.io/* | bar.io/*", "docker.io/app", "fail"),
        (">=1Gi", "1024Mi", "pass"),
        ("<1Gi", "2Gi", "fail"),
        ("100m-2", "500m", "pass"),
        ("100m-2", "3", "fail"),
        ("1!-10", 11, "pass"),
        ("1!-10", 5, "fail"),
        (">10 & <20", 15, "pass"),
        (">10 & <20", 25, "fail"),
        ("<1h", "30m", "pass"),
        ("<1h", "90m", "fail"),
        ("!default", "default", "fail"),
    ],
)
def test_pattern_operators(pattern: str, value: Any, status: str) -> None:
    policy = cluster_policy("ops", rule("r", {"pattern": {"metadata": {"annotations": {"v": pattern}}}}))
    obj = pod()
    obj["metadata"]["annotations"] = {"v": value}
    assert statuses(policy, obj) == {"r": status}


def test_anchors() -> None:
    # Conditional: only containers with a :latest image must pull Always; none -> skip.
    cond = cluster_policy(
        "pull",
        rule("r", {"pattern": {"spec": {"containers": [{"(image)": "*:latest", "imagePullPolicy": "Always"}]}}}),
    )
    assert statuses(cond, pod()) == {"r": "skip"}
    latest = pod(containers=[{"name": "a", "image": "n:latest", "imagePullPolicy": "IfNotPresent"}])
    assert statuses(cond, latest) == {"r": "fail"}
    latest["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    assert statuses(cond, latest) == {"r": "pass"}

    # Equality: checked only when present. Negation: must be absent.
    eq = cluster_policy("eq", rule("r", {"pattern": {"spec": {"=(hostNetwork)": False, "X(hostPID)": "null"}}}))
    assert statuses(eq, pod()) == {"r": "pass"}
    assert statuses(eq, pod(hostNetwork=True)) == {"r": "fail"}
    assert statuses(eq, pod(hostPID=False)) == {"r": "fail"}

    # Existence: at least one container must match.
    exist = cluster_policy("ex", rule("r", {"pattern": {"spec": {"^(containers)": [{"image": "trusted/*"}]}}}))
    assert statuses(exist, pod()) == {"r": "fail"}
    two = pod(containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "trusted/y"}])
    assert statuses(exist, two) == {"r": "pass"}

    # Global: the rule applies only when some container uses the registry.
    glob = cluster_policy(
        "gl",
        rule(
            "r",
            {"pattern": {"spec": {"containers": [{"<(image)": "corp.io/*"}], "imagePullSecrets": [{"name": "?*"}]}}},
        ),
    )
    assert statuses(glob, pod()) == {"r": "skip"}
    assert statuses(glob, pod(containers=[{"name": "a", "image": "corp.io/x"}])) == {"r": "fail"}


def test_any_pattern_and_wildcard_keys() -> None:
    policy = cluster_policy(
        "nonroot",
        rule(
            "r",
            {
                "anyPattern": [
                    {"spec": {"securityContext": {"runAsNonRoot": True}}},
                    {"spec": {"containers": [{"securityContext": {"runAsNonRoot": True}}]}},
                ]
            },
        ),
        rule("apparmor", {"pattern": {"=(metadata)": {"=(annotations)": {"=(apparmor/*)": "runtime/default"}}}}),
    )
    assert statuses(policy, pod(securityContext={"runAsNonRoot": True})) == {"r": "pass", "apparmor": "pass"}
    bad = pod()
    bad["metadata"]["annotations"] = {"apparmor/app": "unconfined"}
    result = PolicySet.from_objects([policy]).admit(create(bad))
    messages = {r.rule: r.message for r in result.results}
    assert "rule r[0] failed at path /spec/securityContext/" in messages["r"]
    assert "rule r[1] failed at path /spec/containers/0/securityContext/" in messages["r"]
    assert {r.rule: r.status for r in result.results}["apparmor"] == "fail"


ADDED = "request.object.spec.containers[].securityContext.capabilities.add[]"


def test_deny_conditions_preconditions_and_message_variables() -> None:
    policy = cluster_policy(
        "caps",
        rule(
            "no-extra-caps",
            {
                "message": "{{ request.object.metadata.name }} adds {{ " + ADDED + " }}",
                "deny": {
                    "conditions": {
                        "all": [
                            {
                                "key": "{{ " + ADDED + " }}",
                                "operator": "AnyNotIn",
                                "value": ["NET_BIND_SERVICE"],
                            }
                        ]
                    }
                },
            },
            preconditions={
                "all": [{"key": "{{ request.operation || 'BACKGROUND' }}", "operator": "NotEquals", "value": "DELETE"}]
            },
        ),
    )
    fine = pod(
        containers=[{"name": "a", "image": "x", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}}]
    )
    assert statuses(policy, fine) == {"no-extra-caps": "pass"}
    bad = pod(containers=[{"name": "a", "image": "x", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}])
    [result] = PolicySet.from_objects([policy]).admit(create(bad)).results
    assert result.status == "fail"
    assert result.message == 'validation error: p adds ["SYS_ADMIN"]. rule no-extra-caps failed'


@pytest.mark.parametrize(
    ("key", "operator", "value", "denied"),
    [
        ("{{ request.object.spec.replicas }}", "GreaterThan", 3, True),
        ("{{ request.object.spec.replicas }}", "LessThanOrEquals", "5", True),
        ("{{ request.object.metadata.name }}", "Equals", "web-*", True),
        ("{{ request.object.metadata.name }}", "NotEquals", "web-*", False),
        ("{{ request.object.spec.template.spec.containers[0].resources.limits.memory }}", "GreaterThan", "1Gi", True),
        ("{{ request.object.spec.template.spec.containers[0].resources.limits.memory }}", "Equals", "2048Mi", True),
        ("{{ request.object.metadata.labels.tier }}", "AnyIn", ["front*", "back"], True),
        ("{{ request.object.metadata.labels.tier }}", "AllNotIn", ["back"], True),
        ("{{ request.object.spec.template.spec.containers[].ports[].containerPort }}", "AnyNotIn", "8000-9000", True),
        ("{{ request.object.spec.template.spec.containers[].ports[].containerPort }}", "AllIn", "8000-9000", False),
        ("{{ request.object.metadata.annotations.ttl }}", "DurationGreaterThan", "1h", True),
        ("{{ to_upper(request.object.metadata.labels.tier) }}", "Equals", "FRONTEND", True),
        ("{{ split(request.object.metadata.name, '-') | length(@) }}", "Equals", 2, True),
        ("{{ regex_match('^web-[0-9]+$', request.object.metadata.name) }}", "Equals", True, True),
        ("{{ add(request.object.spec.replicas, `1`) }}", "Equals", 6, True),
        ("{{ request.object.metadata.labels.missing || 'none' }}", "Equals", "none", True),
        ("{{ semver_compare('1.4.2', '>=1.4.0') }}", "Equals", True, True),
    ],
)
def test_deny_operators(key: str, operator: str, value: Any, denied: bool) -> None:
    policy = cluster_policy(
        "d",
        rule(
            "r",
            {"deny": {"conditions": {"any": [{"key": key, "operator": operator, "value": value}]}}},
            ("Deployment",),
        ),
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "labels": {"tier": "frontend"},
            "annotations": {"ttl": "2h"},
        },
        "spec": {
            "replicas": 5,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "image": "x",
                            "resources": {"limits": {"memory": "2Gi"}},
                            "ports": [{"containerPort": 80}],
                        }
                    ]
                }
            },
        },
    }
    assert statuses(policy, deployment) == {"r": "fail" if denied else "pass"}


def test_foreach_names_the_failing_element() -> None:
    policy = cluster_policy(
        "tags",
        rule(
            "tagged",
            {
                "message": "An image tag is required.",
                "foreach": [{"list": "request.object.spec.containers", "pattern": {"image": "*:*"}}],
            },
        ),
    )
    bad = pod(containers=[{"name": "a", "image": "x:1"}, {"name": "b", "image": "nginx"}])
    [result] = PolicySet.from_objects([policy]).admit(create(bad)).results
    assert result.status == "fail"
    assert result.message.endswith("rule tagged failed at path request.object.spec.containers[1]/image/")
    assert statuses(policy, pod(containers=[])) == {"tagged": "skip"}


def test_autogen_covers_pod_controllers_with_template_paths() -> None:
    policy = cluster_policy(
        "ro",
        rule(
            "ro-rootfs", {"pattern": {"spec": {"containers": [{"securityContext": {"readOnlyRootFilesystem": True}}]}}}
        ),
    )
    template = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    deployment, cronjob = controllers_of(template)
    outcome = PolicySet.from_objects([policy]).admit(create(deployment))
    [result] = outcome.results
    assert (result.rule, result.status) == ("autogen-ro-rootfs", "fail")
    assert "/spec/template/spec/containers/0/securityContext/" in result.message
    assert statuses(policy, cronjob) == {"autogen-cronjob-ro-rootfs": "fail"}
    none = cluster_policy("ro2", *policy["spec"]["rules"])
    none["metadata"]["annotations"] = {"pod-policies.kyverno.io/autogen-controllers": "none"}
    assert statuses(none, deployment) == {}


def test_match_exclude_and_failure_action_overrides() -> None:
    policy = cluster_policy(
        "labels",
        {
            "name": "need-team",
            "match": {
                "any": [
                    {
                        "resources": {
                            "kinds": ["apps/v1/Deployment"],
                            "namespaceSelector": {"matchLabels": {"env": "prod"}},
                        }
                    }
                ]
            },
            "exclude": {
                "any": [{"resources": {"names": ["legacy-*"]}}, {"subjects": [{"kind": "Group", "name": "admins"}]}]
            },
            "validate": {"pattern": {"metadata": {"labels": {"team": "?*"}}}},
        },
        action="Audit",
        validationFailureActionOverrides=[{"action": "Enforce", "namespaces": ["prod-*"]}],
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod-eu"},
        "spec": {},
    }
    policies = PolicySet.from_objects([policy])
    prod = {"env": "prod"}
    outcome = policies.admit(create(deployment, namespace_labels=prod))
    assert [(r.status, r.enforce) for r in outcome.results] == [("fail", True)]
    assert not outcome.allowed
    assert policies.admit(create(deployment, namespace_labels={"env": "dev"})).results == []
    legacy = {**deployment, "metadata": {"name": "legacy-web", "namespace": "prod-eu"}}
    assert policies.admit(create(legacy, namespace_labels=prod)).results == []
    admin = create(deployment, namespace_labels=prod, groups=("admins",))
    assert policies.admit(admin).results == []
    other_ns = {**deployment, "metadata": {"name": "web", "namespace": "staging"}}
    audit = policies.admit(create(other_ns, namespace_labels=prod))
    assert [(r.status, r.enforce) for r in audit.results] == [("fail", False)]
    assert audit.allowed and audit.warnings


def test_namespaced_policy_applies_only_in_its_namespace() -> None:
    policy = {
        "apiVersion": "kyverno.io/v1",
        "kind": "Policy",
        "metadata": {"name": "local", "namespace": "team-a"},
        "spec": {
            "validationFailureAction": "Enforce",
            "rules": [rule("r", {"pattern": {"metadata": {"labels": {"x": "?*"}}}})],
        },
    }
    policies = PolicySet.from_objects([policy])
    assert not policies.admit(create(pod(namespace="team-a"))).allowed
    assert policies.admit(create(pod(namespace="team-b"))).results == []


def test_context_config_map_through_lookup() -> None:
    class Cluster:
        def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
            if (kind, name, namespace) == ("ConfigMap", "registries", "kyverno"):
                return {"data": {"allowed": "corp.io"}}
            return None

        def list(self, api_version: str, kind: str, namespace: str = "") -> list[dict[str, Any]]:
            return []

    policy = cluster_policy(
        "regs",
        rule(
            "allowed",
            {"pattern": {"spec": {"containers": [{"image": "{{ cfg.data.allowed }}/*"}]}}},
            context=[{"name": "cfg", "configMap": {"name": "registries", "namespace": "kyverno"}}],
        ),
    )
    policies = PolicySet.from_objects([policy])
    ok = pod(containers=[{"name": "a", "image": "corp.io/app:1"}])
    assert [r.status for r in policies.admit(create(ok), Cluster()).results] == ["pass"]
    assert [r.status for r in policies.admit(create(pod()), Cluster()).results] == ["fail"]
    [missing] = policies.admit(create(pod())).results
    assert missing.status == "error" and "ConfigMap kyverno/registries not found" in missing.message


def test_pod_security_levels_and_exclusions() -> None:
    restricted = cluster_policy(
        "pss",
        rule(
            "restricted",
            {
                "podSecurity": {
                    "level": "restricted",
                    "version": "latest",
                    "exclude": [{"controlName": "Capabilities", "images": ["legacy/*"]}],
                }
            },
        ),
    )
    good_sc = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert statuses(restricted, pod(containers=[{"name": "a", "image": "x", "securityContext": good_sc}])) == {
        "restricted": "pass"
    }
    legacy_sc = {k: v for k, v in good_sc.items() if k != "capabilities"}
    assert statuses(restricted, pod(containers=[{"name": "a", "image": "legacy/x", "securityContext": legacy_sc}])) == {
        "restricted": "pass"
    }
    [result] = PolicySet.from_objects([restricted]).admit(create(pod(hostNetwork=True))).results
    assert result.status == "fail"
    assert "Host Namespaces (spec.hostNetwork)" in result.message and "Running as Non-root" in result.message


def test_delete_requests_skip_validation_unless_matched() -> None:
    policy = cluster_policy("p", rule("r", {"pattern": {"metadata": {"labels": {"x": "?*"}}}}))
    outcome = PolicySet.from_objects([policy]).admit(Request(operation="DELETE", object=None, old_object=pod()))
    assert outcome.results == []


def test_compile_errors_name_policy_rule_and_field() -> None:
    bad = cluster_policy(
        "broken", rule("r", {"deny": {"conditions": {"all": [{"key": 1, "operator": "Bigger", "value": 2}]}}})
    )
    with pytest.raises(
        PolicyError,
        match=r"ClusterPolicy broken: spec.rules\[0\] \(r\).validate.deny.conditions.all\[0\]: "
        r"unknown operator 'Bigger'",
    ):
        PolicySet.from_objects([bad])
