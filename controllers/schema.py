"""What kind of field sits at a position in an object: how its lists and maps merge.

Strategic merge patch and server-side apply both need to know, for a list, whether it
is replaced whole or merged item by item (and by which key), and for a map whether its
keys are owned one by one. Built-in kinds answer from the official `kubernetes` client's
model classes plus a table of the Kubernetes patch metadata (the python package does not
carry it); custom resources answer from their CRD's openAPIV3Schema.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes.client import models as _models

Kind = Literal["struct", "map", "list", "scalar"]


@dataclass(frozen=True)
class ListInfo:
    """How a list merges.

    `strategy` and `merge_key` drive strategic merge patch (`x-kubernetes-patch-strategy`,
    `x-kubernetes-patch-merge-key`); `list_type`, `map_keys` and `key_defaults` drive
    server-side apply (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, and the
    schema defaults of key fields, so `protocol: TCP` keys a port that omits it).
    """

    strategy: tuple[str, ...] = ()
    merge_key: str = ""
    list_type: str = "atomic"
    map_keys: tuple[str, ...] = ()
    key_defaults: tuple[tuple[str, Any], ...] = ()

    @property
    def smp_merge(self) -> bool:
        """True when strategic merge patch merges this list instead of replacing it."""
        return "merge" in self.strategy


class TypeNode:
    """A position in an object's type tree.

    `kind` says what the value is; `atomic` says server-side apply owns it as one field
    (scalars, atomic lists, `x-kubernetes-map-type: atomic` maps and structs).
    """

    kind: Kind = "scalar"
    atomic: bool = True
    list_info: ListInfo | None = None

    def field(self, name: str) -> TypeNode | None:
        """The node of a struct field or a map value; None when the field is unknown."""
        return None

    def items(self) -> TypeNode | None:
        """The node of a list's items; None when unknown or not a list."""
        return None


class _Scalar(TypeNode):
    pass


_SCALAR = _Scalar()


class _ListNode(TypeNode):
    kind: Kind = "list"

    def __init__(self, items: TypeNode | None, info: ListInfo) -> None:
        self._items = items
        self.list_info = info
        self.atomic = info.list_type == "atomic"

    def items(self) -> TypeNode | None:
        return self._items


class _MapNode(TypeNode):
    """A free-keyed map (`Dict[str, X]`, `additionalProperties`)."""

    kind: Kind = "map"

    def __init__(self, values: TypeNode | None, atomic: bool) -> None:
        self._values = values
        self.atomic = atomic

    def field(self, name: str) -> TypeNode | None:
        return self._values


# ---------------------------------------------------------------------------------------
# Built-in kinds: the patch metadata the Kubernetes types carry in their Go struct tags,
# keyed by (python model class, JSON field). Lists not listed here are atomic and are
# replaced by strategic merge patch, as in Kubernetes.


def _merge(key: str, *map_keys: str, retain: bool = False, ssa: str = "map") -> ListInfo:
    strategy = ("merge", "retainKeys") if retain else ("merge",)
    keys = (map_keys or (key,)) if ssa == "map" else ()
    defaults = (("protocol", "TCP"),) if "protocol" in keys else ()
    return ListInfo(strategy, key, ssa, keys, defaults)


_BY_NAME = _merge("name")
_BY_TYPE = _merge("type")
_CONTAINER_PORTS = _merge("containerPort", "containerPort", "protocol")
_CONTAINER_LISTS = {
    "ports": _CONTAINER_PORTS,
    "env": _BY_NAME,
    "volumeMounts": _merge("mountPath"),
    "volumeDevices": _merge("devicePath"),
}

_LISTS: dict[tuple[str, str], ListInfo] = {
    ("V1ObjectMeta", "finalizers"): ListInfo(("merge",), "", "set"),
    ("V1ObjectMeta", "ownerReferences"): _merge("uid"),
    ("V1PodSpec", "containers"): _BY_NAME,
    ("V1PodSpec", "initContainers"): _BY_NAME,
    ("V1PodSpec", "ephemeralContainers"): _BY_NAME,
    ("V1PodSpec", "volumes"): _merge("name", retain=True),
    ("V1PodSpec", "imagePullSecrets"): _BY_NAME,
    ("V1PodSpec", "hostAliases"): _merge("ip"),
    ("V1PodSpec", "topologySpreadConstraints"): _merge("topologyKey", "topologyKey", "whenUnsatisfiable"),
    ("V1PodSpec", "schedulingGates"): _BY_NAME,
    ("V1PodSpec", "resourceClaims"): _merge("name", retain=True),
    **{("V1Container", f): info for f, info in _CONTAINER_LISTS.items()},
    **{("V1EphemeralContainer", f): info for f, info in _CONTAINER_LISTS.items()},
    ("V1ServiceSpec", "ports"): _merge("port", "port", "protocol"),
    ("V1PodStatus", "conditions"): _BY_TYPE,
    ("V1PodStatus", "podIPs"): _merge("ip"),
    ("V1PodStatus", "hostIPs"): _merge("ip", ssa="atomic"),
    ("V1NodeSpec", "podCIDRs"): ListInfo(("merge",), "", "set"),
    ("V1NodeStatus", "conditions"): _BY_TYPE,
    ("V1NodeStatus", "addresses"): _BY_TYPE,
    ("V1NamespaceStatus", "conditions"): _BY_TYPE,
    ("V1PersistentVolumeClaimStatus", "conditions"): _BY_TYPE,
    ("V1ReplicationControllerStatus", "conditions"): _BY_TYPE,
    ("V1ServiceStatus", "conditions"): _BY_TYPE,
    ("V1DeploymentStatus", "conditions"): _BY_TYPE,
    ("V1ReplicaSetStatus", "conditions"): _BY_TYPE,
    ("V1StatefulSetStatus", "conditions"): _BY_TYPE,
    ("V1DaemonSetStatus", "conditions"): _BY_TYPE,
    ("V1JobStatus", "conditions"): _merge("type", ssa="atomic"),
    ("V2HorizontalPodAutoscalerStatus", "conditions"): _BY_TYPE,
    ("V1PodDisruptionBudgetStatus", "conditions"): _BY_TYPE,
}

# `+mapType=atomic` maps: a selector is one decision, not a set of independent keys.
_ATOMIC_MAPS = frozenset(
    {
        ("V1PodSpec", "nodeSelector"),
        ("V1ServiceSpec", "selector"),
        ("V1ReplicationControllerSpec", "selector"),
    }
)

# `+structType=atomic` structs: references and selectors are owned whole.
_ATOMIC_STRUCTS = frozenset(
    {
        "V1LabelSelector",
        "V1NodeSelector",
        "V1NodeSelectorTerm",
        "V1TopologySelectorTerm",
        "V1ObjectReference",
        "V1LocalObjectReference",
        "V1TypedLocalObjectReference",
        "V1ConfigMapKeySelector",
        "V1SecretKeySelector",
        "V1ObjectFieldSelector",
        "V1ResourceFieldSelector",
    }
)

_PRIMITIVES = frozenset({"str", "int", "float", "bool", "bytes", "datetime", "date", "object"})


class _ModelStruct(TypeNode):
    """A struct backed by a `kubernetes.client.models` class."""

    kind: Kind = "struct"

    def __init__(self, class_name: str) -> None:
        self.class_name = class_name
        self.atomic = class_name in _ATOMIC_STRUCTS

    def field(self, name: str) -> TypeNode | None:
        return _model_field(self.class_name, name)


@functools.lru_cache(maxsize=4096)
def _model_field(class_name: str, name: str) -> TypeNode | None:
    type_name = _json_fields(class_name).get(name)
    if type_name is None:
        return None
    key = (class_name, name)
    return _node_for(type_name, _LISTS.get(key, ListInfo()), key in _ATOMIC_MAPS)


@functools.cache
def _json_fields(class_name: str) -> dict[str, str]:
    """JSON field name -> python type name, e.g. 'containers' -> 'List[V1Container]'."""
    cls = getattr(_models, class_name)
    return {cls.attribute_map[attr]: type_name for attr, type_name in cls.openapi_types.items()}


@functools.cache
def _node_for(type_name: str, info: ListInfo, atomic_map: bool) -> TypeNode | None:
    if type_name.startswith("List[") and type_name.endswith("]"):
        return _ListNode(_node_for(type_name[5:-1], ListInfo(), False), info)
    if type_name.startswith("Dict[str, ") and type_name.endswith("]"):
        return _MapNode(_node_for(type_name[10:-1], ListInfo(), False), atomic_map)
    if type_name in _PRIMITIVES:
        return _SCALAR
    if isinstance(getattr(_models, type_name, None), type):
        return _ModelStruct(type_name)
    return None


# ---------------------------------------------------------------------------------------
# Custom resources: the CRD's structural schema carries the same markers as extensions.


class _SchemaNode(TypeNode):
    """A position described by an openAPIV3Schema (JSONSchemaProps) fragment."""

    def __init__(self, schema: Mapping[str, Any], root: bool = False) -> None:
        self._schema = schema
        self._root = root
        typ = schema.get("type")
        if typ == "array" or "items" in schema:
            self.kind = "list"
            self.list_info = _schema_list_info(schema)
            self.atomic = self.list_info.list_type == "atomic"
        elif typ == "object" or "properties" in schema or "additionalProperties" in schema:
            self.kind = "struct" if "properties" in schema or root else "map"
            self.atomic = schema.get("x-kubernetes-map-type") == "atomic"
        elif schema.get("x-kubernetes-preserve-unknown-fields"):
            self.kind = "struct"
            self.atomic = False

    def field(self, name: str) -> TypeNode | None:
        if self._root and name == "metadata":
            return _ModelStruct("V1ObjectMeta")
        sub = self._schema.get("properties", {}).get(name)
        if sub is None:
            extra = self._schema.get("additionalProperties")
            sub = extra if isinstance(extra, Mapping) else None
        return _SchemaNode(sub) if sub is not None else None

    def items(self) -> TypeNode | None:
        sub = self._schema.get("items")
        return _SchemaNode(sub) if isinstance(sub, Mapping) else None


def _schema_list_info(schema: Mapping[str, Any]) -> ListInfo:
    list_type = schema.get("x-kubernetes-list-type") or "atomic"
    keys = tuple(schema.get("x-kubernetes-list-map-keys") or ()) if list_type == "map" else ()
    item_props = (schema.get("items") or {}).get("properties") or {}
    defaults = tuple((k, item_props[k]["default"]) for k in keys if "default" in item_props.get(k, {}))
    return ListInfo((), "", list_type, keys, defaults)


def _builtin_group(group: str) -> bool:
    """Kubernetes' own API groups: the core group, unqualified names, and *.k8s.io."""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def type_for(api_version: str, kind: str, crd_schema: Mapping[str, Any] | None = None) -> TypeNode | None:
    """The root node for objects of apiVersion/kind, or None when the type is unknown.

    A CRD's openAPIV3Schema wins when given; otherwise built-in groups map to the model
    class named after group, version and kind (`CoreV1Event`, `EventsV1Event`) or, most
    often, version and kind alone (`V1Deployment`, `V2HorizontalPodAutoscaler`).
    """
    if crd_schema is not None:
        return _SchemaNode(crd_schema, root=True)
    group, _, version = api_version.rpartition("/")
    if not version or not _builtin_group(group):
        return None
    version_part = version[:1].upper() + version[1:]
    group_part = (group.split(".")[0] or "core").capitalize()
    for name in (group_part + version_part + kind, version_part + kind):
        cls = getattr(_models, name, None)
        if isinstance(cls, type) and hasattr(cls, "openapi_types"):
            return _ModelStruct(name)
    return None
