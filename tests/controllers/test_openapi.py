"""OpenAPI documents: what kubectl's field-validation check and `kubectl explain` rely on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controllers import openapi
from controllers.kinds import Registry, ResourceType

WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer"},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": False,
                    "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}},
                },
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def _widget(schema: dict[str, Any] | None = None) -> ResourceType:
    return ResourceType(
        "example.com",
        "v1",
        "Widget",
        "widgets",
        True,
        ("wg",),
        subresources=("status",),
        schema=schema if schema is not None else WIDGET_SCHEMA,
        crd=True,
    )


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        elif len(schema.get("allOf", [])) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_deployment_definition_types_containers_and_carries_gvk() -> None:
    doc = openapi.openapi_v3_group_version(Registry(), "apps/v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    spec = _resolve(deployment["properties"]["spec"], schemas)
    template = _resolve(spec["properties"]["template"], schemas)
    pod_spec = _resolve(template["properties"]["spec"], schemas)
    containers = pod_spec["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    assert "containers" in pod_spec["required"]
    assert "List of containers" in containers["description"]
    meta = _resolve(deployment["properties"]["metadata"], schemas)
    assert meta is schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]


def test_int_or_string_and_quantity_are_modelled_as_the_real_spec() -> None:
    registry = Registry()
    v3 = openapi.openapi_v3_group_version(registry, "apis/apps/v1")
    assert v3 is not None
    schemas = v3["components"]["schemas"]
    surge = schemas["io.k8s.api.apps.v1.RollingUpdateDeployment"]["properties"]["maxSurge"]
    int_or_string = _resolve(surge, schemas)
    assert int_or_string["format"] == "int-or-string"
    assert int_or_string["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    limits = schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"]["$ref"].endswith("io.k8s.apimachinery.pkg.api.resource.Quantity")

    v2 = openapi.openapi_v2(registry)
    assert v2["swagger"] == "2.0"
    definitions = v2["definitions"]
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    target_port = definitions["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert target_port["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    assert definitions["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"]


def test_index_points_at_every_group_version_with_a_hash() -> None:
    registry = Registry()
    index = openapi.openapi_v3_index(registry)
    paths = index["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/apiextensions.k8s.io/v1"} <= set(paths)
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    raw = openapi.openapi_v3_group_version_bytes(registry, "apis/apps/v1")
    assert raw is not None and orjson.loads(raw)["openapi"].startswith("3.")
    assert openapi.openapi_v3_group_version(registry, "apis/nope/v1") is None
    assert openapi.openapi_v3_group_version_bytes(registry, "apis/nope/v1") is None


def test_every_kind_advertises_field_validation_on_patch() -> None:
    """kubectl sends fieldValidation=Strict, instead of validating client side, only when
    the group-version document has a PATCH tagged with the kind that takes the parameter."""
    registry = Registry()
    registry.add_crd("widgets.example.com", [_widget()])
    for rt in registry.all():
        doc = openapi.openapi_v3_group_version(registry, rt.group_version)
        assert doc is not None
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        patches = [
            op
            for path in doc["paths"].values()
            for method, op in path.items()
            if method == "patch" and op["x-kubernetes-group-version-kind"] == gvk
        ]
        assert patches, rt.kind
        assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patches[0]["parameters"])


def test_strategic_merge_patch_is_not_advertised() -> None:
    doc = openapi.openapi_v3_group_version(Registry(), "apps/v1")
    assert doc is not None
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/merge-patch+json" in patch["requestBody"]["content"]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]


def test_explain_finds_kinds_through_resource_paths() -> None:
    doc = openapi.openapi_v3_group_version(Registry(), "v1")
    assert doc is not None
    ns_pods = doc["paths"]["/api/v1/namespaces/{namespace}/pods"]
    assert ns_pods["get"]["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert ns_pods["get"]["x-kubernetes-action"] == "list"
    scale = doc["paths"]["/api/v1/namespaces/{namespace}/replicationcontrollers/{name}/scale"]["get"]
    assert scale["x-kubernetes-group-version-kind"]["kind"] == "Scale"
    assert "/api/v1/nodes/{name}" in doc["paths"]


@pytest.mark.parametrize(
    "gv",
    [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "apiextensions.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "admissionregistration.k8s.io/v1",
    ],
)
def test_documents_are_self_contained(gv: str) -> None:
    doc = openapi.openapi_v3_group_version(Registry(), gv)
    assert doc is not None
    schemas = doc["components"]["schemas"]
    missing = {r for r in _refs(doc) if r.rsplit("/", 1)[-1] not in schemas}
    assert not missing
    op_ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(op_ids) == len(set(op_ids))


def test_crd_schema_is_published_with_gvk_and_object_meta() -> None:
    registry = Registry()
    registry.add_crd("widgets.example.com", [_widget()])
    assert "apis/example.com/v1" in openapi.openapi_v3_index(registry)["paths"]
    doc = openapi.openapi_v3_group_version(registry, "example.com/v1")
    assert doc is not None
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [{"group": "example.com", "kind": "Widget", "version": "v1"}]
    assert widget["properties"]["metadata"]["$ref"].endswith("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    assert widget["properties"]["spec"]["properties"]["config"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "metadata" not in WIDGET_SCHEMA["properties"], "the registry's schema must not be modified"
    assert "com.example.v1.WidgetList" in doc["components"]["schemas"]


def test_documents_are_cached_until_the_types_change() -> None:
    registry = Registry()
    first = openapi.openapi_v3_index(registry)
    assert openapi.openapi_v3_index(registry) is first
    registry.add_crd("widgets.example.com", [_widget()])
    second = openapi.openapi_v3_index(registry)
    assert second is not first and "apis/example.com/v1" in second["paths"]
    url = second["paths"]["apis/example.com/v1"]["serverRelativeURL"]
    changed = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "string"}}}},
    }
    registry.add_crd("widgets.example.com", [_widget(changed)])
    third = openapi.openapi_v3_index(registry)
    assert third["paths"]["apis/example.com/v1"]["serverRelativeURL"] != url
    doc = openapi.openapi_v3_group_version(registry, "example.com/v1")
    assert doc is not None
    assert "size" in doc["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"]["properties"]
    registry.remove_crd("widgets.example.com")
    assert "apis/example.com/v1" not in openapi.openapi_v3_index(registry)["paths"]


def test_unknown_fields_of_a_deployment() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"anything": "goes"}, "annotations": {"a": "b"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "imagePullPolicyy": "Always",
                            "resources": {"limits": {"cpu": "1"}},
                            "ports": [{"containerPort": 80, "hostPot": 1}],
                        },
                    ]
                },
            },
        },
        "status": {"replicas": 2},
        "bogus": True,
    }
    assert openapi.unknown_fields(Registry(), deployment) == [
        "spec.template.spec.containers[0].imagePullPolicyy",
        "spec.template.spec.containers[0].ports[0].hostPot",
        "bogus",
    ]


def test_unknown_fields_of_a_custom_resource_respect_preserve_unknown_fields() -> None:
    registry = Registry()
    registry.add_crd("widgets.example.com", [_widget()])
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "typo": 2,
            "config": {"free": {"form": True}},
            "template": {
                "apiVersion": "v1",
                "kind": "X",
                "metadata": {"name": "t"},
                "spec": {"x": "1", "y": 2},
            },
        },
        "status": {"phase": "Ready"},
    }
    assert openapi.unknown_fields(registry, widget) == ["spec.typo", "spec.template.spec.y"]
    assert openapi.unknown_fields(registry, {"apiVersion": "nope/v1", "kind": "Nope", "x": 1}) == []


def _pb_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into (field number, varint or bytes) pairs."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(data):
        key = varint()
        if key & 7 == 0:
            fields.append((key >> 3, varint()))
        else:
            assert key & 7 == 2, "only varint and length-delimited fields are written"
            size = varint()
            fields.append((key >> 3, data[pos : pos + size]))
            pos += size
    return fields


def _pb_get(message: bytes, field: int) -> list[Any]:
    return [value for number, value in _pb_fields(message) if number == field]


def test_openapi_v2_is_served_as_protobuf_to_kubectl() -> None:
    registry = Registry()
    registry.add_crd("widgets.example.com", [_widget()])
    answer = openapi.openapi_v2_response(registry, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert answer is not None
    body, content_type = answer
    assert content_type == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert _pb_get(body, 1) == [b"2.0"]
    definitions = {_pb_get(named, 1)[0].decode(): _pb_get(named, 2)[0] for named in _pb_get(_pb_get(body, 9)[0], 1)}
    deployment = definitions["io.k8s.api.apps.v1.Deployment"]
    extensions = {_pb_get(n, 1)[0].decode(): _pb_get(_pb_get(n, 2)[0], 2)[0] for n in _pb_get(deployment, 31)}
    assert orjson.loads(extensions["x-kubernetes-group-version-kind"]) == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    properties = {_pb_get(n, 1)[0].decode(): _pb_get(n, 2)[0] for n in _pb_get(_pb_get(deployment, 25)[0], 1)}
    assert _pb_get(properties["spec"], 1) == [b"#/definitions/io.k8s.api.apps.v1.DeploymentSpec"]
    assert _pb_get(_pb_get(deployment, 22)[0], 1) == [b"object"]
    widget_spec = {
        _pb_get(n, 1)[0].decode(): _pb_get(n, 2)[0]
        for n in _pb_get(_pb_get(definitions["com.example.v1.Widget"], 25)[0], 1)
    }["spec"]
    config = {_pb_get(n, 1)[0].decode(): _pb_get(n, 2)[0] for n in _pb_get(_pb_get(widget_spec, 25)[0], 1)}["config"]
    assert _pb_get(config, 22) == [], "kept-unknown-fields objects are published without a type"


def test_openapi_v2_json_and_not_acceptable() -> None:
    registry = Registry()
    answer = openapi.openapi_v2_response(registry, "application/json, */*")
    assert answer is not None and answer[1] == "application/json"
    assert orjson.loads(answer[0])["swagger"] == "2.0"
    assert openapi.openapi_v2_response(registry, "text/html") is None
