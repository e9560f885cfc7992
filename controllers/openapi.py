"""OpenAPI documents for the embedded API server, generated from the registry.

What uses them: kubectl 1.32 reads `/openapi/v3` and the per-group-version documents to
decide whether the server validates fields itself (it looks for a PATCH operation tagged
with the kind's `x-kubernetes-group-version-kind` that takes the `fieldValidation` query
parameter; we advertise it, so kubectl sends `fieldValidation=Strict` and skips its own
schema check) and to render `kubectl explain`. kubectl reads `/openapi/v2`, only as
protobuf, to validate `kind: List` files client side (the fieldValidation check does not
cover List) and as a fallback; it gets the v2 definitions in protobuf.

Built-in schemas come from the official `kubernetes` package's model classes
(`openapi_types`, `attribute_map`, and the pydantic field descriptions when the package
has them); the two types the package flattens (IntOrString, Quantity) are restored to what
the real spec says. CRD schemas come from the registry. The documents are big, so they
are built once per set of registered types and cached; callers must not mutate them."""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes.client import models as k8s_models

from controllers.discovery import GIT_VERSION
from controllers.kinds import Registry, ResourceType, builtin_types

JSON = dict[str, Any]

# The media type kubectl asks /openapi/v2 for: gnostic's openapi_v2.Document in protobuf.
# The answer is labelled with "." for "@": client-go parses the response Content-Type, and
# fails the request ("unexpected content after media subtype") when it holds an "@".
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_META_BASE = "io.k8s.apimachinery.pkg.apis.meta"
_META = f"{_META_BASE}.v1"
_QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING_DEF = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_PATCH_DEF = f"{_META}.Patch"
# Pseudo class names for the types the python package does not model as classes.
_QUANTITY, _INT_OR_STRING, _PATCH = "@Quantity", "@IntOrString", "@Patch"
_SPECIAL_DEFS = {_QUANTITY: _QUANTITY_DEF, _INT_OR_STRING: _INT_OR_STRING_DEF, _PATCH: _PATCH_DEF}

# Fields the python package types as 'object' but the API types as IntOrString.
_INT_OR_STRING_FIELDS = frozenset(
    {
        "V1HTTPGetAction.port",
        "V1TCPSocketAction.port",
        "V1ServicePort.target_port",
        "V1NetworkPolicyPort.port",
        "V1PodDisruptionBudgetSpec.min_available",
        "V1PodDisruptionBudgetSpec.max_unavailable",
        "V1RollingUpdateDeployment.max_surge",
        "V1RollingUpdateDeployment.max_unavailable",
        "V1RollingUpdateDaemonSet.max_surge",
        "V1RollingUpdateDaemonSet.max_unavailable",
        "V1RollingUpdateStatefulSetStrategy.max_unavailable",
    }
)
# Fields (or maps of them) the python package types as 'str' but the API types as Quantity.
_QUANTITY_FIELDS = frozenset(
    {
        "V1ResourceRequirements.limits",
        "V1ResourceRequirements.requests",
        "V1VolumeResourceRequirements.limits",
        "V1VolumeResourceRequirements.requests",
        "V1ContainerStatus.allocated_resources",
        "V1PodStatus.allocated_resources",
        "V1PodSpec.overhead",
        "V1Overhead.pod_fixed",
        "V1NodeStatus.allocatable",
        "V1NodeStatus.capacity",
        "V1PersistentVolumeSpec.capacity",
        "V1PersistentVolumeClaimStatus.capacity",
        "V1PersistentVolumeClaimStatus.allocated_resources",
        "V1ResourceQuotaSpec.hard",
        "V1ResourceQuotaStatus.hard",
        "V1ResourceQuotaStatus.used",
        "V1LimitRangeItem.default",
        "V1LimitRangeItem.default_request",
        "V1LimitRangeItem.max",
        "V1LimitRangeItem.min",
        "V1LimitRangeItem.max_limit_request_ratio",
        "V1EmptyDirVolumeSource.size_limit",
        "V1ResourceFieldSelector.divisor",
        "V1CSIStorageCapacity.capacity",
        "V1CSIStorageCapacity.maximum_volume_size",
        "V2MetricTarget.average_value",
        "V2MetricTarget.value",
        "V2MetricValueStatus.average_value",
        "V2MetricValueStatus.value",
    }
)
# Types that live in apimachinery's meta/v1 package whichever group uses them.
_META_TYPES = frozenset(
    {
        "ObjectMeta",
        "ListMeta",
        "LabelSelector",
        "LabelSelectorRequirement",
        "ManagedFieldsEntry",
        "OwnerReference",
        "Condition",
        "Status",
        "StatusDetails",
        "StatusCause",
        "DeleteOptions",
        "Preconditions",
        "WatchEvent",
        "ServerAddressByClientCIDR",
        "APIResource",
        "APIResourceList",
        "APIGroup",
        "APIGroupList",
        "APIVersions",
        "GroupVersionForDiscovery",
    }
)
# Fields typed 'object' that may hold any JSON value, not only an object.
_ANY_VALUE_CLASSES = frozenset({"V1JSONSchemaProps"})

_CLASS_NAME = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:(?:alpha|beta)\d+)?)([A-Z]\w*)$")
_LIST_OF = re.compile(r"^List\[(.+)\]$")
_DICT_OF = re.compile(r"^Dict\[str, (.+)\]$")
_SCALARS: dict[str, JSON] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "bytes": {"type": "string", "format": "byte"},
}


# ---------------------------------------------------------------- naming


def _package_base(name: str) -> str:
    """Go package prefix (without version) of an API group or a python class prefix."""
    label = name.removesuffix(".k8s.io").split(".")[0].lower() if name else "core"
    if label == "apiextensions":
        return "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions"
    if label == "apiregistration":
        return "io.k8s.kube-aggregator.pkg.apis.apiregistration"
    return f"io.k8s.api.{label}"


def _kind_class(group: str, version: str, kind: str) -> str | None:
    """The python model class of a built-in kind: `V1Deployment`, or `CoreV1Event` where the
    package had to disambiguate (core and events.k8s.io both have an Event)."""
    ver = version[0].upper() + version[1:]
    prefix = (group.removesuffix(".k8s.io").split(".")[0] if group else "core").capitalize()
    for name in (f"{ver}{kind}", f"{prefix}{ver}{kind}"):
        if isinstance(getattr(k8s_models, name, None), type):
            return name
    return None


def _referenced_classes(type_name: str) -> Iterator[str]:
    """Model class names mentioned in a python type string like 'Dict[str, List[V1Foo]]'."""
    for token in re.findall(r"[A-Za-z0-9_]+", type_name):
        if _CLASS_NAME.match(token) and hasattr(k8s_models, token):
            yield token


# Kinds the documents refer to besides the registered ones: subresource bodies and errors.
_EXTRA_KINDS = (
    ("autoscaling", "v1", "Scale"),
    ("", "v1", "Binding"),
    ("policy", "v1", "Eviction"),
    ("", "v1", "Status"),
    ("", "v1", "DeleteOptions"),
)


@functools.cache
def _top_level_classes() -> dict[str, tuple[str, str, str]]:
    """Model class -> (group, version, kind) of every built-in kind and list, core group first."""
    out: dict[str, tuple[str, str, str]] = {}
    kinds = [(rt.group, rt.version, k) for rt in builtin_types() for k in (rt.kind, rt.list_kind)]
    for group, version, kind in sorted([*kinds, *_EXTRA_KINDS], key=lambda gvk: gvk[0] != ""):
        name = _kind_class(group, version, kind)
        if name and name not in out:
            out[name] = (group, version, kind)
    return out


@functools.cache
def _definition_names() -> dict[str, str]:
    """python class name -> OpenAPI definition name (`io.k8s.api.apps.v1.DeploymentSpec`).

    The package drops the Go package of nested types, so it is recovered by walking from the
    built-in kinds: a type belongs to the group of the first kind (core kinds first) that
    reaches it, unless it is a meta/v1 type or its class name carries a group prefix."""
    names: dict[str, str] = {}

    def visit(cls_name: str, base: str) -> None:
        if cls_name in names:
            return
        m = _CLASS_NAME.match(cls_name)
        if m is None:
            return
        prefix, version, short = m.groups()
        if prefix:
            base = _package_base(prefix)
        elif version == "V1" and short in _META_TYPES:
            base = _META_BASE
        names[cls_name] = f"{base}.{version.lower()}.{short}"
        for type_name in getattr(k8s_models, cls_name).openapi_types.values():
            for dep in _referenced_classes(type_name):
                visit(dep, base)

    for cls_name, (group, _, _) in _top_level_classes().items():
        visit(cls_name, _package_base(group))
    return names


def _def_name(cls_name: str) -> str:
    return _SPECIAL_DEFS.get(cls_name) or _definition_names()[cls_name]


def _crd_def_name(rt: ResourceType, kind: str) -> str:
    """CRD definitions are named by the reversed group, as the real server does:
    `dev.gitops.v1alpha1.Application`."""
    return ".".join([*reversed(rt.group.split(".")), rt.version, kind])


# ---------------------------------------------------------------- built-in schemas


def _ref(def_name: str, v3: bool) -> JSON:
    return {"$ref": ("#/components/schemas/" if v3 else "#/definitions/") + def_name}


def _field_schema(type_name: str, owner: str, attr: str, v3: bool, deps: set[str]) -> JSON:
    """Schema for one python type string, collecting referenced classes into deps."""
    if m := _LIST_OF.match(type_name):
        return {"type": "array", "items": _field_schema(m.group(1), owner, attr, v3, deps)}
    if m := _DICT_OF.match(type_name):
        return {"type": "object", "additionalProperties": _field_schema(m.group(1), owner, attr, v3, deps)}
    key = f"{owner}.{attr}"
    if type_name == "str" and key in _QUANTITY_FIELDS:
        deps.add(_QUANTITY)
        return _ref(_QUANTITY_DEF, v3)
    if type_name == "object":
        if key in _INT_OR_STRING_FIELDS:
            deps.add(_INT_OR_STRING)
            return _ref(_INT_OR_STRING_DEF, v3)
        if owner in _ANY_VALUE_CLASSES:
            return {"x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if type_name in _SCALARS:
        return dict(_SCALARS[type_name])
    deps.add(type_name)
    return _ref(_def_name(type_name), v3)


def _class_description(cls: type) -> str:
    doc = (cls.__doc__ or "").split("Attributes:")[0].strip()
    return "" if doc.startswith("NOTE:") else " ".join(doc.split())


@functools.cache
def _class_schema(cls_name: str, v3: bool) -> tuple[JSON, frozenset[str]]:
    """The definition of one model class and the classes it references."""
    if cls_name == _QUANTITY:
        desc = "A fixed-point number with a suffix: 100m, 1.5, 2Gi, 1e3."
        body: JSON = {"oneOf": [{"type": "string"}, {"type": "number"}]} if v3 else {"type": "string"}
        return {"description": desc, **body}, frozenset()
    if cls_name == _INT_OR_STRING:
        desc = "An int32 or a string: a port number or name, a count or a percentage."
        body = {"oneOf": [{"type": "integer"}, {"type": "string"}]} if v3 else {"type": "string"}
        return {"description": desc, **body, "format": "int-or-string"}, frozenset()
    if cls_name == _PATCH:
        return {
            "description": "The body of a PATCH request; its format is given by the Content-Type.",
            "type": "object",
        }, frozenset()
    cls = getattr(k8s_models, cls_name)
    fields = getattr(cls, "model_fields", {})
    deps: set[str] = set()
    properties: JSON = {}
    required: list[str] = []
    for attr, type_name in cls.openapi_types.items():
        json_name = cls.attribute_map[attr]
        schema = _field_schema(type_name, cls_name, attr, v3, deps)
        field = fields.get(attr)
        description = getattr(field, "description", None)
        if description:
            # A $ref cannot carry siblings in OpenAPI 3.0; the real server wraps it in allOf.
            schema = (
                {"description": description, "allOf": [schema]}
                if v3 and "$ref" in schema
                else {"description": description, **schema}
            )
        properties[json_name] = schema
        if field is not None and field.is_required():
            required.append(json_name)
    definition: JSON = {"type": "object", "properties": properties}
    if description := _class_description(cls):
        definition = {"description": description, **definition}
    if required:
        definition["required"] = sorted(required)
    return definition, frozenset(deps)


def _gvk_list(group: str, version: str, kind: str) -> list[JSON]:
    return [{"group": group, "kind": kind, "version": version}]


# ---------------------------------------------------------------- CRD schemas


def _crd_schemas(rt: ResourceType, v3: bool) -> dict[str, JSON]:
    """The CRD version's schema (and its List) with ObjectMeta wired in and the GVK marked."""
    schema: JSON = copy.deepcopy(rt.schema) if rt.schema else {"type": "object"}
    if not rt.schema:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    properties: JSON = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string", "description": "The versioned schema of this object."})
    properties.setdefault("kind", {"type": "string", "description": "The REST resource this object represents."})
    properties["metadata"] = _ref(f"{_META}.ObjectMeta", v3)
    schema["x-kubernetes-group-version-kind"] = _gvk_list(rt.group, rt.version, rt.kind)
    list_schema: JSON = {
        "description": f"{rt.list_kind} is a list of {rt.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {"type": "array", "items": _ref(_crd_def_name(rt, rt.kind), v3)},
            "kind": {"type": "string"},
            "metadata": _ref(f"{_META}.ListMeta", v3),
        },
        "x-kubernetes-group-version-kind": _gvk_list(rt.group, rt.version, rt.list_kind),
    }
    return {_crd_def_name(rt, rt.kind): schema, _crd_def_name(rt, rt.list_kind): list_schema}


def _generic_schemas(rt: ResourceType, v3: bool) -> dict[str, JSON]:
    """A built-in kind the python package does not know: accept any fields."""
    base = f"{_package_base(rt.group)}.{rt.version}"
    obj: JSON = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": _ref(f"{_META}.ObjectMeta", v3),
        },
        "x-kubernetes-group-version-kind": _gvk_list(rt.group, rt.version, rt.kind),
    }
    lst: JSON = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": _ref(f"{base}.{rt.kind}", v3)},
            "metadata": _ref(f"{_META}.ListMeta", v3),
        },
        "x-kubernetes-group-version-kind": _gvk_list(rt.group, rt.version, rt.list_kind),
    }
    return {f"{base}.{rt.kind}": obj, f"{base}.{rt.list_kind}": lst}


# ---------------------------------------------------------------- paths


_PARAMS: dict[str, tuple[str, str]] = {
    "pretty": ("string", "If 'true', the output is pretty printed."),
    "dryRun": ("string", "When present (All), the change is validated and admitted but not persisted."),
    "fieldManager": ("string", "The name of the actor making the change, recorded in managedFields."),
    "fieldValidation": (
        "string",
        "How to treat unknown or duplicate fields in the body: Ignore drops them, "
        "Warn drops them with a warning, Strict rejects the request.",
    ),
    "force": ("boolean", "Server-side apply only: take ownership of fields owned by other managers."),
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK events in a watch."),
    "continue": ("string", "The continue token of the previous page of a list."),
    "fieldSelector": ("string", "Restrict the list to objects whose fields match, e.g. metadata.name=x."),
    "labelSelector": ("string", "Restrict the list to objects whose labels match, e.g. app=web,tier!=db."),
    "limit": ("integer", "The maximum number of objects in one page of a list."),
    "resourceVersion": ("string", "The resourceVersion a list or watch starts from."),
    "resourceVersionMatch": ("string", "How resourceVersion is compared in a list: Exact or NotOlderThan."),
    "sendInitialEvents": ("boolean", "Start a watch with synthetic ADDED events for the current state."),
    "timeoutSeconds": ("integer", "End a list or watch call after this many seconds."),
    "watch": ("boolean", "Stream changes instead of returning a list."),
    "gracePeriodSeconds": ("integer", "Seconds the object may take to terminate before it is removed."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy=Orphan."),
    "propagationPolicy": ("string", "What happens to dependents: Orphan, Background or Foreground."),
}
_LIST_PARAMS = (
    "pretty",
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
_WRITE_PARAMS = ("pretty", "dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("pretty", "dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
# Strategic merge patch is left out on purpose: kubectl would then compute it from these
# schemas, which carry no patch merge keys; without it kubectl uses its compiled-in types.
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")


@dataclass(frozen=True)
class _Op:
    path: str
    method: str
    action: str
    op_id: str
    gvk: tuple[str, str, str]
    body: str | None  # definition name of the request body
    response: str  # definition name of the 200 answer
    params: tuple[str, ...]


def _op_id_group(rt: ResourceType) -> str:
    parts = re.split(r"[.\-]", rt.group.removesuffix(".k8s.io")) if rt.group else ["core"]
    return "".join(p.capitalize() for p in parts) + rt.version.capitalize()


def _operations(rt: ResourceType, kind_def: str, list_def: str) -> Iterator[_Op]:
    """The REST operations of one resource type, as the HTTP layer serves them."""
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    collection = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
    item = collection + "/{name}"
    scope = "Namespaced" if rt.namespaced else ""
    ids = _op_id_group(rt)
    gvk = (rt.group, rt.version, rt.kind)
    verbs = set(rt.verbs)
    status, delete_options = f"{_META}.Status", f"{_META}.DeleteOptions"
    if "list" in verbs:
        yield _Op(collection, "get", "list", f"list{ids}{scope}{rt.kind}", gvk, None, list_def, _LIST_PARAMS)
        if rt.namespaced:
            yield _Op(
                f"{prefix}/{rt.plural}",
                "get",
                "list",
                f"list{ids}{rt.kind}ForAllNamespaces",
                gvk,
                None,
                list_def,
                _LIST_PARAMS,
            )
    if "create" in verbs:
        yield _Op(collection, "post", "post", f"create{ids}{scope}{rt.kind}", gvk, kind_def, kind_def, _WRITE_PARAMS)
    if "deletecollection" in verbs:
        yield _Op(
            collection,
            "delete",
            "deletecollection",
            f"deletecollection{ids}{scope}{rt.kind}",
            gvk,
            delete_options,
            status,
            _DELETE_PARAMS + _LIST_PARAMS[1:],
        )
    if "get" in verbs:
        yield _Op(item, "get", "get", f"read{ids}{scope}{rt.kind}", gvk, None, kind_def, ("pretty",))
    if "update" in verbs:
        yield _Op(item, "put", "put", f"replace{ids}{scope}{rt.kind}", gvk, kind_def, kind_def, _WRITE_PARAMS)
    if "patch" in verbs:
        yield _Op(
            item,
            "patch",
            "patch",
            f"patch{ids}{scope}{rt.kind}",
            gvk,
            _PATCH_DEF,
            kind_def,
            (*_WRITE_PARAMS, "force"),
        )
    if "delete" in verbs:
        yield _Op(
            item,
            "delete",
            "delete",
            f"delete{ids}{scope}{rt.kind}",
            gvk,
            delete_options,
            kind_def,
            _DELETE_PARAMS,
        )
    for sub, sub_gvk, sub_def in _subresource_kinds(rt, kind_def):
        suffix = sub.capitalize()
        if sub == "binding":
            yield _Op(
                f"{item}/{sub}",
                "post",
                "post",
                f"create{ids}{scope}{rt.kind}{suffix}",
                sub_gvk,
                sub_def,
                sub_def,
                _WRITE_PARAMS,
            )
            continue
        yield _Op(
            f"{item}/{sub}",
            "get",
            "get",
            f"read{ids}{scope}{rt.kind}{suffix}",
            sub_gvk,
            None,
            sub_def,
            ("pretty",),
        )
        yield _Op(
            f"{item}/{sub}",
            "put",
            "put",
            f"replace{ids}{scope}{rt.kind}{suffix}",
            sub_gvk,
            sub_def,
            sub_def,
            _WRITE_PARAMS,
        )
        yield _Op(
            f"{item}/{sub}",
            "patch",
            "patch",
            f"patch{ids}{scope}{rt.kind}{suffix}",
            sub_gvk,
            _PATCH_DEF,
            sub_def,
            (*_WRITE_PARAMS, "force"),
        )


def _subresource_kinds(rt: ResourceType, kind_def: str) -> Iterator[tuple[str, tuple[str, str, str], str]]:
    """(subresource, gvk, definition) of the subresources that have a schema of their own."""
    for sub in rt.subresources:
        if sub == "status":
            yield sub, (rt.group, rt.version, rt.kind), kind_def
        elif sub == "scale":
            yield sub, ("autoscaling", "v1", "Scale"), _def_name("V1Scale")
        elif sub == "binding":
            yield sub, ("", "v1", "Binding"), _def_name("V1Binding")


def _parameter(name: str, location: str, v3: bool) -> JSON:
    type_name, description = _PARAMS.get(name, ("string", f"The {name} of the object."))
    param: JSON = {"name": name, "in": location, "description": description}
    if location == "path":
        param["required"] = True
    if v3:
        param["schema"] = {"type": type_name}
    else:
        param["type"] = type_name
    return param


def _operation_doc(op: _Op, v3: bool) -> JSON:
    params = [_parameter(p, "path", v3) for p in re.findall(r"\{(\w+)\}", op.path)]
    params += [_parameter(p, "query", v3) for p in op.params]
    doc: JSON = {"operationId": op.op_id, "tags": [op.op_id], "description": f"{op.action} {op.gvk[2]}"}
    media = _PATCH_TYPES if op.method == "patch" else ("application/json", "application/yaml")
    if v3:
        if op.body:
            doc["requestBody"] = {
                "required": op.method != "delete",
                "content": {m: {"schema": _ref(op.body, v3)} for m in media},
            }
        ok = {
            "application/json": {"schema": _ref(op.response, v3)},
            "application/yaml": {"schema": _ref(op.response, v3)},
        }
        doc["responses"] = {
            "200": {"description": "OK", "content": ok},
            "401": {"description": "Unauthorized"},
        }
        if op.method in ("post", "put", "patch"):
            doc["responses"]["201"] = {"description": "Created", "content": ok}
    else:
        if op.body:
            params.append(
                {"name": "body", "in": "body", "required": op.method != "delete", "schema": _ref(op.body, v3)}
            )
        doc["consumes"] = list(media)
        doc["produces"] = ["application/json", "application/yaml"]
        doc["schemes"] = ["https"]
        doc["responses"] = {
            "200": {"description": "OK", "schema": _ref(op.response, v3)},
            "401": {"description": "Unauthorized"},
        }
    doc["parameters"] = params
    doc["x-kubernetes-action"] = op.action
    group, version, kind = op.gvk
    doc["x-kubernetes-group-version-kind"] = {"group": group, "kind": kind, "version": version}
    return doc


# ---------------------------------------------------------------- v2 as protobuf
# Hand-written encoding of the few gnostic openapi_v2 messages kubectl reads: Document
# (swagger=1, info=2, definitions=9), Info (title=1, version=2), NamedSchema (name=1,
# value=2), NamedAny (name=1, value=2) with Any (yaml=2), and Schema.


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_bytes(field: int, payload: bytes) -> bytes:
    return _pb_varint(field << 3 | 2) + _pb_varint(len(payload)) + payload


def _pb_str(field: int, text: str) -> bytes:
    return _pb_bytes(field, text.encode()) if text else b""


def _pb_any(field: int, value: Any) -> bytes:
    """An Any holding a value as YAML (JSON is YAML), as gnostic stores extensions."""
    return _pb_bytes(field, _pb_str(2, orjson.dumps(value).decode()))


def _pb_named(field: int, name: str, value: bytes) -> bytes:
    return _pb_bytes(field, _pb_str(1, name) + _pb_bytes(2, value))


def _pb_schema(schema: JSON) -> bytes:
    """Schema: _ref=1 format=2 description=4 default=5 required=19 enum=20
    additionalProperties=21 type=22 items=23 properties=25 vendor_extension=31.

    A schema that keeps unknown fields (or is int-or-string) loses its type and properties,
    as the real server publishes CRDs in v2, so that kubectl treats it as free-form."""
    free_form = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string")
    out = [
        _pb_str(1, schema.get("$ref", "")),
        _pb_str(2, schema.get("format", "")),
        _pb_str(4, schema.get("description", "")),
    ]
    if "default" in schema:
        out.append(_pb_any(5, schema["default"]))
    out += [_pb_str(19, name) for name in schema.get("required", ())]
    out += [_pb_any(20, value) for value in schema.get("enum", ())]
    if not free_form:
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            out.append(_pb_bytes(21, _pb_bytes(1, _pb_schema(additional))))
        elif isinstance(additional, bool):
            out.append(_pb_bytes(21, _pb_varint(2 << 3) + _pb_varint(int(additional))))
        if isinstance(schema.get("type"), str):
            out.append(_pb_bytes(22, _pb_str(1, schema["type"])))
        if isinstance(schema.get("items"), dict):
            out.append(_pb_bytes(23, _pb_bytes(1, _pb_schema(schema["items"]))))
        if isinstance(schema.get("properties"), dict):
            named = b"".join(_pb_named(1, k, _pb_schema(v)) for k, v in schema["properties"].items())
            out.append(_pb_bytes(25, named))
    out += [_pb_named(31, k, _pb_str(2, orjson.dumps(v).decode())) for k, v in schema.items() if k.startswith("x-")]
    return b"".join(out)


def _pb_document(doc: JSON) -> bytes:
    info = doc["info"]
    definitions = b"".join(_pb_named(1, name, _pb_schema(s)) for name, s in doc["definitions"].items())
    return (
        _pb_str(1, doc["swagger"])
        + _pb_bytes(2, _pb_str(1, info["title"]) + _pb_str(2, info["version"]))
        + _pb_bytes(9, definitions)
    )


# ---------------------------------------------------------------- documents


def _roots(rt: ResourceType, v3: bool) -> tuple[dict[str, JSON], set[str], str, str]:
    """Definitions contributed directly by one type, the model classes still to resolve,
    and the definition names of the kind and its list."""
    extra: dict[str, JSON] = {}
    classes: set[str] = {"V1Status", "V1DeleteOptions", _PATCH}
    kind_class = None if rt.crd else _kind_class(rt.group, rt.version, rt.kind)
    list_class = None if rt.crd else _kind_class(rt.group, rt.version, rt.list_kind)
    if kind_class in _definition_names() and list_class in _definition_names():
        classes |= {kind_class, list_class}
        kind_def, list_def = _def_name(kind_class), _def_name(list_class)
    else:
        extra = _crd_schemas(rt, v3) if rt.crd else _generic_schemas(rt, v3)
        kind_def, list_def = list(extra)
        classes |= {"V1ObjectMeta", "V1ListMeta"}
    for sub in rt.subresources:
        if sub == "scale":
            classes.add("V1Scale")
        elif sub == "binding":
            classes.add("V1Binding")
    return extra, classes, kind_def, list_def


@functools.cache
def _class_definition(cls_name: str, v3: bool) -> tuple[JSON, frozenset[str]]:
    schema, deps = _class_schema(cls_name, v3)
    gvk = _top_level_classes().get(cls_name)
    if gvk is not None:
        schema = {**schema, "x-kubernetes-group-version-kind": _gvk_list(*gvk)}
    return schema, deps


def _definitions(types: Iterable[ResourceType], v3: bool) -> tuple[dict[str, JSON], list[_Op]]:
    """Every definition reachable from the given types, sorted by name, and their operations."""
    defs: dict[str, JSON] = {}
    pending: set[str] = set()
    ops: list[_Op] = []
    for rt in types:
        extra, classes, kind_def, list_def = _roots(rt, v3)
        defs.update(extra)
        pending |= classes
        ops.extend(_operations(rt, kind_def, list_def))
    seen: set[str] = set()
    while pending:
        cls_name = pending.pop()
        if cls_name in seen:
            continue
        seen.add(cls_name)
        schema, deps = _class_definition(cls_name, v3)
        defs[_def_name(cls_name)] = schema
        pending |= deps - seen
    return dict(sorted(defs.items())), ops


def _paths(ops: list[_Op], v3: bool) -> JSON:
    paths: JSON = {}
    for op in sorted(ops, key=lambda o: o.path):
        paths.setdefault(op.path, {})[op.method] = _operation_doc(op, v3)
    return paths


def _v3_key(rt: ResourceType) -> str:
    """The index key of a group-version: `api/v1`, `apis/apps/v1`."""
    return f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"


class _Documents:
    """All documents for one set of registered types, each built and serialized once, when
    first asked for: a CRD change makes a new set, and the write that follows needs only
    its own group-version's schemas for field validation."""

    def __init__(self, types: list[ResourceType]) -> None:
        self.types = types
        self._by_gv: dict[str, list[ResourceType]] = {}
        for rt in types:
            self._by_gv.setdefault(_v3_key(rt), []).append(rt)
        self._v3: dict[str, tuple[JSON, bytes, str]] = {}
        self._index: JSON | None = None
        self._v2: tuple[JSON, bytes] | None = None
        self._kind_schemas: dict[tuple[str, str], tuple[JSON, dict[str, JSON]] | None] = {}
        self._field_checks: dict[tuple[str, str], _FieldCheck | None] = {}
        self._compiled_checks: dict[int, _FieldCheck] = {}
        self._v2_protobuf: bytes | None = None
        self._lock = threading.Lock()

    def v3(self, key: str) -> tuple[JSON, bytes, str] | None:
        """One group-version's v3 document (`api/v1`, `apis/apps/v1`): the document, its
        bytes and their hash; None when that group-version is not served."""
        gv_types = self._by_gv.get(key)
        if gv_types is None:
            return None
        with self._lock:
            entry = self._v3.get(key)
            if entry is None:
                definitions, ops = _definitions(gv_types, v3=True)
                doc = {
                    "openapi": "3.0.0",
                    "info": {"title": "Kubernetes", "version": GIT_VERSION},
                    "paths": _paths(ops, v3=True),
                    "components": {"schemas": definitions},
                }
                raw = orjson.dumps(doc)
                entry = self._v3[key] = (doc, raw, hashlib.sha512(raw).hexdigest().upper())
            return entry

    def index(self) -> JSON:
        """`/openapi/v3`: every group-version's URL with its document's hash."""
        if self._index is None:
            paths = {}
            for key in sorted(self._by_gv):
                entry = self.v3(key)
                assert entry is not None
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={entry[2]}"}
            self._index = {"paths": paths}
        return self._index

    def kind_schema(self, api_version: str, kind: str) -> tuple[JSON, dict[str, JSON]] | None:
        """The v3 schema of a kind, with the schemas its references resolve in."""
        key = (api_version, kind)
        if key not in self._kind_schemas:
            self._kind_schemas[key] = self._find_kind_schema(api_version, kind)
        return self._kind_schemas[key]

    def field_check(self, api_version: str, kind: str) -> _FieldCheck | None:
        """The compiled unknown-field check of a kind (None when it is not served)."""
        key = (api_version, kind)
        if key not in self._field_checks:
            found = self.kind_schema(api_version, kind)
            self._field_checks[key] = (
                None if found is None else _FieldCheck.of(found[0], found[1], self._compiled_checks)
            )
        return self._field_checks[key]

    def _find_kind_schema(self, api_version: str, kind: str) -> tuple[JSON, dict[str, JSON]] | None:
        group, _, version = api_version.rpartition("/")
        entry = self.v3(_gv_key(api_version))
        if entry is None:
            return None
        schemas: dict[str, JSON] = entry[0]["components"]["schemas"]
        gvk = {"group": group, "kind": kind, "version": version}
        for schema in schemas.values():
            if gvk in schema.get("x-kubernetes-group-version-kind", []):
                return schema, schemas
        return None

    def v2(self) -> tuple[JSON, bytes]:
        with self._lock:
            if self._v2 is None:
                definitions, ops = _definitions(self.types, v3=False)
                doc = {
                    "swagger": "2.0",
                    "info": {"title": "Kubernetes", "version": GIT_VERSION},
                    "paths": _paths(ops, v3=False),
                    "definitions": definitions,
                }
                self._v2 = doc, orjson.dumps(doc)
            return self._v2

    def v2_protobuf(self) -> bytes:
        doc = self.v2()[0]
        with self._lock:
            if self._v2_protobuf is None:
                self._v2_protobuf = _pb_document(doc)
            return self._v2_protobuf


_CACHE_SIZE = 4
_cache: OrderedDict[tuple[tuple[ResourceType, int], ...], _Documents] = OrderedDict()
_cache_lock = threading.Lock()


_by_registry: weakref.WeakKeyDictionary[Registry, tuple[int, _Documents]] = weakref.WeakKeyDictionary()


def _documents(registry: Registry) -> _Documents:
    """The cached documents for the registry's current types. Every write asks for them
    (field validation), so the registry's generation is checked first; on a change the
    key holds the types (and through them their CRD schemas), so the schema identity in
    it cannot be reused while the entry lives."""
    generation = registry.generation
    hit = _by_registry.get(registry)
    if hit is not None and hit[0] == generation:
        return hit[1]
    docs = _documents_for_types(registry)
    _by_registry[registry] = (generation, docs)
    return docs


def _documents_for_types(registry: Registry) -> _Documents:
    types = sorted(registry.all(), key=lambda rt: (rt.group, rt.version, rt.plural))
    key = tuple((rt, id(rt.schema)) for rt in types)
    with _cache_lock:
        docs = _cache.get(key)
        if docs is not None:
            _cache.move_to_end(key)
            return docs
    docs = _Documents(types)
    with _cache_lock:
        _cache[key] = docs
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return docs


def _gv_key(gv: str) -> str:
    """Accept `apps/v1`, `v1`, `apis/apps/v1` or `api/v1`; answer the index key form."""
    gv = gv.strip("/").split("?")[0]
    if gv.startswith(("api/", "apis/")):
        return gv
    return f"apis/{gv}" if "/" in gv else f"api/{gv}"


def openapi_v2(registry: Registry) -> JSON:
    """`/openapi/v2` as JSON (Swagger 2.0). Shared and cached: do not mutate."""
    return _documents(registry).v2()[0]


def openapi_v2_response(registry: Registry, accept_header: str) -> tuple[bytes, str] | None:
    """`/openapi/v2` in the format the client accepts, with its Content-Type; None when it
    accepts neither (answer 406). kubectl asks only for protobuf, and gets the definitions
    without the paths: enough to validate (`kind: List` files are validated client side),
    and without PATCH operations kubectl computes strategic merge patches from its
    compiled-in types, which know the merge keys these schemas lack."""
    for media_type in accept_header.split(","):
        base = media_type.split(";")[0].strip()
        if base in (V2_PROTOBUF, V2_PROTOBUF_CONTENT_TYPE):
            return _documents(registry).v2_protobuf(), V2_PROTOBUF_CONTENT_TYPE
        if base in ("application/json", "*/*", "application/*", ""):
            return _documents(registry).v2()[1], "application/json"
    return None


def openapi_v3_index(registry: Registry) -> JSON:
    """`/openapi/v3`: every group-version's document URL, with a content hash to cache by."""
    return _documents(registry).index()


def openapi_v3_group_version(registry: Registry, gv: str) -> JSON | None:
    """`/openapi/v3/apis/<g>/<v>` (or `api/v1`); None when that group-version is not served.
    Shared and cached: do not mutate."""
    entry = _documents(registry).v3(_gv_key(gv))
    return entry[0] if entry else None


def openapi_v3_group_version_bytes(registry: Registry, gv: str) -> bytes | None:
    """The same document serialized, for `Content-Type: application/json`."""
    entry = _documents(registry).v3(_gv_key(gv))
    return entry[1] if entry else None


# ---------------------------------------------------------------- server-side field validation


def unknown_fields(registry: Registry, obj: JSON) -> list[str]:
    """Paths of fields in obj that its kind's schema does not declare, as the API server
    reports them for `fieldValidation` (`spec.template.spec.containers[0].imagePullPolice`).

    Fields under `x-kubernetes-preserve-unknown-fields` and free-form maps are never unknown.
    An object whose kind is not registered has no unknown fields here: it fails elsewhere."""
    check = _documents(registry).field_check(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if check is None:
        return []
    out: list[str] = []
    check.walk(obj, "", out)
    return out


def _resolve(schema: JSON, schemas: dict[str, JSON]) -> JSON:
    while True:
        if "$ref" in schema:
            schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        elif len(schema.get("allOf", ())) == 1 and "properties" not in schema:
            schema = schema["allOf"][0]
        else:
            return schema


class _FieldCheck:
    """The unknown-field rule of one (resolved) schema. Every write is checked, so each
    schema is resolved once, on first use, and its members are compiled as they are met
    (lazily: schemas refer to themselves, such as JSONSchemaProps)."""

    __slots__ = (
        "_schema",
        "_schemas",
        "_compiled",
        "_properties",
        "_members",
        "_additional",
        "_items",
        "_closed",
        "_open",
        "_inert",
    )

    def __init__(self, schema: JSON, schemas: dict[str, JSON], compiled: dict[int, _FieldCheck]) -> None:
        # Registered first, so a schema that refers to itself compiles to itself; holding
        # the schema keeps its id from being reused while the cache lives.
        compiled[id(schema)] = self
        self._inert = False  # until compiled: a schema that refers to itself is walked
        self._schema = schema
        self._schemas = schemas
        self._compiled = compiled
        self._open = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        properties = schema.get("properties")
        if schema.get("x-kubernetes-embedded-resource"):
            properties = {
                "apiVersion": {},
                "kind": {},
                "metadata": _ref(f"{_META}.ObjectMeta", True),
                **(properties or {}),
            }
        additional = schema.get("additionalProperties")
        self._properties: JSON | None = properties
        self._members: dict[str, _FieldCheck] = {}
        self._additional = self._compile(additional) if isinstance(additional, dict) else None
        items = schema.get("items")
        self._items = self._compile(items) if isinstance(items, dict) else None
        # A member that is neither a property nor an additional property is unknown here.
        self._closed = properties is not None and self._additional is None and additional is not True
        # Nothing under a value of this schema can be unknown (scalars, free-form maps,
        # maps of scalars such as labels and ConfigMap data): no need to walk it.
        self._inert = self._open or (
            properties is None and self._items is None and (self._additional is None or self._additional._inert)
        )

    @staticmethod
    def of(schema: JSON, schemas: dict[str, JSON], compiled: dict[int, _FieldCheck]) -> _FieldCheck:
        resolved = _resolve(schema, schemas)
        return compiled.get(id(resolved)) or _FieldCheck(resolved, schemas, compiled)

    def _compile(self, schema: JSON) -> _FieldCheck:
        return _FieldCheck.of(schema, self._schemas, self._compiled)

    def _member(self, key: str) -> _FieldCheck | None:
        check = self._members.get(key)
        if check is None and self._properties is not None and key in self._properties:
            check = self._members[key] = self._compile(self._properties[key])
        return check

    def walk(self, value: Any, path: str, out: list[str]) -> None:
        """Append the paths under `value` (at `path`) that this schema does not declare."""
        if self._inert:
            return
        if isinstance(value, dict):
            properties = self._properties or {}
            for key, item in value.items():
                if not isinstance(item, (dict, list)):  # a scalar: only its name can be unknown
                    if self._closed and key not in properties:
                        out.append(f"{path}.{key}" if path else key)
                    continue
                check = self._members.get(key) or self._member(key) or self._additional
                if check is None:
                    if self._closed:
                        out.append(f"{path}.{key}" if path else key)
                elif not check._inert:
                    check.walk(item, f"{path}.{key}" if path else key, out)
        elif isinstance(value, list) and self._items is not None:
            for i, item in enumerate(value):
                if isinstance(item, (dict, list)):
                    self._items.walk(item, f"{path}[{i}]", out)
