"""Label and field selectors behave as `kubectl get -l ...` / `--field-selector ...` do."""

from __future__ import annotations

import pytest

from controllers import errors
from controllers.kinds import ResourceType, builtin_types
from controllers.selectors import (
    LabelSelector,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)


def rt(group: str, kind: str) -> ResourceType:
    return next(r for r in builtin_types() if r.group == group and r.kind == kind)


POD = rt("", "Pod")

# ---------------------------------------------------------------------------- label selectors

FULL = "a=b,c!=d,e in (x,y),f notin (z),g,!h"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"a": "b", "e": "x", "g": ""}, True),
        ({"a": "b", "c": "other", "e": "y", "f": "w", "g": "1"}, True),
        ({"a": "b", "e": "x"}, False),  # g must exist
        ({"a": "b", "e": "x", "g": "1", "h": "1"}, False),  # h must not exist
        ({"a": "b", "c": "d", "e": "x", "g": "1"}, False),  # c!=d
        ({"a": "b", "e": "z", "g": "1"}, False),  # e in (x,y)
        ({"a": "b", "e": "x", "f": "z", "g": "1"}, False),  # f notin (z)
        ({"a": "c", "e": "x", "g": "1"}, False),
    ],
)
def test_set_based_and_equality_requirements(labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(FULL).matches(labels) is expected


def test_not_equals_and_notin_match_when_the_label_is_absent() -> None:
    assert parse_label_selector("tier!=db").matches({})
    assert parse_label_selector("tier notin (db,cache)").matches({"app": "x"})


def test_double_equals_spaces_and_canonical_string() -> None:
    sel = parse_label_selector(" tier == web , app in ( b , a ) ")
    assert sel.matches({"tier": "web", "app": "a"})
    assert str(sel) == "app in (a,b),tier=web"  # sorted by key, values sorted
    assert str(parse_label_selector(FULL)) == FULL


def test_empty_selector_matches_everything() -> None:
    sel = parse_label_selector("")
    assert sel.empty and sel.matches({}) and sel.matches({"a": "b"})
    assert parse_label_selector(None).empty


def test_empty_value_and_numeric_comparisons() -> None:
    assert parse_label_selector("a=").matches({"a": ""})
    assert not parse_label_selector("a=").matches({})
    assert parse_label_selector("gen>2").matches({"gen": "3"})
    assert not parse_label_selector("gen<2").matches({"gen": "x"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a in x", "found 'x', expected: '('"),
        ("a in (x", "found '', expected: ',', ')' or identifier"),
        ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_syntax_errors_are_bad_requests(text: str, fragment: str) -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_label_selector(text)
    assert exc.value.code == 400
    assert fragment in exc.value.message


def test_invalid_key_and_value_name_the_offending_part() -> None:
    with pytest.raises(errors.BadRequest, match=r'key: Invalid value: "-bad": name part must consist of'):
        parse_label_selector("-bad=x")
    with pytest.raises(errors.BadRequest, match=r'values\[0\]\[app\]: Invalid value: "web_": a valid label'):
        parse_label_selector("app=web_")


def test_label_selector_object_null_matches_nothing_and_empty_everything() -> None:
    assert not label_selector_from_dict(None).matches({"app": "web"})
    assert not label_selector_from_dict(None).empty
    assert label_selector_from_dict({}).matches({"app": "web"})
    assert not LabelSelector.nothing().matches({})


def test_label_selector_object_with_expressions() -> None:
    sel = label_selector_from_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
            ],
        }
    )
    assert sel.matches({"app": "web", "tier": "fe", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "fe", "team": "x", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "fe", "team": "x", "env": "prod"})
    assert not sel.matches({"app": "web", "tier": "fe"})
    assert str(sel) == "app=web,!canary,env notin (prod),team,tier in (be,fe)"


def test_label_selector_object_rejects_bad_operator_and_empty_in() -> None:
    with pytest.raises(errors.BadRequest, match='"Equals" is not a valid label selector operator'):
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]})
    with pytest.raises(errors.BadRequest, match="values set can't be empty"):
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})


# ---------------------------------------------------------------------------- field selectors


def pod(name: str, node: str = "", phase: str = "Pending", ns: str = "default") -> dict[str, object]:
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec, "status": {"phase": phase}}


def test_unscheduled_pods_by_empty_node_name() -> None:
    sel = parse_field_selector("spec.nodeName=", POD)
    assert sel.matches(pod("a"))
    assert not sel.matches(pod("b", node="n1"))


def test_field_operators_and_conjunction() -> None:
    sel = parse_field_selector("metadata.namespace!=kube-system,status.phase==Running", POD)
    assert sel.matches(pod("a", phase="Running"))
    assert not sel.matches(pod("a", phase="Pending"))
    assert not sel.matches(pod("a", phase="Running", ns="kube-system"))
    assert parse_field_selector("metadata.name=a", POD).matches(pod("a"))
    assert parse_field_selector("", POD).empty


def test_unsupported_field_uses_the_apiserver_message() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_field_selector("spec.foo=bar", POD)
    assert exc.value.message == "field label not supported: spec.foo"
    with pytest.raises(errors.BadRequest, match="field label not supported: spec.nodeName"):
        parse_field_selector("spec.nodeName=x", rt("apps", "Deployment"))


def test_malformed_term() -> None:
    with pytest.raises(errors.BadRequest, match="invalid selector: 'foo'; can't understand 'foo'"):
        parse_field_selector("foo", POD)


def test_escaped_values() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b", POD)
    assert sel.matches(pod("a,b"))


def test_per_kind_fields_and_typed_values() -> None:
    node = rt("", "Node")
    assert parse_field_selector("spec.unschedulable=false", node).matches({"spec": {}})
    assert parse_field_selector("spec.unschedulable=true", node).matches({"spec": {"unschedulable": True}})
    with pytest.raises(errors.BadRequest, match="field label not supported: metadata.namespace"):
        parse_field_selector("metadata.namespace=x", node)  # Node is cluster-scoped
    job = rt("batch", "Job")
    assert parse_field_selector("status.successful=0", job).matches({"status": {}})
    assert parse_field_selector("status.successful=2", job).matches({"status": {"successful": 2}})
    event = rt("", "Event")
    ev = {"involvedObject": {"kind": "Pod", "name": "web-1"}, "source": {"component": "kubelet"}}
    sel = parse_field_selector("involvedObject.kind=Pod,involvedObject.name=web-1,source=kubelet", event)
    assert sel.matches(ev)
    secret = rt("", "Secret")
    assert parse_field_selector("type=kubernetes.io/tls", secret).matches({"type": "kubernetes.io/tls"})
    rs = rt("apps", "ReplicaSet")
    assert parse_field_selector("status.replicas!=0", rs).matches({"status": {"replicas": 3}})


def test_custom_resources_only_metadata_plus_selectable_fields() -> None:
    crd = ResourceType("example.com", "v1", "Widget", "widgets", True, crd=True)
    widget = {"metadata": {"name": "w", "namespace": "d"}, "spec": {"color": "red"}}
    assert parse_field_selector("metadata.name=w", crd).matches(widget)
    with pytest.raises(errors.BadRequest, match="field label not supported: spec.color"):
        parse_field_selector("spec.color=red", crd)
    assert parse_field_selector("spec.color=red", crd, selectable_fields=[".spec.color"]).matches(widget)
