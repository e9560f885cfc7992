"""CEL expressions run in a faster form that reads paths into the object through
per-request variables; what a user sees must not change: the same verdicts, the same
errors (with the evaluator's own messages) and nothing carried over between requests."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from policies.cel import compile_policies
from policies.cel.library import FUNCTIONS
from policies.types import Obj, Request

API = "admissionregistration.k8s.io/v1"


def policy(*expressions: str) -> Obj:
    rules = [{"apiGroups": ["", "apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["*"]}]
    return {
        "apiVersion": API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "matchConstraints": {"resourceRules": rules},
            "validations": [{"expression": e, "message": f"failed: {e}"} for e in expressions],
        },
    }


def pod(**spec: Any) -> Obj:
    body = {"containers": [{"name": "app", "image": "nginx:1.27"}], **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "a"}, "spec": body}


def verdict(expression: str, obj: Obj) -> tuple[str, str]:
    [p] = compile_policies([policy(expression)])
    [result] = p.validate(Request("CREATE", obj), None).results
    return result.status, result.message


def plain_error(expression: str, obj: Obj) -> str:
    """What the evaluator itself says when the expression runs on the object as written."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - the evaluator raises builtin types
        cel.compile(expression).execute(cel.Context(variables={"object": obj}, functions=FUNCTIONS))
    return str(info.value).strip().splitlines()[0]


@pytest.mark.parametrize(
    ("expression", "passes"),
    [
        ("object.spec.containers.all(c, c.image.startsWith('nginx'))", True),
        ("has(object.spec.hostNetwork) && object.spec.hostNetwork", False),
        ("!has(object.spec.securityContext) || object.spec.securityContext.runAsNonRoot", True),
        ("object.spec.?securityContext.?runAsNonRoot.orValue(false)", False),
        ("has(object.metadata.labels) ? object.metadata.labels.size() > 0 : true", True),
        ("object.metadata.name + '/' + object.metadata.namespace == 'web/a'", True),
        ("[1, 2].exists(object, object == 2)", True),  # a macro may rebind `object`
        ("object.spec.containers.map(c, c.name).exists(n, n == object.spec.containers[0].name)", True),
    ],
)
def test_expressions_read_the_object_as_written(expression: str, passes: bool) -> None:
    assert verdict(expression, pod())[0] == ("pass" if passes else "fail")


@pytest.mark.parametrize(
    "expression",
    [
        "object.spec.template.spec.containers.size() > 0",
        "has(object.spec.template.spec)",
        "object.spec.containers[0].securityContext.privileged == false",
    ],
)
def test_a_path_the_object_lacks_fails_with_the_evaluators_own_error(expression: str) -> None:
    status, message = verdict(expression, pod())
    assert status == "fail"
    assert plain_error(expression, pod()) in message


def test_each_request_sees_its_own_object() -> None:
    [p] = compile_policies([policy("!has(object.spec.hostNetwork) || !object.spec.hostNetwork")])
    obj = pod()
    assert [r.status for r in p.validate(Request("CREATE", obj), None).results] == ["pass"]
    obj["spec"]["hostNetwork"] = True  # the same dict, changed, in a new request
    assert [r.status for r in p.validate(Request("CREATE", obj), None).results] == ["fail"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "a"},
        "spec": {"hostNetwork": False},
    }
    assert [r.status for r in p.validate(Request("CREATE", deployment), None).results] == ["pass"]
