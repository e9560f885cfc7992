"""Desired versus live, one resource at a time: Argo CD's server-side diff.

The engine predicts what a resource would look like after our sync with a server-side
apply dry run (field manager "gitops", forced) and hands the prediction to `compare`
with the live object. The server has already done the hard part: defaults filled in,
quantities as it stores them, fields we applied before and dropped now removed, fields
other managers own kept. So a live object that already matches the manifests compares
equal to its prediction, and there is no false OutOfSync from server defaults.

When there is no prediction (the dry run failed, e.g. a CRD is not installed yet),
`compare` falls back to a client-side check that the desired fields are a subset of the
live ones, with the normalizations a server would have applied (quantities, integer
ports, empty versus absent). That path cannot see fields removed from the manifests.

Both sides are normalized the same way before they are compared and shown: server
metadata, `status` and bookkeeping annotations are dropped, `ignoreDifferences` rules
are applied, and Secret values are masked in everything a diff hands out.
"""

from __future__ import annotations

import base64
import difflib
import fnmatch
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import jq
import jsonpatch
import yaml

from controllers.patch import clone
from controllers.quantity import QuantityError, parse_quantity
from controllers.schema import TypeNode, type_for
from gitops.resources import TRACKING, ResourceKey

Obj = dict[str, Any]
Path = tuple[str | int, ...]

SYNCED, OUT_OF_SYNC, MISSING, EXTRANEOUS = "Synced", "OutOfSync", "Missing", "Extraneous"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# Metadata the server writes; never part of what a manifest declares.
_SERVER_META = frozenset({"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"})
# Annotations that are bookkeeping, not configuration (the last-applied one would also
# carry Secret values in clear).
_BOOKKEEPING_ANNOTATIONS = frozenset({TRACKING, "deployment.kubernetes.io/revision", LAST_APPLIED})
_SECRET_FIELDS = ("data", "stringData")
_MASK_LENGTH = 8
_YamlDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: ~10x faster

# Client-side fallback: where a string is a quantity, and where a quoted number is the
# same port number (int32 fields; int-or-string ones read a string as a port *name*).
_QUANTITY_MAPS = frozenset(
    {"requests", "limits", "capacity", "allocatable", "hard", "overhead", "default", "defaultRequest", "max", "min"}
)
_INT_PORT_FIELDS = frozenset({"containerPort", "hostPort", "nodePort"})
_KEY_DEFAULTS = {"protocol": "TCP"}  # list-map keys the server defaults (container and service ports)


class ResourceDiff:
    """The comparison of one resource. `status` is cheap; the normalized objects, the
    text diff and the JSON patch are built on first use, so a pass where everything is
    Synced costs one equality test per resource.

    `normalized_live` / `normalized_target` are independent copies in sorted key order
    with Secret values masked (one mask per distinct value, so a change shows as a change
    but no value leaks); `diff` is a unified YAML diff `--- live` / `+++ desired`, and
    `patch` the RFC 6902 operations from normalized live to normalized target."""

    def __init__(self, key: ResourceKey, status: str, live: Obj | None, target: Obj | None) -> None:
        self.key = key
        self.status = status
        self._live = live
        self._target = target

    def __repr__(self) -> str:
        return f"ResourceDiff({self.key}, {self.status})"

    @cached_property
    def _display(self) -> tuple[Obj | None, Obj | None]:
        masks: dict[str, str] = {}
        return mask_secret(_sorted(self._live), masks), mask_secret(_sorted(self._target), masks)

    @property
    def normalized_live(self) -> Obj | None:
        return self._display[0]

    @property
    def normalized_target(self) -> Obj | None:
        return self._display[1]

    @cached_property
    def diff(self) -> str:
        if self._live == self._target:
            return ""
        live, target = self._display
        lines = difflib.unified_diff(_yaml_lines(live), _yaml_lines(target), "live", "desired")
        return "".join(lines)

    @cached_property
    def patch(self) -> list[Obj]:
        if self._live == self._target:
            return []
        live, target = self._display
        ops: list[Obj] = jsonpatch.make_patch(live or {}, target or {}).patch
        return ops


def compare(
    desired: Obj | None,
    predicted: Obj | None,
    live: Obj | None,
    ignore: Iterable[Mapping[str, Any]] = (),
) -> ResourceDiff:
    """Compare one resource: `desired` from the manifests, `predicted` by the server-side
    apply dry run (None when it could not run), `live` from the cluster.

    Status is Missing (desired, not live), Extraneous (live, not desired: the caller only
    asks for objects the app tracks), else Synced or OutOfSync. `ignore` is the app's
    `ignoreDifferences`; rules that do not match this resource are skipped. Raises
    ValueError for a jq expression that does not compile."""
    source = desired if desired is not None else live
    if source is None:
        raise ValueError("compare needs a desired or a live object")
    key = ResourceKey.of(source)
    live_n = normalize(live) if live is not None else None
    if desired is None:
        target_n = None
    elif predicted is not None:
        target_n = normalize(predicted)
    else:
        target_n = _client_side_target(desired, live_n)
    if live_n is not None and target_n is not None and live_n == target_n:
        return ResourceDiff(key, SYNCED, live_n, target_n)
    rules = [rule for rule in ignore if _rule_matches(rule, key)]
    if rules:
        owners = _managed_fields(live)
        live_n = _without_ignored(live_n, rules, owners)
        target_n = _without_ignored(target_n, rules, owners)
    if target_n is None:
        status = EXTRANEOUS
    elif live_n is None:
        status = MISSING
    else:
        status = SYNCED if live_n == target_n else OUT_OF_SYNC
    return ResourceDiff(key, status, live_n, target_n)


def normalize(obj: Obj) -> Obj:
    """`obj` without what the server writes: server metadata, `status` (never compared),
    and the bookkeeping annotations (tracking, Deployment revision, last-applied).

    A shallow copy: nested values are shared with `obj`, so treat the result as read-only."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        new_meta = {k: v for k, v in meta.items() if k not in _SERVER_META}
        notes = meta.get("annotations")
        if isinstance(notes, dict) and not _BOOKKEEPING_ANNOTATIONS.isdisjoint(notes):
            kept = {k: v for k, v in notes.items() if k not in _BOOKKEEPING_ANNOTATIONS}
            if kept:
                new_meta["annotations"] = kept
            else:
                del new_meta["annotations"]
        out["metadata"] = new_meta
    return out


def mask_secret(obj: Obj | None, masks: dict[str, str] | None = None) -> Obj | None:
    """A copy of a Secret with every `data`/`stringData` value (and those inside a
    last-applied annotation) replaced by plus signs, as Argo CD shows them; objects of
    other kinds are returned as they are, so callers can pass anything they display.

    Pass one `masks` table for objects shown side by side: equal values get equal masks
    and different values different ones, so a diff still shows what changed."""
    if obj is None or obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
        return obj
    return _masked(obj, {} if masks is None else masks)


def _masked(secret: Obj, table: dict[str, str]) -> Obj:
    out = dict(secret)
    for field in _SECRET_FIELDS:
        values = secret.get(field)
        if isinstance(values, dict):
            out[field] = {k: _mask(str(v), table) for k, v in values.items()}
    meta = secret.get("metadata")
    notes = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(meta, dict) and isinstance(notes, dict) and LAST_APPLIED in notes:
        out["metadata"] = {
            **meta,
            "annotations": {**notes, LAST_APPLIED: _masked_last_applied(notes[LAST_APPLIED], table)},
        }
    return out


def _mask(value: str, table: dict[str, str]) -> str:
    if value not in table:
        table[value] = "+" * (_MASK_LENGTH + len(table))
    return table[value]


def _masked_last_applied(text: str, table: dict[str, str]) -> str:
    """The annotation is the Secret as last applied, values and all."""
    try:
        applied = json.loads(text)
    except ValueError:
        applied = None
    if not isinstance(applied, dict):
        return _mask(text, table)
    return json.dumps(_masked(applied, table), sort_keys=True)


# --------------------------------------------------------------------------- display


def _sorted(value: Any) -> Any:
    """A deep copy with map keys in sorted order, so output is stable."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _yaml_lines(obj: Obj | None) -> list[str]:
    if obj is None:
        return []
    text = yaml.dump(obj, Dumper=_YamlDumper, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text.splitlines(keepends=True)


# --------------------------------------------------------------------------- client-side fallback


def _client_side_target(desired: Obj, live: Obj | None) -> Obj:
    """What live would look like with the desired fields laid over it. Equal to live
    exactly when desired is a subset of live, up to the server's own normalizations."""
    target = normalize(_with_string_data_folded(desired))
    if live is None:
        return target
    node = type_for(str(desired.get("apiVersion", "")), str(desired.get("kind", "")))
    merged: Obj = _overlay(live, target, node, ())
    return merged


def _with_string_data_folded(obj: Obj) -> Obj:
    """A Secret's `stringData` as the server stores it: base64 in `data`."""
    string_data = obj.get("stringData")
    if obj.get("kind") != "Secret" or not isinstance(string_data, dict):
        return obj
    data = dict(obj.get("data") or {})
    data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
    out = {k: v for k, v in obj.items() if k != "stringData"}
    out["data"] = data
    return out


def _overlay(live: Any, desired: Any, node: TypeNode | None, path: Path) -> Any:
    """`desired` laid over `live`: maps merge (a desired map only constrains the keys it
    has), keyed lists merge by key, other lists item by item when their lengths agree,
    and a scalar the server would read the same as live's keeps live's spelling."""
    if isinstance(live, dict) and isinstance(desired, dict):
        out = dict(live)
        for key, value in desired.items():
            if _empty(value) and _empty(live.get(key)):
                continue
            child = node.field(key) if node is not None else None
            out[key] = _overlay(live.get(key), value, child, (*path, key))
        return out
    if isinstance(live, list) and isinstance(desired, list):
        return _overlay_list(live, desired, node, path)
    if live is not None and _same_scalar(live, desired, path):
        return live
    return desired


def _overlay_list(live: list[Any], desired: list[Any], node: TypeNode | None, path: Path) -> list[Any]:
    items = node.items() if node is not None else None
    info = node.list_info if node is not None else None
    if info is not None and info.list_type == "map" and info.map_keys:
        live_by_key = {_list_key(x, info.map_keys, path): x for x in live}
        wanted = [_list_key(x, info.map_keys, path) for x in desired]
        merged = {
            k: _overlay(live_by_key.get(k), x, items, (*path, i))
            for i, (k, x) in enumerate(zip(wanted, desired, strict=True))
        }
        # Items only live has belong to someone else, as server-side apply keeps them.
        return [merged.pop(k, x) for k, x in live_by_key.items()] + list(merged.values())
    if len(live) == len(desired):
        return [_overlay(a, b, items, (*path, i)) for i, (a, b) in enumerate(zip(live, desired, strict=True))]
    return desired


def _list_key(item: Any, keys: Sequence[str], path: Path) -> str:
    """The identity of a keyed list item, with the key fields as the server reads them."""
    if not isinstance(item, dict):
        return json.dumps(item, sort_keys=True)
    values = []
    for key in keys:
        value = item.get(key, _KEY_DEFAULTS.get(key))
        port = _as_int(value) if _is_int_port_field((*path, 0, key)) else None
        values.append(value if port is None else port)
    return json.dumps(values)


def _empty(value: Any) -> bool:
    """Absent, null, "", {} and [] all mean "not set" to the API server."""
    return value is None or value == "" or value == {} or value == []


def _same_scalar(live: Any, desired: Any, path: Path) -> bool:
    if type(live) is type(desired) and live == desired:
        return True
    if _is_quantity_field(path):
        try:
            return parse_quantity(live) == parse_quantity(desired)
        except QuantityError:
            pass
    elif _is_int_port_field(path) and _as_int(live) is not None:
        return _as_int(live) == _as_int(desired)
    return live == desired and isinstance(live, bool) == isinstance(desired, bool)


def _is_quantity_field(path: Path) -> bool:
    return (len(path) >= 2 and path[-2] in _QUANTITY_MAPS) or (bool(path) and path[-1] == "sizeLimit")


def _is_int_port_field(path: Path) -> bool:
    """int32 port fields, where "80" can only mean 80. In int-or-string fields
    (`targetPort`, probe ports, NetworkPolicy ports) a string names a port, so differs."""
    if not path:
        return False
    last = path[-1]
    if last in _INT_PORT_FIELDS:
        return True
    if last == "port" and len(path) >= 3 and path[-3] == "ports":
        return "ingress" not in path and "egress" not in path
    return len(path) >= 2 and (path[-2], last) in (("grpc", "port"), ("port", "number"))


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# --------------------------------------------------------------------------- ignoreDifferences


def _rule_matches(rule: Mapping[str, Any], key: ResourceKey) -> bool:
    """Argo CD's matching: group and kind (globs; an empty group is the core group),
    then name and namespace when the rule gives them."""
    if not fnmatch.fnmatchcase(key.kind, str(rule.get("kind") or "")):
        return False
    if not fnmatch.fnmatchcase(key.group, str(rule.get("group") or "")):
        return False
    name, namespace = rule.get("name"), rule.get("namespace")
    return (not name or name == key.name) and (not namespace or namespace == key.namespace)


def _without_ignored(obj: Obj | None, rules: list[Mapping[str, Any]], owners: Mapping[str, Any]) -> Obj | None:
    """A copy of `obj` without the fields the rules point at."""
    if obj is None:
        return None
    out: Obj = clone(obj)
    for rule in rules:
        for pointer in rule.get("jsonPointers") or ():
            _remove(out, _parse_pointer(pointer))
        for expression in rule.get("jqPathExpressions") or ():
            out = _jq_delete(out, expression)
        for manager in rule.get("managedFieldsManagers") or ():
            for path in owners.get(manager, ()):
                _remove_field_path(out, path)
    return out


def _parse_pointer(pointer: str) -> list[str]:
    """RFC 6901: `/spec/template/metadata/annotations/a~1b` -> its reference tokens."""
    if not pointer:
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"ignoreDifferences jsonPointer {pointer!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _remove(obj: Any, tokens: list[str]) -> None:
    """Remove the value at a JSON pointer if it is there; nothing to do otherwise."""
    if not tokens:
        return
    parent = obj
    for token in tokens[:-1]:
        parent = _step(parent, token)
        if parent is None:
            return
    last = tokens[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]


def _step(value: Any, token: str) -> Any:
    if isinstance(value, dict):
        return value.get(token)
    if isinstance(value, list) and token.isdigit() and int(token) < len(value):
        return value[int(token)]
    return None


@functools.lru_cache(maxsize=256)
def _jq_program(expression: str) -> Any:
    try:
        return jq.compile(f"del({expression})")
    except ValueError as e:
        raise ValueError(f"ignoreDifferences jqPathExpression {expression!r}: {e}") from None


def _jq_delete(obj: Obj, expression: str) -> Obj:
    """`del(expression)`; an expression that does not apply to this object (it walks
    through a field the object lacks) removes nothing, as a missing pointer does."""
    program = _jq_program(expression)
    try:
        result = program.input_value(obj).first()
    except (ValueError, StopIteration):
        return obj
    return result if isinstance(result, dict) else obj


# --------------------------------------------------------------------------- managedFields


def _managed_fields(live: Obj | None) -> dict[str, list[list[str]]]:
    """The leaf field paths each manager owns on `live`, decoded from FieldsV1."""
    owners: dict[str, list[list[str]]] = {}
    meta = (live or {}).get("metadata") or {}
    for entry in meta.get("managedFields") or ():
        if isinstance(entry, dict) and isinstance(entry.get("fieldsV1"), dict):
            paths = owners.setdefault(str(entry.get("manager", "")), [])
            _leaves(entry["fieldsV1"], [], paths)
    return owners


def _leaves(trie: Mapping[str, Any], prefix: list[str], out: list[list[str]]) -> None:
    """Paths of the FieldsV1 trie with no children. A `.` marks a member that also has
    children (a map or list item set as a whole); only its children are leaves."""
    children = [k for k in trie if k != "."]
    if not children:
        if prefix:
            out.append(prefix)
        return
    for element in children:
        sub = trie[element]
        _leaves(sub if isinstance(sub, Mapping) else {}, [*prefix, element], out)


def _remove_field_path(obj: Obj, path: list[str]) -> None:
    """Remove what a FieldsV1 path (`f:name`, `k:{"name":"web"}`, `v:"x"`) points at."""
    parent: Any = obj
    for element in path[:-1]:
        parent = _field_step(parent, element)
        if parent is None:
            return
    kind, _, body = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(body, None)
    elif kind in ("k", "v") and isinstance(parent, list):
        at = _find_item(parent, kind, body)
        if at is not None:
            del parent[at]


def _field_step(value: Any, element: str) -> Any:
    kind, _, body = element.partition(":")
    if kind == "f" and isinstance(value, dict):
        return value.get(body)
    if kind in ("k", "v") and isinstance(value, list):
        at = _find_item(value, kind, body)
        return value[at] if at is not None else None
    return None


def _find_item(items: list[Any], kind: str, body: str) -> int | None:
    try:
        wanted = json.loads(body)
    except ValueError:
        return None
    for i, item in enumerate(items):
        if kind == "v" and item == wanted:
            return i
        if kind == "k" and isinstance(wanted, dict) and _has_keys(item, wanted):
            return i
    return None


def _has_keys(item: Any, keys: Mapping[str, Any]) -> bool:
    return isinstance(item, dict) and all(item.get(k, _KEY_DEFAULTS.get(k)) == v for k, v in keys.items())
