"""The compiled forms admission evaluates (JMESPath closures, generated pattern walks,
per-request shared findings) give exactly what the plain definitions give: the
jmespath package's own interpreter, and the pattern walk that explains a mismatch."""

from __future__ import annotations

import random
from typing import Any

import jmespath
import pytest

from gitops.yamlload import load_manifests
from policies.engine import PolicySet
from policies.kyverno.jmes import OPTIONS, VariableError, has_variables, search
from policies.kyverno.pattern import MISS, OK, SKIP, compile_node
from tests.policies.conftest import PEER_SUITE, create, pod

DOC: dict[str, Any] = {
    "request": {
        "operation": "CREATE",
        "object": {
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "annotations": {}},
            "spec": {
                "containers": [
                    {
                        "name": "a",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 80, "hostPort": 8080}],
                        "securityContext": {"capabilities": {"drop": ["all"], "add": ["NET_RAW"]}},
                    },
                    {"name": "b", "image": "redis", "ports": [], "securityContext": None},
                ],
                "initContainers": [{"name": "init", "image": "busybox"}],
                "volumes": [{"name": "v", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/"}}],
                "replicas": 3,
                "ratio": 0,
                "flag": False,
            },
        },
    },
    "element": {"name": "x", "image": "nginx", "securityContext": {"capabilities": {"drop": ["ALL"]}}},
}

EXPRESSIONS = [
    "request.object.metadata.name",
    "request.operation || 'BACKGROUND'",
    "request.missing || `[]`",
    "request.object.spec.containers[].name",
    "request.object.spec.containers[*].ports[].hostPort",
    "request.object.spec.[ephemeralContainers, initContainers, containers][].image",
    "request.object.spec.[ephemeralContainers, initContainers, containers][].securityContext.capabilities.add[]",
    "request.object.spec.containers[?name == 'a'].image | [0]",
    "request.object.spec.containers[?ports[?hostPort > `0`]].name",
    "request.object.spec.containers[0].securityContext.capabilities.drop[].to_upper(@) || `[]`",
    "request.object.spec.volumes[].keys(@)[] || ''",
    "element.keys(@)[]",
    "request.object.metadata.labels.*",
    "request.object.metadata.labels.{a: app, t: tier}",
    "request.object.spec.containers[-1].name",
    "request.object.spec.containers[1:].name",
    "request.object.spec.replicas > `2` && request.object.spec.flag == `false`",
    "!request.object.spec.ratio",
    "!request.object.spec.flag",
    "request.object.spec.replicas == `3.0`",
    "request.object.spec.ratio == `false`",
    "length(request.object.spec.containers)",
    "sort_by(request.object.spec.containers, &name)[].name",
    "max_by(request.object.spec.containers, &name).name",
    "contains(request.object.spec.containers[].name, 'b')",
    "join(',', request.object.spec.containers[].image)",
    "to_string(request.object.spec.replicas)",
    "split(request.object.spec.containers[0].image, ':')",
    "request.object.spec.containers[].securityContext.capabilities || 'none'",
    "not_null(request.nothing, request.operation)",
    '`{"a": [1, 2]}`.a[1]',
    "@.request.operation",
    "request.object.spec.containers[?!securityContext].name",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_compiled_jmespath_gives_what_the_interpreter_gives(expression: str) -> None:
    expected = jmespath.search(expression, DOC, options=OPTIONS)
    assert search(expression, DOC) == expected


@pytest.mark.parametrize(
    "expression",
    ["length(request.object.spec.replicas)", "to_upper(request.object.spec.replicas)", "nope(request)"],
)
def test_compiled_jmespath_fails_where_the_interpreter_fails(expression: str) -> None:
    with pytest.raises(jmespath.exceptions.JMESPathError):
        jmespath.search(expression, DOC, options=OPTIONS)
    with pytest.raises(VariableError, match="failed to evaluate"):
        search(expression, DOC)


def _peer_patterns() -> list[Any]:
    patterns: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and not has_variables(value):
                    patterns.append(value)
                elif key == "anyPattern" and isinstance(value, list):
                    patterns.extend(p for p in value if not has_variables(p))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for top in ("best-practices", "pod-security"):
        for path in sorted((PEER_SUITE / top).rglob("*.yaml")):
            if path.stem == path.parent.name:
                walk(load_manifests(path.read_text(), str(path)))
    return patterns


_NOISE: list[Any] = [None, True, False, 0, 1, "", "x", [], {}, ["a"], {"a": 1}, "RuntimeDefault", "ALL", 8080, "*"]


def _perturb(value: Any, rng: random.Random) -> Any:
    """The value with random fields dropped or replaced by values of other types."""
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            roll = rng.random()
            if roll < 0.08:
                continue
            out[key] = rng.choice(_NOISE) if roll < 0.16 else _perturb(sub, rng)
        return out
    if isinstance(value, list):
        items = [_perturb(v, rng) for v in value if rng.random() > 0.1]
        return items + [rng.choice(_NOISE)] if rng.random() < 0.1 else items
    return value


def test_pattern_fast_walk_agrees_with_the_explaining_walk() -> None:
    nodes = [compile_node(p) for p in _peer_patterns()]
    assert len(nodes) > 20
    rng = random.Random(5)
    resources = [_perturb(_pod_like(i), rng) for i in range(60)]
    for node in nodes:
        for resource in resources:
            miss = node.check(resource, "/")
            expected = OK if miss is None else SKIP if miss.skips else MISS
            assert node.fast(resource) == expected, (resource, miss)


def _pod_like(i: int) -> dict[str, Any]:
    container = {
        "name": f"c{i}",
        "image": "nginx:latest" if i % 3 == 0 else "registry.example/app:1.0",
        "ports": [{"containerPort": 80, "hostPort": 80 if i % 4 == 0 else 0}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": i % 2 == 0,
            "runAsNonRoot": True,
            "privileged": i % 5 == 0,
            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"] if i % 6 == 0 else []},
            "seccompProfile": {"type": "RuntimeDefault" if i % 2 else "Unconfined"},
        },
    }
    spec = {
        "containers": [container, dict(container, name="side")],
        "initContainers": [dict(container, name="init")] if i % 2 else [],
        "hostNetwork": i % 7 == 0,
        "volumes": [{"name": "v", "hostPath": {"path": "/var/run/docker.sock"}} if i % 8 == 0 else {"emptyDir": {}}],
        "securityContext": {"runAsNonRoot": i % 3 != 0, "sysctls": [{"name": "kernel.shm_rmid_forced"}]},
    }
    meta = {"name": f"p{i}", "labels": {"app.kubernetes.io/name": "web"} if i % 2 else {}}
    if i % 2:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    template = {"metadata": meta, "spec": spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"template": template}}


def test_pod_security_rules_of_one_request_each_report_their_own_level() -> None:
    """Baseline and restricted rules share one request's findings, yet each applies its
    own controls and exclusions, and the next request is checked afresh."""
    policy = {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "pss"},
        "spec": {
            "validationFailureAction": "Enforce",
            "rules": [
                _pss_rule("baseline", "baseline"),
                _pss_rule("restricted", "restricted"),
                _pss_rule("restricted-but-caps", "restricted", [{"controlName": "Capabilities", "images": ["*"]}]),
            ],
        },
    }
    policies = PolicySet.from_objects([policy])
    lax = pod(containers=[{"name": "a", "image": "nginx", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}])
    first = {r.rule: r for r in policies.admit(create(lax)).results}
    assert first["baseline"].status == "fail" and "Capabilities" in first["baseline"].message
    assert first["restricted"].status == "fail" and "Capabilities" in first["restricted"].message
    assert first["restricted-but-caps"].status == "fail"
    assert "Capabilities" not in first["restricted-but-caps"].message
    strict = pod(
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        containers=[
            {
                "name": "a",
                "image": "nginx",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    )
    second = {r.rule: r.status for r in policies.admit(create(strict)).results}
    assert second == {"baseline": "pass", "restricted": "pass", "restricted-but-caps": "pass"}


def _pss_rule(name: str, level: str, exclude: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"level": level, "version": "latest"}
    if exclude:
        body["exclude"] = exclude
    return {"name": name, "match": {"any": [{"resources": {"kinds": ["Pod"]}}]}, "validate": {"podSecurity": body}}
