"""CEL policies as users write them: ValidatingAdmissionPolicy with bindings and params,
Kyverno ValidatingPolicy (with autogen) and MutatingPolicy, ClusterPolicy validate.cel,
and the Kubernetes CEL library functions."""

from __future__ import annotations

from typing import Any

import pytest

from policies.cel import CelError, CelValidateRule, compile_policies
from policies.types import Obj, Request
from tests.policies.conftest import controllers_of

VAP_API = "admissionregistration.k8s.io/v1"


class DictLookup:
    """A Lookup over a fixed set of objects (what the test runner's values provide)."""

    def __init__(self, *objects: Obj) -> None:
        self.objects = list(objects)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        for o in self.list(api_version, kind, namespace):
            if o["metadata"]["name"] == name:
                return o
        return None

    def list(self, api_version: str, kind: str, namespace: str = "") -> list[Obj]:
        return [
            o
            for o in self.objects
            if o["apiVersion"] == api_version and o["kind"] == kind and o["metadata"].get("namespace", "") == namespace
        ]


def pod(name: str = "web", namespace: str = "team-a", labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    containers = spec.pop("containers", [{"name": "app", "image": "nginx:1.27"}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": containers, **spec},
    }


def vap(name: str, validations: list[Obj], **spec: Any) -> Obj:
    constraints = {
        "resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}
        ]
    }
    return {
        "apiVersion": VAP_API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"matchConstraints": constraints, "validations": validations, **spec},
    }


def binding(name: str, policy: str, actions: list[str], **spec: Any) -> Obj:
    return {
        "apiVersion": VAP_API,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": policy, "validationActions": actions, **spec},
    }


NO_LATEST = [
    {
        "expression": "object.spec.containers.all(c, !c.image.endsWith(':latest'))",
        "messageExpression": "'pod ' + object.metadata.name + ' uses a latest tag'",
    }
]


def results(docs: list[Obj], obj: Obj, lookup: Any = None, labels: dict[str, str] | None = None) -> list[Any]:
    request = Request("CREATE", obj, namespace_labels=labels or {})
    return [r for p in compile_policies(docs) for r in p.validate(request, lookup).results]


def test_unbound_vap_denies_with_its_message_expression() -> None:
    [bad] = results([vap("no-latest", NO_LATEST)], pod(containers=[{"name": "a", "image": "nginx:latest"}]))
    assert (bad.policy, bad.status, bad.enforce, bad.message) == (
        "no-latest",
        "fail",
        True,
        "pod web uses a latest tag",
    )
    assert bad.policy_kind == "ValidatingAdmissionPolicy" and bad.resource == "Pod/team-a/web"
    [good] = results([vap("no-latest", NO_LATEST)], pod())
    assert good.status == "pass"


def test_binding_actions_and_match_resources_select_what_is_enforced() -> None:
    docs = [
        vap("no-latest", NO_LATEST),
        binding("audit-all", "no-latest", ["Audit", "Warn"]),
        binding(
            "deny-prod",
            "no-latest",
            ["Deny"],
            matchResources={"namespaceSelector": {"matchLabels": {"env": "prod"}}},
        ),
    ]
    latest = pod(containers=[{"name": "a", "image": "nginx:latest"}])
    dev = results(docs, latest, labels={"env": "dev"})
    assert [(r.rule, r.status, r.enforce) for r in dev] == [("audit-all", "fail", False)]
    prod = results(docs, latest, labels={"env": "prod"})
    assert sorted((r.rule, r.enforce) for r in prod) == [("audit-all", False), ("deny-prod", True)]


def test_params_come_from_the_lookup_and_missing_params_deny() -> None:
    policy = vap(
        "max-containers",
        [{"expression": "size(object.spec.containers) <= int(params.data.max)", "message": "too many containers"}],
        paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
    )
    bound = binding("limit", "max-containers", ["Deny"], paramRef={"name": "limits", "namespace": "policy"})
    limits = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "limits", "namespace": "policy"}}
    lookup = DictLookup({**limits, "data": {"max": "1"}})
    two = pod(containers=[{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])
    [r] = results([policy, bound], two, lookup)
    assert (r.status, r.message) == ("fail", "too many containers")
    [r] = results([policy, bound], pod(), lookup)
    assert r.status == "pass"
    [r] = results([policy, bound], pod(), DictLookup())
    assert r.status == "fail" and "no params found" in r.message


def test_match_conditions_skip_and_exclusions_drop_the_request() -> None:
    policy = vap(
        "labelled-only",
        [{"expression": "false", "message": "never"}],
        matchConditions=[
            {"name": "labelled", "expression": "has(object.metadata.labels) && 'team' in object.metadata.labels"}
        ],
    )
    [r] = results([policy], pod())
    assert r.status == "skip"
    [r] = results([policy], pod(labels={"team": "a"}))
    assert r.status == "fail"
    policy["spec"]["matchConstraints"]["excludeResourceRules"] = [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["pods"], "resourceNames": ["web"]}
    ]
    assert results([policy], pod(labels={"team": "a"})) == []


def test_failure_policy_decides_what_an_erroring_expression_does() -> None:
    broken = [{"expression": "object.spec.nodeName == 'x'", "message": "wrong node"}]
    [r] = results([vap("strict", broken)], pod())
    assert r.status == "fail" and "nodeName" in r.message
    [r] = results([vap("lenient", broken, failurePolicy="Ignore")], pod())
    assert r.status == "pass"


def test_compile_errors_name_policy_and_expression() -> None:
    with pytest.raises(
        CelError, match=r"ValidatingAdmissionPolicy broken: spec.validations\[0\].expression.*object.spec\.\("
    ):
        compile_policies([vap("broken", [{"expression": "object.spec.("}])])
    with pytest.raises(CelError, match="undefined variable 'variables.nope'"):
        compile_policies([vap("vars", [{"expression": "variables.nope"}])])


def validating_policy(expression: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "policies.kyverno.io/v1",
        "kind": "ValidatingPolicy",
        "metadata": {"name": "no-privileged"},
        "spec": {
            "validationActions": ["Audit"],
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                ]
            },
            "variables": [
                {
                    "name": "containers",
                    "expression": "object.spec.containers + object.spec.?initContainers.orValue([])",
                }
            ],
            "validations": [{"expression": expression, "message": "privileged containers are not allowed"}],
            **spec,
        },
    }


PRIVILEGED = "variables.containers.all(c, !c.?securityContext.?privileged.orValue(false))"


def test_validating_policy_autogen_judges_pod_templates_of_controllers() -> None:
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "a", "image": "a:1", "securityContext": {"privileged": True}}]},
    }
    deployment, cronjob = controllers_of(template)
    [r] = results([validating_policy(PRIVILEGED)], deployment)
    assert (r.rule, r.status, r.enforce, r.policy_kind) == ("autogen-no-privileged", "fail", False, "ValidatingPolicy")
    [r] = results([validating_policy(PRIVILEGED)], cronjob)
    assert (r.rule, r.status) == ("autogen-cronjobs-no-privileged", "fail")
    only_deployments = validating_policy(PRIVILEGED, autogen={"podControllers": {"controllers": ["deployments"]}})
    assert results([only_deployments], cronjob) == []
    [r] = results([validating_policy(PRIVILEGED)], pod(initContainers=[{"name": "i", "image": "i:1"}]))
    assert r.status == "pass"


def test_mutating_policy_applies_configuration_and_json_patch() -> None:
    policy = {
        "apiVersion": "policies.kyverno.io/v1alpha1",
        "kind": "MutatingPolicy",
        "metadata": {"name": "add-team"},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                ]
            },
            "mutations": [
                {
                    "patchType": "ApplyConfiguration",
                    "applyConfiguration": {
                        "expression": "Object{metadata: Object.metadata{labels: {'team': 'platform'}}}"
                    },
                },
                {
                    "patchType": "JSONPatch",
                    "jsonPatch": {
                        "expression": "[JSONPatch{op: 'add', path: '/spec/priority', value: "
                        "object.metadata.labels.team == 'platform' ? 10 : 0}]"
                    },
                },
            ],
        },
    }
    [compiled] = compile_policies([policy])
    outcome = compiled.mutate(Request("CREATE", pod(labels={"app": "web"})), None)
    assert outcome.patched is not None
    assert outcome.patched["metadata"]["labels"] == {"app": "web", "team": "platform"}
    assert outcome.patched["spec"]["priority"] == 10
    assert [r.status for r in outcome.results] == ["pass"]


def test_cluster_policy_cel_rule_with_variables_and_namespace_object() -> None:
    rule = CelValidateRule(
        {
            "variables": [{"name": "ns", "expression": "namespaceObject.metadata.name"}],
            "expressions": [
                {"expression": "variables.ns != 'default'", "message": "use a namespace"},
                {"expression": "request.operation == 'CREATE' && object.metadata.?labels[?'app'].hasValue()"},
            ],
        },
        "pol",
        "rule",
    )
    assert rule.evaluate(Request("CREATE", pod(labels={"app": "x"})), None) is None
    assert rule.evaluate(Request("CREATE", pod(namespace="default", labels={"app": "x"})), None) == "use a namespace"
    message = rule.evaluate(Request("CREATE", pod()), None)
    assert message is not None and message.startswith("failed expression: request.operation")
    with pytest.raises(CelError, match="policy pol: rule bad: validate.cel"):
        CelValidateRule({"expressions": [{"expression": "1 +"}]}, "pol", "bad")


def test_cel_preconditions_gate_a_rule() -> None:
    rule = CelValidateRule(
        {"expressions": [{"expression": "false"}]},
        "pol",
        "rule",
        preconditions=[{"name": "beta", "expression": "object.apiVersion == 'batch/v1beta1'"}],
    )
    assert not rule.applies(Request("CREATE", pod()), None)


@pytest.mark.parametrize(
    "expression",
    [
        "quantity('1Gi').isGreaterThan(quantity('1000Mi'))",
        "quantity('500m').compareTo(quantity('0.5')) == 0",
        "quantity('1.5').add(quantity('500m')).asInteger() == 2",
        "isQuantity('10Ki') && !isQuantity('ten')",
        "[1, 2, 3].isSorted() && [3, 1].sum() == 4 && [3, 1, 2].min() == 1 && [3, 1, 2].max() == 3",
        "['a', 'b', 'c'].indexOf('b') == 1 && 'hello'.indexOf('l') == 2 && 'hello'.lastIndexOf('l') == 3",
        "'Hello'.lowerAscii() == 'hello' && 'a,b'.split(',') == ['a', 'b'] && ['x', 'y'].join('-') == 'x-y'",
        "' x '.trim() == 'x' && 'abc'.substring(1) == 'bc' && 'aaa'.replace('a', 'b', 2) == 'bba'",
        "'%s has %d items'.format(['list', 3]) == 'list has 3 items'",
        "'v1.2.3-rc1'.find('[0-9]+') == '1' && 'a1b22'.findAll('[0-9]+') == ['1', '22']",
        "url('https://example.com:8443/a?x=1').getHostname() == 'example.com'",
        "url('https://example.com:8443/a?x=1').getPort() == '8443' && isURL('/path') && !isURL('nope')",
        "ip('10.0.0.1').family() == 4 && cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))",
        "isIP('::1') && ip('::1').isLoopback() && !isCIDR('10.0.0.1')",
        "string(true) == 'true' && string(quantity('1Gi')) == '1Gi'",
        "optional.of(1).orValue(2) == 1 && {'a': 1}[?'b'].orValue(5) == 5 && [7][?0].value() == 7",
        "semver('1.2.3').isLessThan(semver('1.10.0')) && semver('2.0.0').major() == 2",
        "image('ghcr.io/org/app:v1').registry() == 'ghcr.io' && image('nginx').repository() == 'library/nginx'",
    ],
)
def test_kubernetes_cel_library(expression: str) -> None:
    policy = vap("lib", [{"expression": expression, "message": "false"}])
    [r] = results([policy], pod())
    assert (r.status, r.message) == ("pass", "")
