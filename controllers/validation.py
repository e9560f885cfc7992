"""Validation of API objects with the field paths and messages the real API server uses.

`kubectl apply` of a bad manifest must fail here exactly as it fails against a cluster
(`spec.template.spec.containers[0].image: Required value`), because the GitOps engine
shows these messages to users and because they tell people which line to fix.
`validate` returns metav1 `causes`; the apiserver turns them into a 422 with
`errors.invalid`. Problems a real server meets while decoding JSON (a malformed
quantity, non-string ConfigMap data) are raised as BadRequest, as Kubernetes does.

Custom resources are validated against their structural schema, and
`prune_unknown_fields` drops what the schema does not declare."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeGuard

from controllers import errors
from controllers.kinds import ResourceType
from controllers.quantity import QuantityError, format_quantity, parse_quantity
from controllers.selectors import (
    dns1123_subdomain_errors,
    label_selector_from_dict,
    label_value_errors,
    max_len_error,
    qualified_name_errors,
    regex_error,
)

Obj = dict[str, Any]
Cause = dict[str, str]

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
NOT_FOUND = "FieldValueNotFound"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
TYPE_INVALID = "FieldValueTypeInvalid"

IMMUTABLE = "field is immutable"
NEGATIVE = "must be greater than or equal to 0"
_MAX_INT32 = 2**31 - 1
_ANNOTATIONS_MAX_BYTES = 256 * 1024
_MAX_SECRET_BYTES = 1024 * 1024


# ---------------------------------------------------------------------------- value rendering


class GoValue(str):
    """A value already rendered the way Go's `%#v` prints it (structs, maps, slices)."""


def render(value: Any) -> str:
    """A bad value as `field.Error.ErrorBody` prints it: strings quoted, numbers bare."""
    if isinstance(value, GoValue):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _number(value: float | int | Decimal) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _q(value: Any) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def go_string_map(value: Mapping[str, Any] | None) -> GoValue:
    if value is None:
        return GoValue("map[string]string(nil)")
    inner = ", ".join(f"{_q(k)}:{_q(v)}" for k, v in sorted(value.items()))
    return GoValue(f"map[string]string{{{inner}}}")


def go_strings(value: Sequence[Any] | None) -> GoValue:
    if value is None:
        return GoValue("[]string(nil)")
    return GoValue("[]string{" + ", ".join(_q(v) for v in value) + "}")


def go_label_selector(selector: Mapping[str, Any] | None) -> GoValue:
    """`v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`, as in "field is immutable"."""
    selector = selector or {}
    exprs = selector.get("matchExpressions")
    if exprs is None:
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        rendered = (
            "[]v1.LabelSelectorRequirement{"
            + ", ".join(
                f"v1.LabelSelectorRequirement{{Key:{_q(e.get('key', ''))}, Operator:{_q(e.get('operator', ''))}, "
                f"Values:{go_strings(e.get('values'))}}}"
                for e in exprs
            )
            + "}"
        )
    return GoValue(
        f"v1.LabelSelector{{MatchLabels:{go_string_map(selector.get('matchLabels'))}, MatchExpressions:{rendered}}}"
    )


def go_int_or_string(value: Any) -> GoValue:
    if isinstance(value, str):
        return GoValue(f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{_q(value)}}}")
    return GoValue(f'intstr.IntOrString{{Type:0, IntVal:{int(value or 0)}, StrVal:""}}')


# ---------------------------------------------------------------------------- error collection


def _go_json_type(value: Any) -> str:
    """How encoding/json names a JSON value it cannot put into a Go string."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _join(path: str, child: str) -> str:
    return f"{path}.{child}" if path else child


class Errors:
    """Collects `causes` the way field.ErrorList does, rendering each body like ErrorBody."""

    def __init__(self, rt: ResourceType | None = None) -> None:
        self.rt = rt
        self.causes: list[Cause] = []

    def add(self, path: str, body: str, reason: str) -> None:
        cause = errors.field_error(path, body, reason)
        if cause not in self.causes:  # ToAggregate drops exact duplicates
            self.causes.append(cause)

    def required(self, path: str, detail: str = "") -> None:
        self.add(path, "Required value" + (f": {detail}" if detail else ""), REQUIRED)

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.add(path, f"Invalid value: {render(value)}: {detail}", INVALID)

    def type_invalid(self, path: str, value: Any, detail: str) -> None:
        self.add(path, f"Invalid value: {render(value)}: {detail}", TYPE_INVALID)

    def not_supported(self, path: str, value: Any, supported: Sequence[str]) -> None:
        body = f"Unsupported value: {render(value)}"
        if supported:
            body += ": supported values: " + ", ".join(_q(s) for s in supported)
        self.add(path, body, NOT_SUPPORTED)

    def duplicate(self, path: str, value: Any) -> None:
        self.add(path, f"Duplicate value: {render(value)}", DUPLICATE)

    def forbidden(self, path: str, detail: str) -> None:
        self.add(path, f"Forbidden: {detail}", FORBIDDEN)

    def not_found(self, path: str, value: Any) -> None:
        self.add(path, f"Not found: {render(value)}", NOT_FOUND)

    def too_long(self, path: str, detail: str) -> None:
        self.add(path, f"Too long: {detail}", TOO_LONG)

    def too_many(self, path: str, actual: int, maximum: int) -> None:
        self.add(path, f"Too many: {actual}: must have at most {maximum} items", TOO_MANY)

    def decode_error(self, message: str) -> errors.BadRequest:
        """What the apiserver answers when the body does not even decode into the Go type."""
        kind = self.rt.kind if self.rt else "object"
        version = self.rt.version if self.rt else "v1"
        return errors.BadRequest(f'{kind} in version "{version}" cannot be handled as a {kind}: {message}')

    # Small shared checks -------------------------------------------------------------
    def nonnegative(self, obj: Mapping[str, Any], key: str, path: str) -> None:
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            self.invalid(_join(path, key), value, NEGATIVE)

    def labels(self, labels: Any, path: str, go_struct: str = "ObjectMeta") -> None:
        """A map of label syntax (labels, selectors, nodeSelector). A non-string value is the
        classic `version: 1.0` YAML slip, which the apiserver rejects while decoding."""
        if not isinstance(labels, dict):
            return
        for key, value in labels.items():
            if value is not None and not isinstance(value, str):
                raise self.decode_error(
                    f"json: cannot unmarshal {_go_json_type(value)} into Go struct field "
                    f"{go_struct}.{path} of type string"
                )
            for msg in qualified_name_errors(key):
                self.invalid(path, key, msg)
            for msg in label_value_errors(value or ""):
                self.invalid(path, value or "", msg)

    def annotations(self, annotations: Any, path: str) -> None:
        if not isinstance(annotations, dict):
            return
        total = 0
        for key, value in annotations.items():
            if value is not None and not isinstance(value, str):
                raise self.decode_error(
                    f"json: cannot unmarshal {_go_json_type(value)} into Go struct field "
                    f"ObjectMeta.{path} of type string"
                )
            for msg in qualified_name_errors(key.lower()):
                self.invalid(path, key, msg)
            total += len(key) + len(str(value))
        if total > _ANNOTATIONS_MAX_BYTES:
            self.too_long(path, f"must have at most {_ANNOTATIONS_MAX_BYTES} bytes")

    def immutable(self, new: Any, old: Any, path: str, shown: Any = None) -> None:
        if new != old:
            self.invalid(path, new if shown is None else shown, IMMUTABLE)

    def one_of(
        self, obj: Mapping[str, Any], key: str, path: str, supported: Sequence[str], required: bool = True
    ) -> None:
        """Enum field: Required when empty (if it must be set), NotSupported when unknown."""
        value = obj.get(key)
        if value in (None, ""):
            if required:
                self.required(_join(path, key))
        elif value not in supported:
            self.not_supported(_join(path, key), value, supported)


# ---------------------------------------------------------------------------- name syntax

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL_FMT}$")
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_RE = re.compile(f"^{_DNS1035_LABEL_FMT}$")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(f"^{_CONFIG_KEY_FMT}$")
_ENV_VAR_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_RE = re.compile(f"^{_ENV_VAR_FMT}$")
_PERCENT_FMT = "[0-9]+%"
_PERCENT_RE = re.compile(f"^{_PERCENT_FMT}$")


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(
            regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                "start and end with an alphanumeric character",
                _DNS1123_LABEL_FMT,
                "my-name",
                "123-abc",
            )
        )
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(
            regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character",
                _DNS1035_LABEL_FMT,
                "my-name",
                "abc-123",
            )
        )
    return errs


def _path_segment_errors(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


def config_key_errors(value: str) -> list[str]:
    """ConfigMap and Secret keys (also env var sources' keys)."""
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY_RE.match(value):
        errs.append(
            regex_error(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                _CONFIG_KEY_FMT,
                "key.name",
                "KEY_NAME",
                "key-name",
            )
        )
    errs.extend(_chdir_prefix_errors(value))
    return errs


def _chdir_prefix_errors(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def _env_var_name_errors(value: str) -> list[str]:
    errs = []
    if not _ENV_VAR_RE.match(value):
        errs.append(
            regex_error(
                "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', "
                "or '.', and must not start with a digit",
                _ENV_VAR_FMT,
                "my.env-name",
                "MY_ENV.NAME",
                "MyEnvName1",
            )
        )
    errs.extend(_chdir_prefix_errors(value))
    return errs


def port_name_errors(value: str) -> list[str]:
    """IANA service names: what a named container/service port must look like."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _port_number_errors(value: Any) -> list[str]:
    if not _is_int(value) or not 1 <= value <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


NameFn = Callable[[str], list[str]]


def _name_fn_for(rt: ResourceType) -> NameFn:
    if not rt.group and rt.kind == "Namespace":
        return dns1123_label_errors
    if not rt.group and rt.kind == "Service":
        return dns1035_label_errors
    if rt.group == "rbac.authorization.k8s.io":
        return _path_segment_errors
    return dns1123_subdomain_errors


# ---------------------------------------------------------------------------- entry points


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> list[Cause]:
    """Every problem with `obj` (a `rt` object; `old` is the stored one on update)."""
    v = Errors(rt)
    _validate_meta(v, rt, obj, old)
    if rt.crd:
        if rt.schema:
            validate_schema(rt.schema, obj, errs=v)
    else:
        validator = _VALIDATORS.get((rt.group, rt.kind))
        if validator is not None:
            validator(v, obj, old)
    return v.causes


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _validate_meta(v: Errors, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    meta = _dict(obj.get("metadata"))
    name_fn = _name_fn_for(rt)
    name, generate = meta.get("name") or "", meta.get("generateName") or ""
    if not name and not generate:
        v.required("metadata.name", "name or generateName is required")
    if generate:
        masked = generate[:-1] + "a" if generate.endswith("-") else generate
        for msg in name_fn(masked):
            v.invalid("metadata.generateName", generate, msg)
    if name:
        for msg in name_fn(name):
            v.invalid("metadata.name", name, msg)
        if rt.group == "batch" and rt.kind == "CronJob" and len(name) > 52:
            v.invalid("metadata.name", name, "must be no more than 52 characters")
    namespace = meta.get("namespace") or ""
    if rt.namespaced:
        if not namespace:
            v.required("metadata.namespace")
        else:
            for msg in dns1123_label_errors(namespace):
                v.invalid("metadata.namespace", namespace, msg)
    elif namespace:
        v.forbidden("metadata.namespace", "not allowed on this type")
    v.labels(meta.get("labels"), "metadata.labels")
    v.annotations(meta.get("annotations"), "metadata.annotations")
    for finalizer in _list(meta.get("finalizers")):
        for msg in qualified_name_errors(str(finalizer)):
            v.invalid("metadata.finalizers", finalizer, msg)
    _validate_owner_references(v, _list(meta.get("ownerReferences")))
    if old is not None:
        old_meta = _dict(old.get("metadata"))
        if old_meta.get("name") and name:
            v.immutable(name, old_meta.get("name"), "metadata.name")


def _validate_owner_references(v: Errors, refs: list[Any]) -> None:
    controllers = []
    for ref in refs:
        ref = _dict(ref)
        for key, what in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")):
            if not ref.get(key):
                v.invalid(f"metadata.ownerReferences.{key}", ref.get(key) or "", f"{what} must not be empty")
        if ref.get("controller") is True:
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        v.invalid(
            "metadata.ownerReferences",
            refs,
            "Only one reference can have Controller set to true. "
            f'Found "true" in references for {" and ".join(controllers)}',
        )


# ---------------------------------------------------------------------------- label selectors

_VALUES_FORBIDDEN = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"


def _validate_label_selector(v: Errors, selector: Any, path: str) -> None:
    selector = _dict(selector)
    v.labels(selector.get("matchLabels"), f"{path}.matchLabels", "LabelSelector")
    for i, expr in enumerate(_list(selector.get("matchExpressions"))):
        expr = _dict(expr)
        p = f"{path}.matchExpressions[{i}]"
        op, values = expr.get("operator"), _list(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                v.required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                v.forbidden(f"{p}.values", _VALUES_FORBIDDEN)
        else:
            v.invalid(f"{p}.operator", op or "", "not a valid selector operator")
        for msg in qualified_name_errors(str(expr.get("key") or "")):
            v.invalid(f"{p}.key", expr.get("key") or "", msg)
        for j, value in enumerate(values):
            for msg in label_value_errors(str(value)):
                v.invalid(f"{p}.values[{j}]", value, msg)


def _selector_matches(selector: Obj, labels: Any) -> bool:
    try:
        return label_selector_from_dict(selector).matches(_dict(labels))
    except errors.BadRequest:
        return True  # the selector itself is reported invalid elsewhere


# ---------------------------------------------------------------------------- quantities and resources

_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _quantity(v: Errors, value: Any, path: str) -> Decimal | None:
    try:
        amount = parse_quantity(value)
    except QuantityError as exc:
        raise v.decode_error(str(exc)) from None
    if amount < 0:
        v.invalid(path, format_quantity(value), NEGATIVE)
        return None
    return amount


def _is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _validate_resources(v: Errors, resources: Any, path: str) -> None:
    resources = _dict(resources)
    limits, requests = _dict(resources.get("limits")), _dict(resources.get("requests"))
    parsed: dict[str, Decimal] = {}
    for section, values in (("limits", limits), ("requests", requests)):
        for name, raw in values.items():
            p = f"{path}.{section}[{name}]"
            if "/" in name:
                for msg in qualified_name_errors(name):
                    v.invalid(p, name, msg)
            elif name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
                v.invalid(p, name, "must be a standard resource for containers")
            amount = _quantity(v, raw, p)
            if amount is None:
                continue
            if not _is_native_resource(name) and amount != amount.to_integral_value():
                v.invalid(p, format_quantity(raw), "must be an integer")
            if section == "limits":
                parsed[name] = amount
                continue
            overcommit = _is_native_resource(name) and not name.startswith("hugepages-")
            if name not in parsed:
                if not overcommit:
                    v.required(f"{path}.limits", "Limit must be set for non overcommitable resources")
                continue
            limit_text = format_quantity(limits[name])
            if not overcommit and amount != parsed[name]:
                v.invalid(f"{path}.requests", format_quantity(raw), f"must be equal to {name} limit of {limit_text}")
            elif amount > parsed[name]:
                v.invalid(
                    f"{path}.requests",
                    format_quantity(raw),
                    f"must be less than or equal to {name} limit of {limit_text}",
                )


# ---------------------------------------------------------------------------- pod spec

_POD_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_RESOURCE_FIELD_REFS = (
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
)
_VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _validate_port_ref(v: Errors, port: Any, path: str) -> None:
    """An IntOrString port: a number in range, or an IANA port name."""
    if isinstance(port, str):
        for msg in port_name_errors(port):
            v.invalid(path, port, msg)
    else:
        for msg in _port_number_errors(port):
            v.invalid(path, port if port is not None else 0, msg)


def _validate_handler(v: Errors, handler: Obj, path: str) -> None:
    kinds = [k for k in ("exec", "httpGet", "tcpSocket", "grpc", "sleep") if handler.get(k) is not None]
    if not kinds:
        v.required(path, "must specify a handler type")
    for extra in kinds[1:]:
        v.forbidden(f"{path}.{extra}", "may not specify more than 1 handler type")
    http = handler.get("httpGet")
    if isinstance(http, dict):
        _validate_port_ref(v, http.get("port"), f"{path}.httpGet.port")
        v.one_of(http, "scheme", f"{path}.httpGet", ("HTTP", "HTTPS"), required=False)
    tcp = handler.get("tcpSocket")
    if isinstance(tcp, dict):
        _validate_port_ref(v, tcp.get("port"), f"{path}.tcpSocket.port")
    grpc = handler.get("grpc")
    if isinstance(grpc, dict):
        for msg in _port_number_errors(grpc.get("port")):
            v.invalid(f"{path}.grpc.port", grpc.get("port"), msg)


_PROBE_COUNTERS = ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold")


def _validate_probe(v: Errors, probe: Obj, path: str, single_success: bool) -> None:
    _validate_handler(v, probe, path)
    for key in _PROBE_COUNTERS:
        v.nonnegative(probe, key, path)
    if single_success and probe.get("successThreshold", 1) != 1:
        v.invalid(f"{path}.successThreshold", probe.get("successThreshold"), "must be 1")


_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _validate_env(v: Errors, env: list[Any], path: str) -> None:
    for i, item in enumerate(env):
        item = _dict(item)
        p = f"{path}[{i}]"
        name = item.get("name") or ""
        if not name:
            v.required(f"{p}.name")
        else:
            for msg in _env_var_name_errors(name):
                v.invalid(f"{p}.name", name, msg)
        source = item.get("valueFrom")
        if source is None:
            continue
        source = _dict(source)
        if item.get("value"):
            v.invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty")
        kinds = [k for k in _ENV_SOURCES if source.get(k)]
        if not kinds:
            v.invalid(
                f"{p}.valueFrom",
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )
        elif len(kinds) > 1:
            v.invalid(f"{p}.valueFrom", "", "may not have more than one field specified at a time")
        field_ref = _dict(source.get("fieldRef"))
        if field_ref:
            fp = field_ref.get("fieldPath") or ""
            if not fp:
                v.required(f"{p}.valueFrom.fieldRef.fieldPath")
            elif fp not in _POD_FIELD_PATHS and not re.fullmatch(r"metadata\.(labels|annotations)\['.+'\]", fp):
                v.not_supported(f"{p}.valueFrom.fieldRef.fieldPath", fp, _POD_FIELD_PATHS)
        resource_ref = _dict(source.get("resourceFieldRef"))
        if resource_ref:
            res = resource_ref.get("resource") or ""
            if not res:
                v.required(f"{p}.valueFrom.resourceFieldRef.resource")
            elif res not in _RESOURCE_FIELD_REFS and not re.fullmatch(r"(limits|requests)\.hugepages-.+", res):
                v.not_supported(f"{p}.valueFrom.resourceFieldRef.resource", res, _RESOURCE_FIELD_REFS)
        for key in ("configMapKeyRef", "secretKeyRef"):
            ref = _dict(source.get(key))
            if not ref:
                continue
            for msg in dns1123_subdomain_errors(ref.get("name") or ""):
                v.invalid(f"{p}.valueFrom.{key}.name", ref.get("name") or "", msg)
            if not ref.get("key"):
                v.required(f"{p}.valueFrom.{key}.key")
            else:
                for msg in config_key_errors(ref["key"]):
                    v.invalid(f"{p}.valueFrom.{key}.key", ref["key"], msg)


def _validate_container(v: Errors, c: Obj, path: str, volumes: set[str], host_network: bool, init: bool) -> None:
    image = c.get("image")
    if not image:
        v.required(f"{path}.image")
    elif isinstance(image, str) and image != image.strip():
        v.invalid(f"{path}.image", image, "must not have leading or trailing whitespace")
    v.one_of(c, "imagePullPolicy", path, ("Always", "IfNotPresent", "Never"))
    v.one_of(c, "terminationMessagePolicy", path, ("File", "FallbackToLogsOnError"))
    sidecar = init and c.get("restartPolicy") == "Always"
    if init:
        v.one_of(c, "restartPolicy", path, ("Always",), required=False)
    elif c.get("restartPolicy"):
        v.forbidden(f"{path}.restartPolicy", "may not be set for non-init containers")
    port_names: set[str] = set()
    for i, port in enumerate(_list(c.get("ports"))):
        port = _dict(port)
        p = f"{path}.ports[{i}]"
        name = port.get("name")
        if name:
            for msg in port_name_errors(name):
                v.invalid(f"{p}.name", name, msg)
            if name in port_names:
                v.duplicate(f"{p}.name", name)
            port_names.add(name)
        if not port.get("containerPort"):
            v.required(f"{p}.containerPort")
        else:
            for msg in _port_number_errors(port["containerPort"]):
                v.invalid(f"{p}.containerPort", port["containerPort"], msg)
        if port.get("hostPort"):
            for msg in _port_number_errors(port["hostPort"]):
                v.invalid(f"{p}.hostPort", port["hostPort"], msg)
            if host_network and port["hostPort"] != port.get("containerPort"):
                v.invalid(f"{p}.hostPort", port["hostPort"], "must match `containerPort` when `hostNetwork` is true")
        v.one_of(port, "protocol", p, ("SCTP", "TCP", "UDP"))
    _validate_env(v, _list(c.get("env")), f"{path}.env")
    mount_paths: set[str] = set()
    for i, mount in enumerate(_list(c.get("volumeMounts"))):
        mount = _dict(mount)
        p = f"{path}.volumeMounts[{i}]"
        if not mount.get("name"):
            v.required(f"{p}.name")
        elif mount["name"] not in volumes:
            v.not_found(f"{p}.name", mount["name"])
        mount_path = mount.get("mountPath")
        if not mount_path:
            v.required(f"{p}.mountPath")
        elif mount_path in mount_paths:
            v.invalid(f"{p}.mountPath", mount_path, "must be unique")
        else:
            mount_paths.add(mount_path)
        sub_path = mount.get("subPath")
        if sub_path:
            if sub_path.startswith("/"):
                v.invalid(f"{p}.subPath", sub_path, "must be a relative path")
            if ".." in sub_path.split("/"):
                v.invalid(f"{p}.subPath", sub_path, "must not contain '..'")
    _validate_resources(v, c.get("resources"), f"{path}.resources")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(key)
        if not isinstance(probe, dict):
            continue
        if init and not sidecar:
            v.forbidden(f"{path}.{key}", "may not be set for init containers without restartPolicy=Always")
            continue
        _validate_probe(v, probe, f"{path}.{key}", single_success=key != "readinessProbe")
    lifecycle = _dict(c.get("lifecycle"))
    for key in ("postStart", "preStop"):
        if isinstance(lifecycle.get(key), dict):
            _validate_handler(v, lifecycle[key], f"{path}.lifecycle.{key}")


def _validate_volumes(v: Errors, volumes: list[Any], path: str) -> set[str]:
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        vol = _dict(vol)
        p = f"{path}[{i}]"
        name = vol.get("name") or ""
        if not name:
            v.required(f"{p}.name")
        else:
            for msg in dns1123_label_errors(name):
                v.invalid(f"{p}.name", name, msg)
            if name in names:
                v.duplicate(f"{p}.name", name)
            names.add(name)
        sources = [k for k in _VOLUME_SOURCES if vol.get(k) is not None]
        if not sources:
            v.required(p, "must specify a volume type")
        for extra in sources[1:]:
            v.forbidden(f"{p}.{extra}", "may not specify more than 1 volume type")
        for source, key in (
            ("configMap", "name"),
            ("secret", "secretName"),
            ("persistentVolumeClaim", "claimName"),
            ("hostPath", "path"),
        ):
            spec = vol.get(source)
            if isinstance(spec, dict) and not spec.get(key):
                v.required(f"{p}.{source}.{key}")
        for source in ("configMap", "secret", "projected", "downwardAPI"):
            mode = _dict(vol.get(source)).get("defaultMode")
            if mode is not None and (not _is_int(mode) or not 0 <= mode <= 0o777):
                v.invalid(
                    f"{p}.{source}.defaultMode", mode, "must be a number between 0 and 0777 (octal), both inclusive"
                )
    return names


def _validate_tolerations(v: Errors, tolerations: list[Any], path: str) -> None:
    for i, t in enumerate(tolerations):
        t = _dict(t)
        p = f"{path}[{i}]"
        key, op, effect = t.get("key") or "", t.get("operator") or "", t.get("effect") or ""
        if key:
            for msg in qualified_name_errors(key):
                v.invalid(f"{p}.key", key, msg)
        elif op != "Exists":
            v.invalid(
                f"{p}.operator",
                op,
                'operator must be Exists when `key` is empty, which means "match all values and all keys"',
            )
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            v.invalid(f"{p}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")
        if op in ("Equal", ""):
            msgs = label_value_errors(str(t.get("value") or ""))
            if msgs:
                v.invalid(f"{p}.operator", t.get("value"), ";".join(msgs))
        elif op == "Exists":
            if t.get("value"):
                shown = GoValue(
                    f"core.Toleration{{Key:{_q(key)}, Operator:{_q(op)}, Value:{_q(t.get('value'))}, "
                    f"Effect:{_q(effect)}, TolerationSeconds:(*int64)(nil)}}"
                )
                v.invalid(f"{p}.operator", shown, "value must be empty when `operator` is 'Exists'")
        else:
            v.not_supported(f"{p}.operator", op, ("Equal", "Exists"))
        if effect and effect not in _TAINT_EFFECTS:
            v.not_supported(f"{p}.effect", effect, _TAINT_EFFECTS)


def _validate_node_selector_requirement(v: Errors, req: Obj, path: str, field: bool) -> None:
    op, values = req.get("operator"), _list(req.get("values"))
    if op in ("In", "NotIn"):
        if not values:
            v.required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
    elif op in ("Exists", "DoesNotExist"):
        if values:
            v.forbidden(f"{path}.values", _VALUES_FORBIDDEN)
    elif op in ("Gt", "Lt") and not field:
        if len(values) != 1:
            v.required(f"{path}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'")
    else:
        v.invalid(f"{path}.operator", op or "", "not a valid selector operator")
    key = req.get("key") or ""
    if field:
        if key != "metadata.name":
            v.invalid(f"{path}.key", key, "not a valid field selector key")
    else:
        for msg in qualified_name_errors(key):
            v.invalid(f"{path}.key", key, msg)


def _validate_node_selector_term(v: Errors, term: Obj, path: str) -> None:
    for j, req in enumerate(_list(term.get("matchExpressions"))):
        _validate_node_selector_requirement(v, _dict(req), f"{path}.matchExpressions[{j}]", field=False)
    for j, req in enumerate(_list(term.get("matchFields"))):
        _validate_node_selector_requirement(v, _dict(req), f"{path}.matchFields[{j}]", field=True)


def _validate_affinity(v: Errors, affinity: Obj, path: str) -> None:
    node = _dict(affinity.get("nodeAffinity"))
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if isinstance(required, dict):
        p = f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        terms = _list(required.get("nodeSelectorTerms"))
        if not terms:
            v.required(p, "must have at least one node selector term")
        for i, term in enumerate(terms):
            _validate_node_selector_term(v, _dict(term), f"{p}[{i}]")
    for i, pref in enumerate(_list(node.get("preferredDuringSchedulingIgnoredDuringExecution"))):
        pref = _dict(pref)
        p = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        weight = pref.get("weight")
        if not _is_int(weight) or not 1 <= weight <= 100:
            v.invalid(f"{p}.weight", weight, "must be in the range 1-100")
        _validate_node_selector_term(v, _dict(pref.get("preference")), f"{p}.preference")


def _validate_topology_spread(v: Errors, constraints: list[Any], path: str) -> None:
    for i, c in enumerate(constraints):
        c = _dict(c)
        p = f"{path}[{i}]"
        skew = c.get("maxSkew")
        if not _is_int(skew) or skew <= 0:
            v.invalid(f"{p}.maxSkew", skew, "must be greater than zero")
        key = c.get("topologyKey") or ""
        if not key:
            v.required(f"{p}.topologyKey", "can not be empty")
        else:
            for msg in qualified_name_errors(key):
                v.invalid(f"{p}.topologyKey", key, msg)
        v.one_of(c, "whenUnsatisfiable", p, ("DoNotSchedule", "ScheduleAnyway"))
        if c.get("labelSelector") is not None:
            _validate_label_selector(v, c["labelSelector"], f"{p}.labelSelector")


def validate_pod_spec(v: Errors, spec: Obj, path: str) -> None:
    """ValidatePodSpec: shared by Pods (`spec`) and templates (`spec.template.spec`)."""
    volumes = _validate_volumes(v, _list(spec.get("volumes")), f"{path}.volumes")
    host_network = bool(spec.get("hostNetwork"))
    container_names: set[str] = set()
    containers = _list(spec.get("containers"))
    if not containers:
        v.required(f"{path}.containers")
    for key, init in (("initContainers", True), ("containers", False)):
        for i, c in enumerate(_list(spec.get(key))):
            c = _dict(c)
            p = f"{path}.{key}[{i}]"
            name = c.get("name") or ""
            if not name:
                v.required(f"{p}.name")
            else:
                for msg in dns1123_label_errors(name):
                    v.invalid(f"{p}.name", name, msg)
                if name in container_names:
                    v.duplicate(f"{p}.name", name)
                container_names.add(name)
            _validate_container(v, c, p, volumes, host_network, init)
    policy = spec.get("restartPolicy")
    if not policy:
        v.required(f"{path}.restartPolicy")
    elif policy not in ("Always", "OnFailure", "Never"):
        v.not_supported(f"{path}.restartPolicy", policy, ("Always", "OnFailure", "Never"))
    v.one_of(spec, "dnsPolicy", path, ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"))
    if spec.get("dnsPolicy") == "None" and not spec.get("dnsConfig"):
        v.required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None")
    v.labels(spec.get("nodeSelector"), f"{path}.nodeSelector", "PodSpec")
    sa = spec.get("serviceAccountName")
    if sa:
        for msg in dns1123_subdomain_errors(sa):
            v.invalid(f"{path}.serviceAccountName", sa, msg)
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            for msg in dns1123_label_errors(spec[key]):
                v.invalid(f"{path}.{key}", spec[key], msg)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not _is_int(deadline) or not 1 <= deadline <= _MAX_INT32):
        v.invalid(f"{path}.activeDeadlineSeconds", deadline, f"must be between 1 and {_MAX_INT32}, inclusive")
    _validate_tolerations(v, _list(spec.get("tolerations")), f"{path}.tolerations")
    _validate_affinity(v, _dict(spec.get("affinity")), f"{path}.affinity")
    _validate_topology_spread(v, _list(spec.get("topologySpreadConstraints")), f"{path}.topologySpreadConstraints")


_POD_MUTABLE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _validate_pod(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    validate_pod_spec(v, spec, "spec")
    if old is None:
        if spec.get("ephemeralContainers"):
            v.forbidden("spec.ephemeralContainers", "cannot be set on create")
        return
    old_spec = _dict(old.get("spec"))
    old_tolerations = _list(old_spec.get("tolerations"))
    if any(t not in _list(spec.get("tolerations")) for t in old_tolerations):
        v.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")

    def mutable_stripped(s: Obj) -> Obj:
        s = dict(s)
        for key in ("containers", "initContainers"):
            s[key] = [{k: val for k, val in _dict(c).items() if k != "image"} for c in _list(s.get(key))]
        # ephemeralContainers belong to their own subresource and are not compared here.
        for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "ephemeralContainers"):
            s.pop(key, None)
        return s

    if mutable_stripped(spec) != mutable_stripped(old_spec):
        v.forbidden("spec", _POD_MUTABLE_MSG)


# ---------------------------------------------------------------------------- workloads


def _validate_template(
    v: Errors, spec: Obj, path: str, *, restart: Sequence[str] | None, deadline_forbidden_for: str = ""
) -> Obj | None:
    """A pod template at `path`: metadata, the pod spec and the owner's restartPolicy rule."""
    template = spec.get("template")
    if not isinstance(template, dict):
        v.required(path)
        return None
    meta = _dict(template.get("metadata"))
    v.labels(meta.get("labels"), f"{path}.metadata.labels")
    v.annotations(meta.get("annotations"), f"{path}.metadata.annotations")
    pod_spec = _dict(template.get("spec"))
    validate_pod_spec(v, pod_spec, f"{path}.spec")
    if pod_spec.get("ephemeralContainers"):
        v.forbidden(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template")
    policy = pod_spec.get("restartPolicy")
    if restart is not None and policy and policy not in restart:
        v.not_supported(f"{path}.spec.restartPolicy", policy, restart)
    if deadline_forbidden_for and pod_spec.get("activeDeadlineSeconds") is not None:
        v.forbidden(
            f"{path}.spec.activeDeadlineSeconds", f"activeDeadlineSeconds in {deadline_forbidden_for} is not Supported"
        )
    return template


def _validate_replicated(v: Errors, spec: Obj, kind: str, empty_word: str) -> None:
    """Selector + template rules shared by Deployment, ReplicaSet, StatefulSet and DaemonSet."""
    selector = spec.get("selector")
    if selector is None:
        v.required("spec.selector")
    else:
        _validate_label_selector(v, selector, "spec.selector")
        selector = _dict(selector)
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            v.invalid("spec.selector", go_label_selector(selector), f"empty selector is invalid for {empty_word}")
    template = _validate_template(v, spec, "spec.template", restart=("Always",), deadline_forbidden_for=kind)
    if (
        template is not None
        and isinstance(selector, dict)
        and (selector.get("matchLabels") or selector.get("matchExpressions"))
    ):
        labels = _dict(template.get("metadata")).get("labels")
        if not _selector_matches(selector, labels):
            v.invalid(
                "spec.template.metadata.labels", go_string_map(labels), "`selector` does not match template `labels`"
            )


def _int_or_percent(v: Errors, value: Any, path: str) -> int | None:
    """Validate an IntOrString that must be a non-negative int or percentage; its number."""
    if isinstance(value, str):
        if not _PERCENT_RE.match(value):
            v.invalid(
                path,
                value,
                regex_error(
                    "a valid percent string must be a numeric string followed by an ending '%'",
                    _PERCENT_FMT,
                    "1%",
                    "93%",
                ),
            )
            return None
        return int(value[:-1])
    if _is_int(value):
        if value < 0:
            v.invalid(path, value, NEGATIVE)
            return None
        return int(value)
    return None


def _validate_rolling(v: Errors, rolling: Obj, path: str, percent_cap_unavailable: bool) -> None:
    unavailable = _int_or_percent(v, rolling.get("maxUnavailable"), f"{path}.maxUnavailable")
    surge = _int_or_percent(v, rolling.get("maxSurge"), f"{path}.maxSurge")
    if unavailable == 0 and surge == 0:
        v.invalid(
            f"{path}.maxUnavailable",
            go_int_or_string(rolling.get("maxUnavailable")),
            "may not be 0 when `maxSurge` is 0",
        )
    mu = rolling.get("maxUnavailable")
    if percent_cap_unavailable and isinstance(mu, str) and unavailable is not None and unavailable > 100:
        v.invalid(f"{path}.maxUnavailable", mu, "must not be greater than 100%")


def _validate_selector_update(v: Errors, spec: Obj, old: Obj | None) -> None:
    if old is None:
        return
    old_selector = _dict(old.get("spec")).get("selector")
    if spec.get("selector") != old_selector:
        v.invalid("spec.selector", go_label_selector(spec.get("selector")), IMMUTABLE)


def _validate_deployment(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    for key in ("replicas", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        v.nonnegative(spec, key, "spec")
    _validate_replicated(v, spec, "Deployment", "deployment")
    strategy = _dict(spec.get("strategy"))
    stype = strategy.get("type")
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            v.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
    elif stype == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if not isinstance(rolling, dict):
            v.required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")
        else:
            _validate_rolling(v, rolling, "spec.strategy.rollingUpdate", percent_cap_unavailable=True)
    else:
        v.one_of(strategy, "type", "spec.strategy", ("Recreate", "RollingUpdate"))
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0)
    if _is_int(deadline) and _is_int(min_ready) and deadline <= min_ready:
        v.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")
    _validate_selector_update(v, spec, old)


def _validate_replicaset(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    for key in ("replicas", "minReadySeconds"):
        v.nonnegative(spec, key, "spec")
    # Kubernetes really says "deployment" here: the ReplicaSet check was copied from it.
    _validate_replicated(v, spec, "ReplicaSet", "deployment")
    _validate_selector_update(v, spec, old)


def _validate_replication_controller(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    for key in ("replicas", "minReadySeconds"):
        v.nonnegative(spec, key, "spec")
    selector = _dict(spec.get("selector"))
    if not selector:
        v.required("spec.selector")
    v.labels(selector, "spec.selector", "ReplicationControllerSpec")
    template = _validate_template(
        v, spec, "spec.template", restart=("Always",), deadline_forbidden_for="ReplicationController"
    )
    if template is not None and selector:
        labels = _dict(_dict(template.get("metadata")).get("labels"))
        if any(labels.get(k) != val for k, val in selector.items()):
            v.invalid(
                "spec.template.metadata.labels", go_string_map(labels), "`selector` does not match template `labels`"
            )


_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def _validate_statefulset(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    for key in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        v.nonnegative(spec, key, "spec")
    v.one_of(spec, "podManagementPolicy", "spec", ("OrderedReady", "Parallel"))
    strategy = _dict(spec.get("updateStrategy"))
    v.one_of(strategy, "type", "spec.updateStrategy", ("OnDelete", "RollingUpdate"))
    rolling = strategy.get("rollingUpdate")
    if rolling is not None and strategy.get("type") == "OnDelete":
        v.invalid("spec.updateStrategy.rollingUpdate", rolling, "only allowed for updateStrategy 'RollingUpdate'")
    elif isinstance(rolling, dict):
        v.nonnegative(rolling, "partition", "spec.updateStrategy.rollingUpdate")
    retention = _dict(spec.get("persistentVolumeClaimRetentionPolicy"))
    for key in ("whenDeleted", "whenScaled"):
        v.one_of(retention, key, "spec.persistentVolumeClaimRetentionPolicy", ("Retain", "Delete"), required=False)
    if spec.get("serviceName"):
        for msg in dns1123_label_errors(spec["serviceName"]):
            v.invalid("spec.serviceName", spec["serviceName"], msg)
    _validate_replicated(v, spec, "StatefulSet", "statefulset")
    for i, claim in enumerate(_list(spec.get("volumeClaimTemplates"))):
        name = _dict(_dict(claim).get("metadata")).get("name") or ""
        if not name:
            v.required(f"spec.volumeClaimTemplates[{i}].metadata.name")
        else:
            for msg in dns1123_subdomain_errors(name):
                v.invalid(f"spec.volumeClaimTemplates[{i}].metadata.name", name, msg)
    if old is not None:
        old_spec = _dict(old.get("spec"))
        frozen = {k: val for k, val in spec.items() if k not in _STS_MUTABLE}
        old_frozen = {k: val for k, val in old_spec.items() if k not in _STS_MUTABLE}
        if frozen != old_frozen:
            fields = ", ".join(f"'{f}'" for f in _STS_MUTABLE[:-1])
            v.forbidden(
                "spec",
                f"updates to statefulset spec for fields other than {fields} and '{_STS_MUTABLE[-1]}' are forbidden",
            )


def _validate_daemonset(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    for key in ("minReadySeconds", "revisionHistoryLimit"):
        v.nonnegative(spec, key, "spec")
    _validate_replicated(v, spec, "DaemonSet", "daemonset")
    strategy = _dict(spec.get("updateStrategy"))
    v.one_of(strategy, "type", "spec.updateStrategy", ("OnDelete", "RollingUpdate"))
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "RollingUpdate" and isinstance(rolling, dict):
        _validate_rolling(v, rolling, "spec.updateStrategy.rollingUpdate", percent_cap_unavailable=True)
    _validate_selector_update(v, spec, old)


# ---------------------------------------------------------------------------- batch

_JOB_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
_JOB_NAME = "batch.kubernetes.io/job-name"
_JOB_RESTART = ("OnFailure", "Never")


def _validate_job_spec(v: Errors, spec: Obj, path: str) -> None:
    for key in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ):
        v.nonnegative(spec, key, path)
    mode = spec.get("completionMode")
    v.one_of(spec, "completionMode", path, ("NonIndexed", "Indexed"), required=False)
    if mode == "Indexed" and spec.get("completions") is None:
        v.required(f"{path}.completions", "when completion mode is Indexed")
    selector = spec.get("selector")
    if selector is not None:
        _validate_label_selector(v, selector, f"{path}.selector")
    template = _validate_template(v, spec, f"{path}.template", restart=None)
    if template is None:
        return
    policy = _dict(template.get("spec")).get("restartPolicy")
    if policy not in _JOB_RESTART:
        v.required(f"{path}.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"')
    labels = _dict(template.get("metadata")).get("labels")
    if isinstance(selector, dict) and not _selector_matches(selector, labels):
        v.invalid(
            f"{path}.template.metadata.labels", go_string_map(labels), "`selector` does not match template `labels`"
        )


def _validate_has_label(v: Errors, labels: Obj, key: str, expected: str) -> None:
    path = f"spec.template.metadata.labels[{key}]"
    if key not in labels:
        v.required(path, f"must be '{expected}'")
    elif labels[key] != expected:
        v.invalid(path, labels[key], f"must be '{expected}'")


def _validate_job(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    meta = _dict(obj.get("metadata"))
    if spec.get("selector") is None:
        v.required("spec.selector")
    _validate_job_spec(v, spec, "spec")
    template = _dict(spec.get("template"))
    labels = _dict(template.get("metadata")).get("labels")
    if not spec.get("manualSelector") and isinstance(spec.get("selector"), dict):
        if not labels:
            v.required("spec.template.metadata.labels", "must have labels when not using manual selector")
        else:
            uid, name = str(meta.get("uid") or ""), str(meta.get("name") or "")
            if not uid:
                v.required("metadata.uid")
            for key, expected in (
                ("controller-uid", uid),
                ("job-name", name),
                (_JOB_CONTROLLER_UID, uid),
                (_JOB_NAME, name),
            ):
                _validate_has_label(v, labels, key, expected)
            if not _selector_matches(spec["selector"], {_JOB_CONTROLLER_UID: uid}):
                v.invalid("spec.selector", go_label_selector(spec["selector"]), "`selector` not auto-generated")
    if old is None:
        return
    old_spec = _dict(old.get("spec"))
    _validate_selector_update(v, spec, old)
    mode = spec.get("completionMode")
    v.immutable(mode, old_spec.get("completionMode"), "spec.completionMode")
    if spec.get("completions") != old_spec.get("completions") and not (
        mode == "Indexed" and spec.get("completions") == spec.get("parallelism")
    ):
        v.invalid("spec.completions", spec.get("completions"), IMMUTABLE)
    old_template = _dict(old_spec.get("template"))
    if template != old_template:
        # Scheduling directives of a suspended job that never started may still change.
        if old_spec.get("suspend") and not _dict(old.get("status")).get("startTime"):
            template, old_template = _without_scheduling(template), _without_scheduling(old_template)
        if template != old_template:
            shown = GoValue("core.PodTemplateSpec" + render(spec.get("template")))
            v.invalid("spec.template", shown, IMMUTABLE)


def _without_scheduling(template: Obj) -> Obj:
    out = dict(template)
    out["metadata"] = {
        k: val for k, val in _dict(template.get("metadata")).items() if k not in ("labels", "annotations")
    }
    out["spec"] = {
        k: val
        for k, val in _dict(template.get("spec")).items()
        if k not in ("nodeSelector", "affinity", "tolerations", "schedulingGates")
    }
    return out


_CRON_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (  # (min, max, names)
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
        },
    ),
    (0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _cron_int(text: str, names: Mapping[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    number = int(text)
    if number < 0:
        raise ValueError(f"negative number ({number}) not allowed: {text}")
    return number


def _cron_range(expr: str, low: int, high: int, names: Mapping[str, int]) -> None:
    range_and_step = expr.split("/")
    bounds = range_and_step[0].split("-")
    if bounds[0] in ("*", "?"):
        start, end = low, high
    else:
        start = _cron_int(bounds[0], names)
        if len(bounds) > 2:
            raise ValueError(f"too many hyphens: {expr}")
        end = _cron_int(bounds[1], names) if len(bounds) == 2 else start
    if len(range_and_step) > 2:
        raise ValueError(f"too many slashes: {expr}")
    step = 1
    if len(range_and_step) == 2:
        step = _cron_int(range_and_step[1], {})
        if len(bounds) == 1:
            end = high
    if start < low:
        raise ValueError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise ValueError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")


def cron_schedule_error(schedule: str) -> str | None:
    """Why a standard 5-field cron schedule does not parse (robfig/cron's words), or None."""
    spec = schedule.strip()
    if spec.startswith(("TZ=", "CRON_TZ=")):
        zone, _, spec = spec.partition(" ")
        zone_name = zone.split("=", 1)[1]
        if _unknown_zone(zone_name):
            return f"provided bad location {zone_name}: unknown time zone {zone_name}"
        spec = spec.strip()
    if spec.startswith("@"):
        if spec in _CRON_DESCRIPTORS:
            return None
        if spec.startswith("@every "):
            duration = spec[len("@every ") :].strip()
            if re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", duration):
                return None
            return f'failed to parse duration {spec}: time: invalid duration "{duration}"'
        return f"unrecognized descriptor: {spec}"
    fields = spec.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    try:
        for text, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
            for expr in text.split(","):
                _cron_range(expr, low, high, names)
    except ValueError as exc:
        return str(exc)
    return None


def _unknown_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return bool(zoneinfo.available_timezones())  # no tz database here: do not reject everything
    return False


def _validate_cronjob(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    schedule = spec.get("schedule") or ""
    if not schedule:
        v.required("spec.schedule")
    else:
        problem = cron_schedule_error(schedule)
        if problem:
            v.invalid("spec.schedule", schedule, problem)
        if "TZ" in schedule:
            v.invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    zone = spec.get("timeZone")
    if zone is not None:
        if zone == "":
            v.invalid("spec.timeZone", zone, "timeZone must be nil or non-empty string")
        elif zone.lower() == "local":
            v.invalid(
                "spec.timeZone",
                zone,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            )
        elif _unknown_zone(zone):
            v.invalid("spec.timeZone", zone, f"unknown time zone {zone}")
    v.one_of(spec, "concurrencyPolicy", "spec", ("Allow", "Forbid", "Replace"))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        v.nonnegative(spec, key, "spec")
    job_template = _dict(spec.get("jobTemplate"))
    meta = _dict(job_template.get("metadata"))
    v.labels(meta.get("labels"), "spec.jobTemplate.metadata.labels")
    v.annotations(meta.get("annotations"), "spec.jobTemplate.metadata.annotations")
    job_spec = _dict(job_template.get("spec"))
    if job_spec.get("manualSelector"):
        v.not_supported("spec.jobTemplate.spec.manualSelector", True, ("nil", "false"))
    _validate_job_spec(v, job_spec, "spec.jobTemplate.spec")


# ---------------------------------------------------------------------------- core kinds

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _go_service_port(port: Obj) -> GoValue:
    return GoValue(
        f'core.ServicePort{{Name:"", Protocol:{_q(port.get("protocol") or "")}, '
        f"AppProtocol:(*string)(nil), Port:{port.get('port') or 0}, "
        'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def _validate_service(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    stype = spec.get("type") or ""
    if stype not in _SERVICE_TYPES:
        v.not_supported("spec.type", stype, _SERVICE_TYPES)
    cluster_ip = spec.get("clusterIP") or ""
    headless = cluster_ip == "None"
    ports = _list(spec.get("ports"))
    if stype == "ExternalName":
        name = spec.get("externalName") or ""
        if not name:
            v.required("spec.externalName")
        else:
            for msg in dns1123_subdomain_errors(name.rstrip(".")):
                v.invalid("spec.externalName", name, msg)
    elif not ports and not headless:
        v.required("spec.ports")
    if cluster_ip and not headless:
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            v.invalid("spec.clusterIPs[0]", cluster_ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    if headless and stype in ("NodePort", "LoadBalancer"):
        v.invalid("spec.clusterIPs[0]", cluster_ip, f"may not be set to 'None' for {stype} services")
    old_node_ports = {
        (_dict(p).get("port"), _dict(p).get("protocol")): _dict(p).get("nodePort")
        for p in _list(_dict((old or {}).get("spec")).get("ports"))
    }
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        port = _dict(port)
        p = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if not name and len(ports) > 1:
            v.required(f"{p}.name")
        elif name:
            for msg in dns1123_label_errors(name):
                v.invalid(f"{p}.name", name, msg)
            if name in names:
                v.duplicate(f"{p}.name", name)
            names.add(name)
        for msg in _port_number_errors(port.get("port")):
            v.invalid(f"{p}.port", port.get("port", 0), msg)
        v.one_of(port, "protocol", p, ("SCTP", "TCP", "UDP"))
        if port.get("targetPort") is not None:
            _validate_port_ref(v, port["targetPort"], f"{p}.targetPort")
        node_port = port.get("nodePort")
        if (
            node_port
            and stype in ("ClusterIP", "ExternalName")
            and node_port != old_node_ports.get((port.get("port"), port.get("protocol")))
        ):
            v.forbidden(f"{p}.nodePort", f"may not be used when `type` is '{stype}'")
        key = (port.get("port"), port.get("protocol"))
        if key in seen:
            v.duplicate(p, _go_service_port(port))
        seen.add(key)
    v.labels(spec.get("selector"), "spec.selector", "ServiceSpec")
    v.one_of(spec, "sessionAffinity", "spec", ("ClientIP", "None"))
    timeout = _dict(_dict(spec.get("sessionAffinityConfig")).get("clientIP")).get("timeoutSeconds")
    if (
        spec.get("sessionAffinity") == "ClientIP"
        and timeout is not None
        and (not _is_int(timeout) or not 0 < timeout <= 86400)
    ):
        v.invalid(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout, "must be greater than 0 and less than 86400"
        )
    external = stype in ("NodePort", "LoadBalancer") or (stype == "ClusterIP" and spec.get("externalIPs"))
    etp = spec.get("externalTrafficPolicy")
    if etp and not external:
        v.invalid("spec.externalTrafficPolicy", etp, "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
    elif etp:
        v.one_of(spec, "externalTrafficPolicy", "spec", ("Cluster", "Local"))
    v.one_of(spec, "internalTrafficPolicy", "spec", ("Cluster", "Local"), required=False)
    v.one_of(spec, "ipFamilyPolicy", "spec", ("PreferDualStack", "RequireDualStack", "SingleStack"), required=False)
    for i, family in enumerate(_list(spec.get("ipFamilies"))):
        if family not in ("IPv4", "IPv6"):
            v.not_supported(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6"))
    if old is not None:
        old_spec = _dict(old.get("spec"))
        new_ip = cluster_ip or (_list(spec.get("clusterIPs")) or [""])[0]
        old_ip = old_spec.get("clusterIP") or ""
        if new_ip and old_ip and new_ip != old_ip and "ExternalName" not in (stype, old_spec.get("type")):
            v.invalid("spec.clusterIPs[0]", go_strings(spec.get("clusterIPs") or [new_ip]), "may not change once set")


def _string_values(v: Errors, data: Any, kind: str) -> dict[str, str]:
    """`data` as strings: `port: 8080` in a ConfigMap fails to decode in Kubernetes too."""
    out = {}
    for key, value in _dict(data).items():
        if value is not None and not isinstance(value, str):
            raise v.decode_error(
                f"json: cannot unmarshal {_go_json_type(value)} into Go struct field {kind}.data of type string"
            )
        out[key] = value or ""
    return out


def _validate_data_keys(v: Errors, data: Obj, other: Obj, path: str, other_name: str) -> None:
    for key in data:
        for msg in config_key_errors(key):
            v.invalid(f"{path}[{key}]", key, msg)
        if key in other:
            v.invalid(f"{path}[{key}]", key, f"duplicate of key present in {other_name}")


def _validate_immutable_data(v: Errors, obj: Obj, old: Obj | None, keys: Sequence[str]) -> None:
    if old is None or old.get("immutable") is not True:
        return
    if obj.get("immutable") is not True:
        v.forbidden("immutable", "field is immutable when `immutable` is set")
    for key in keys:
        if (obj.get(key) or {}) != (old.get(key) or {}):
            v.forbidden(key, "field is immutable when `immutable` is set")


def _validate_configmap(v: Errors, obj: Obj, old: Obj | None) -> None:
    data = _string_values(v, obj.get("data"), "ConfigMap")
    binary = _dict(obj.get("binaryData"))
    _validate_data_keys(v, data, binary, "data", "binaryData")
    _validate_data_keys(v, binary, data, "binaryData", "data")
    size = sum(len(k) + len(val) for k, val in data.items()) + sum(
        len(k) + len(str(val)) * 3 // 4 for k, val in binary.items()
    )
    if size > _MAX_SECRET_BYTES:
        v.too_long("", f"must have at most {_MAX_SECRET_BYTES} bytes")
    _validate_immutable_data(v, obj, old, ("data", "binaryData"))


_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _validate_secret(v: Errors, obj: Obj, old: Obj | None) -> None:
    data = _string_values(v, obj.get("data"), "Secret")
    size = 0
    for key, value in data.items():
        for msg in config_key_errors(key):
            v.invalid(f"data[{key}]", key, msg)
        try:
            size += len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            bad = next((i for i, ch in enumerate(value) if ch not in _BASE64_ALPHABET), len(value))
            raise v.decode_error(f"illegal base64 data at input byte {bad}") from None
    if size > _MAX_SECRET_BYTES:
        v.too_long("data", f"must have at most {_MAX_SECRET_BYTES} bytes")
    stype = obj.get("type") or ""
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    if stype == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            v.required("metadata.annotations[kubernetes.io/service-account.name]")
    elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if stype.endswith("dockercfg") else ".dockerconfigjson"
        if key not in data:
            v.required(f"data[{key}]")
        else:
            try:
                json.loads(base64.b64decode(data[key]))
            except ValueError as exc:
                v.invalid(f"data[{key}]", "<secret contents redacted>", str(exc))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            v.required("data[username]")
            v.required("data[password]")
    elif stype == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            v.required("data[ssh-privatekey]")
    elif stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                v.required(f"data[{key}]")
    if old is not None:
        v.immutable(stype, old.get("type") or "", "type")
    _validate_immutable_data(v, obj, old, ("data",))


def _validate_namespace(v: Errors, obj: Obj, old: Obj | None) -> None:
    for finalizer in _list(_dict(obj.get("spec")).get("finalizers")):
        for msg in qualified_name_errors(str(finalizer)):
            v.invalid("spec.finalizers", finalizer, msg)


def _validate_node(v: Errors, obj: Obj, old: Obj | None) -> None:
    for i, taint in enumerate(_list(_dict(obj.get("spec")).get("taints"))):
        taint = _dict(taint)
        p = f"spec.taints[{i}]"
        key = taint.get("key") or ""
        for msg in qualified_name_errors(key):
            v.invalid(f"{p}.key", key, msg)
        for msg in label_value_errors(str(taint.get("value") or "")):
            v.invalid(f"{p}.value", taint.get("value"), msg)
        v.one_of(taint, "effect", p, _TAINT_EFFECTS)


# ---------------------------------------------------------------------------- CustomResourceDefinitions

_SCHEMA_TYPES = ("array", "boolean", "integer", "number", "object", "string")


def _validate_structural(v: Errors, schema: Any, path: str, what: str) -> None:
    """The parts of "must be a structural schema" that users trip over: a type everywhere."""
    if not isinstance(schema, dict):
        return
    stype = schema.get("type")
    free = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if not stype and not free:
        v.required(f"{path}.type", f"must not be empty for specified {what}")
    elif stype and stype not in _SCHEMA_TYPES:
        v.not_supported(f"{path}.type", stype, _SCHEMA_TYPES)
    for name, sub in _dict(schema.get("properties")).items():
        _validate_structural(v, sub, f"{path}.properties[{name}]", "object fields")
    if isinstance(schema.get("additionalProperties"), dict):
        _validate_structural(v, schema["additionalProperties"], f"{path}.additionalProperties", "object fields")
    if isinstance(schema.get("items"), dict):
        _validate_structural(v, schema["items"], f"{path}.items", "array items")


def _validate_crd(v: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj.get("spec"))
    names = _dict(spec.get("names"))
    group, plural = spec.get("group") or "", names.get("plural") or ""
    name = _dict(obj.get("metadata")).get("name") or ""
    if name and name != f"{plural}.{group}":
        v.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
    if not group:
        v.required("spec.group")
    elif dns1123_subdomain_errors(group):
        v.invalid("spec.group", group, ",".join(dns1123_subdomain_errors(group)))
    elif "." not in group:
        v.invalid("spec.group", group, "should be a domain with at least one dot")
    v.one_of(spec, "scope", "spec", ("Cluster", "Namespaced"))
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            v.required(f"spec.names.{key}")
    for key in ("plural", "singular"):
        if names.get(key) and dns1035_label_errors(names[key]):
            v.invalid(f"spec.names.{key}", names[key], ",".join(dns1035_label_errors(names[key])))
    for key in ("kind", "listKind"):
        value = str(names.get(key) or "")
        if value and dns1035_label_errors(value.lower()):
            v.invalid(
                f"spec.names.{key}",
                value,
                "may have mixed case, but should otherwise match: " + ",".join(dns1035_label_errors(value.lower())),
            )
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        v.invalid("spec.names.listKind", names["listKind"], "kind and listKind may not be the same")
    for key in ("shortNames", "categories"):
        for i, item in enumerate(_list(names.get(key))):
            if dns1035_label_errors(str(item)):
                v.invalid(f"spec.names.{key}[{i}]", item, ",".join(dns1035_label_errors(str(item))))
    versions = [_dict(x) for x in _list(spec.get("versions"))]
    seen: set[str] = set()
    for i, version in enumerate(versions):
        vname = str(version.get("name") or "")
        if dns1035_label_errors(vname):
            v.invalid(f"spec.versions[{i}].name", vname, ",".join(dns1035_label_errors(vname)))
        if vname in seen:
            v.invalid("spec.versions", spec.get("versions"), "must contain unique version names")
        seen.add(vname)
        root_path = f"spec.versions[{i}].schema.openAPIV3Schema"
        root = _dict(version.get("schema")).get("openAPIV3Schema")
        if not isinstance(root, dict):
            v.required(root_path, "schemas are required")
        elif root.get("type") != "object":
            if not root.get("type"):
                v.required(f"{root_path}.type", "must be object at the root")
            else:
                v.not_supported(f"{root_path}.type", root["type"], ("object",))
        else:
            for prop, sub in _dict(root.get("properties")).items():
                _validate_structural(v, sub, f"{root_path}.properties[{prop}]", "object fields")
    if sum(1 for x in versions if x.get("storage") is True) != 1:
        v.invalid(
            "spec.versions", spec.get("versions") or [], "must have exactly one version marked as storage version"
        )
    if versions and not any(x.get("served") is True for x in versions):
        v.invalid("spec.versions", spec.get("versions"), "must have at least one version marked as served")
    if old is None:
        return
    old_spec = _dict(old.get("spec"))
    v.immutable(spec.get("scope"), old_spec.get("scope"), "spec.scope")
    v.immutable(group, old_spec.get("group"), "spec.group")
    v.immutable(plural, _dict(old_spec.get("names")).get("plural"), "spec.names.plural")
    stored = _list(_dict(old.get("status")).get("storedVersions"))
    for i, stored_version in enumerate(stored):
        if stored_version not in seen:
            v.invalid(f"status.storedVersions[{i}]", stored_version, "must appear in spec.versions")


_VALIDATORS: dict[tuple[str, str], Callable[[Errors, Obj, Obj | None], None]] = {
    ("", "Pod"): _validate_pod,
    ("", "Service"): _validate_service,
    ("", "ConfigMap"): _validate_configmap,
    ("", "Secret"): _validate_secret,
    ("", "Namespace"): _validate_namespace,
    ("", "Node"): _validate_node,
    ("", "ReplicationController"): _validate_replication_controller,
    ("apps", "Deployment"): _validate_deployment,
    ("apps", "ReplicaSet"): _validate_replicaset,
    ("apps", "StatefulSet"): _validate_statefulset,
    ("apps", "DaemonSet"): _validate_daemonset,
    ("batch", "Job"): _validate_job,
    ("batch", "CronJob"): _validate_cronjob,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _validate_crd,
}


# ---------------------------------------------------------------------------- custom resources

_ROOT_KEYS = ("apiVersion", "kind", "metadata")
_OBJECT_META_FIELDS = frozenset(
    (
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    )
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(expected: str, actual: str) -> bool:
    return expected == actual or (expected == "number" and actual == "integer")


def validate_schema(schema: Obj, obj: Any, path: str = "", errs: Errors | None = None) -> list[Cause]:
    """Validate a custom resource (or any value at `path`) against an openAPIV3Schema,
    with the apiextensions apiserver's messages (`spec.replicas in body must be of type
    integer: "string"`)."""
    v = errs or Errors()
    if path == "" and isinstance(obj, dict):
        props = _dict(schema.get("properties"))
        trimmed = {k: val for k, val in obj.items() if k not in _ROOT_KEYS}
        root = {**schema, "properties": {k: s for k, s in props.items() if k not in _ROOT_KEYS}}
        root.pop("required", None)
        for key in _list(schema.get("required")):
            if key not in obj:
                v.required(key)
        _check(v, root, trimmed, "")
    else:
        _check(v, schema, obj, path)
    return v.causes


def _check(v: Errors, schema: Obj, value: Any, path: str) -> None:
    name = path or "body"
    actual = _json_type(value)
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            v.type_invalid(path, "null", f'{name} in body must be of type {schema["type"]}: "null"')
        return
    if schema.get("x-kubernetes-int-or-string"):
        if actual not in ("integer", "string"):
            v.type_invalid(path, actual, f'{name} in body must be of type integer,string: "{actual}"')
            return
    elif schema.get("type") and not _type_ok(schema["type"], actual):
        v.type_invalid(path, actual, f'{name} in body must be of type {schema["type"]}: "{actual}"')
        return
    if "enum" in schema and value not in schema["enum"]:
        shown = [e if isinstance(e, str) else render(e) for e in schema["enum"]]  # Go's %v of each
        v.not_supported(path, value, shown)
    if isinstance(value, str):
        _check_string(v, schema, value, path, name)
    elif actual in ("integer", "number"):
        _check_number(v, schema, value, path, name)
    elif isinstance(value, list):
        _check_array(v, schema, value, path, name)
    elif isinstance(value, dict):
        _check_object(v, schema, value, path, name)
    _check_combinators(v, schema, value, path, name)


def _check_string(v: Errors, schema: Obj, value: str, path: str, name: str) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        v.too_long(path, f"may not be longer than {schema['maxLength']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        v.invalid(path, value, f"{name} in body should be at least {schema['minLength']} chars long")
    pattern = schema.get("pattern")
    if pattern:
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True  # a pattern Python cannot compile is the CRD author's problem, not the user's
        if not matched:
            v.invalid(path, value, f"{name} in body should match '{pattern}'")


def _check_number(v: Errors, schema: Obj, value: float, path: str, name: str) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= low:
            v.invalid(path, value, f"{name} in body should be greater than {_number(low)}")
        elif value < low:
            v.invalid(path, value, f"{name} in body should be greater than or equal to {_number(low)}")
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= high:
            v.invalid(path, value, f"{name} in body should be less than {_number(high)}")
        elif value > high:
            v.invalid(path, value, f"{name} in body should be less than or equal to {_number(high)}")
    step = schema.get("multipleOf")
    if step and not math.isclose(value / step, round(value / step)):
        v.invalid(path, value, f"{name} in body should be a multiple of {_number(step)}")


def _check_array(v: Errors, schema: Obj, value: list[Any], path: str, name: str) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        v.too_many(path, len(value), schema["maxItems"])
    if "minItems" in schema and len(value) < schema["minItems"]:
        v.invalid(path, value, f"{name} in body should have at least {schema['minItems']} items")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                v.duplicate(f"{path}[{i}]", item)
            seen.append(item)
    elif list_type == "map":
        keys = _list(schema.get("x-kubernetes-list-map-keys"))
        seen_keys: list[Any] = []
        for i, item in enumerate(value):
            key = {k: _dict(item).get(k) for k in keys}
            if key in seen_keys:
                v.duplicate(
                    f"{path}[{i}]",
                    GoValue(
                        "map[string]interface {}{" + ", ".join(f"{_q(k)}:{render(val)}" for k, val in key.items()) + "}"
                    ),
                )
            seen_keys.append(key)
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _check(v, items, item, f"{path}[{i}]")


def _check_object(v: Errors, schema: Obj, value: Obj, path: str, name: str) -> None:
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        v.too_many(path, len(value), schema["maxProperties"])
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        v.invalid(path, len(value), f"{name} in body should have at least {schema['minProperties']} properties")
    for key in _list(schema.get("required")):
        if key not in value:
            v.required(_join(path, key))
    props = _dict(schema.get("properties"))
    extra = schema.get("additionalProperties")
    embedded = schema.get("x-kubernetes-embedded-resource")
    for key, item in value.items():
        if embedded and key in _ROOT_KEYS and key not in props:
            continue
        sub = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
        if isinstance(sub, dict):
            _check(v, sub, item, _join(path, key))


def _check_combinators(v: Errors, schema: Obj, value: Any, path: str, name: str) -> None:
    def passes(sub: Any) -> bool:
        probe = Errors()
        if isinstance(sub, dict):
            _check(probe, sub, value, path)
        return not probe.causes

    for sub in _list(schema.get("allOf")):
        if isinstance(sub, dict):
            _check(v, sub, value, path)
    any_of = _list(schema.get("anyOf"))
    if any_of and not any(passes(s) for s in any_of):
        v.invalid(path, value, f"{name} in body must validate at least one schema (anyOf)")
    one_of = _list(schema.get("oneOf"))
    if one_of and sum(1 for s in one_of if passes(s)) != 1:
        v.invalid(path, value, f"{name} in body must validate one and only one schema (oneOf)")
    if isinstance(schema.get("not"), dict) and passes(schema["not"]):
        v.invalid(path, value, f"{name} in body must not validate the schema (not)")


def prune_unknown_fields(schema: Obj, obj: Obj) -> list[str]:
    """Drop fields a structural schema does not declare, as the apiserver does on decode.

    Returns the dropped paths (`spec.foo`, `spec.items[0].bar`) so the caller can answer
    fieldValidation=Strict with an error or Warn with warnings."""
    dropped: list[str] = []
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in [k for k in meta if k not in _OBJECT_META_FIELDS]:
            del meta[key]
            dropped.append(f"metadata.{key}")
    root_props = {k: s for k, s in _dict(schema.get("properties")).items() if k not in _ROOT_KEYS}
    rest = {k: val for k, val in obj.items() if k not in _ROOT_KEYS}
    _prune({**schema, "properties": root_props}, rest, "", dropped, root=True)
    for key in [k for k in obj if k not in _ROOT_KEYS and k not in rest]:
        del obj[key]
    return sorted(dropped)


def _prune(schema: Obj, value: Any, path: str, dropped: list[str], root: bool = False) -> None:
    if isinstance(value, dict):
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        props = _dict(schema.get("properties"))
        extra = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource") and not root
        for key in list(value):
            if embedded and key in _ROOT_KEYS and key not in props:
                continue
            if key in props and isinstance(props[key], dict):
                _prune(props[key], value[key], _join(path, key), dropped)
            elif isinstance(extra, dict):
                _prune(extra, value[key], _join(path, key), dropped)
            elif not preserve and extra is not True:
                del value[key]
                dropped.append(_join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune(schema["items"], item, f"{path}[{i}]", dropped)
