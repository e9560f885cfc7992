"""PATCH bodies applied the way the Kubernetes API server applies them.

Three patch types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic
merge patch, the one kubectl sends for built-in kinds (`kubectl apply` client-side,
`kubectl patch`, `label`, `annotate`, `edit`). Strategic merge patch needs the list
semantics of each field, which `controllers.schema` provides. Server-side apply lives
in `controllers.apply`.

All functions are pure: they take decoded JSON and return a new object, never touching
their arguments.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from controllers.errors import BadRequest, Invalid
from controllers.kinds import ResourceType
from controllers.schema import TypeNode

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"

# What the API server says when a JSON patch cannot be applied (422, details in causes).
_REJECTED = "the server rejected our request due to an error in our request"

T = TypeVar("T")


def clone(value: T) -> T:
    """A deep copy of JSON-like data; orjson's round trip is far faster than deepcopy."""
    try:
        copied: T = orjson.loads(orjson.dumps(value))
    except TypeError:
        return copy.deepcopy(value)
    return copied


def patch_types(custom_resource: bool) -> tuple[str, ...]:
    """Media types PATCH accepts, in the API server's order; custom resources have no
    Go struct to carry patch strategies, so they do not take strategic merge patch."""
    if custom_resource:
        return (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)
    return (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)


def supports_patch_type(rt: ResourceType, patch_type: str) -> bool:
    """Whether PATCH of this media type is accepted for the resource type (a 415 if not)."""
    return patch_type in patch_types(rt.crd)


def json_patch(obj: Mapping[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902. A body that is not a list of operations is a 400; an operation that
    cannot apply (failed test, missing path) is a 422, the message in the causes.

    Copy on write: the containers along each patched path are copied, values the patch
    brings are copied, and the rest of the result is shared with `obj` (a status write
    of a large object copies the status only). `obj` is never changed."""
    if not isinstance(ops, list) or not all(isinstance(op, Mapping) for op in ops):
        raise BadRequest("json patch must be a JSON array of operation objects")
    result = _JsonPatch(dict(obj)).run(ops)
    if not isinstance(result, dict):
        raise BadRequest("the patched document is not a JSON object")
    return result


class _PatchError(Exception):
    """An operation that cannot apply: a 422 whose cause is the message."""


class _JsonPatch:
    """One RFC 6902 patch applied to a document, copying containers before changing them."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc: Any = doc
        self._own: set[int] = {id(doc)}  # containers this patch made, free to change

    def run(self, ops: list[Mapping[str, Any]]) -> Any:
        for n, op in enumerate(ops):
            try:
                self._apply(op)
            except _PatchError as err:
                raise Invalid(_REJECTED, causes=[{"message": f"operation {n} ({_describe(op)}): {err}"}]) from None
        return self.doc

    def _apply(self, op: Mapping[str, Any]) -> None:
        kind = op.get("op")
        path = _pointer(op.get("path"), "path")
        if kind == "test":
            if "value" not in op:
                raise _PatchError("the operation has no value")
            if not _json_equal(self._get(path), op["value"]):
                raise _PatchError(f"the value at {op.get('path')} is not the tested value")
        elif kind in ("add", "replace"):
            if "value" not in op:
                raise _PatchError("the operation has no value")
            if kind == "replace":
                self._get(path)  # must exist
            self._put(path, clone(op["value"]), replace=kind == "replace")
        elif kind == "remove":
            self._remove(path)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"), "from")
            if kind == "copy":
                self._put(path, clone(self._get(source)), replace=False)
            elif source == path:
                self._get(source)  # must exist
            else:
                if path[: len(source)] == source:
                    raise _PatchError("a value cannot be moved into one of its own children")
                self._put(path, self._remove(source), replace=False)
        else:
            raise _PatchError(f"unknown operation {kind!r}")

    def _get(self, path: list[str]) -> Any:
        value = self.doc
        for n, step in enumerate(path):
            value = _member(value, step, path[: n + 1])
        return value

    def _parent(self, path: list[str]) -> Any:
        """The container holding the last element of `path`, made ours to change."""
        if id(self.doc) not in self._own and isinstance(self.doc, (dict, list)):
            self.doc = dict(self.doc) if isinstance(self.doc, dict) else list(self.doc)
            self._own.add(id(self.doc))
        container = self.doc
        for n, step in enumerate(path[:-1]):
            child = _member(container, step, path[: n + 1])
            if id(child) not in self._own:
                if not isinstance(child, (dict, list)):
                    raise _PatchError(f"{_format(path[: n + 1])} is not an object or an array")
                child = dict(child) if isinstance(child, dict) else list(child)
                self._own.add(id(child))
                container[_index(container, step, path[: n + 1]) if isinstance(container, list) else step] = child
            container = child
        return container

    def _put(self, path: list[str], value: Any, replace: bool) -> None:
        if not path:
            self.doc = value  # ours only once copied: a move can bring a shared value
            return
        parent, step = self._parent(path), path[-1]
        if isinstance(parent, dict):
            parent[step] = value
        elif isinstance(parent, list):
            if replace:
                parent[_index(parent, step, path)] = value
            elif step == "-":
                parent.append(value)
            else:
                at = _index(parent, step, path, end=True)
                parent.insert(at, value)
        else:
            raise _PatchError(f"{_format(path[:-1])} is not an object or an array")

    def _remove(self, path: list[str]) -> Any:
        if not path:
            raise _PatchError("the whole document cannot be removed")
        parent, step = self._parent(path), path[-1]
        if isinstance(parent, dict):
            if step not in parent:
                raise _PatchError(f"{_format(path)} does not exist")
            return parent.pop(step)
        if isinstance(parent, list):
            return parent.pop(_index(parent, step, path))
        raise _PatchError(f"{_format(path[:-1])} is not an object or an array")


def _pointer(value: Any, member: str) -> list[str]:
    """A JSON pointer (RFC 6901) as its unescaped tokens."""
    if not isinstance(value, str):
        raise _PatchError(f"the operation has no {member!r} pointer")
    if not value:
        return []
    if not value.startswith("/"):
        raise _PatchError(f"{member} {value!r} must start with /")
    return [step.replace("~1", "/").replace("~0", "~") for step in value[1:].split("/")]


def _member(value: Any, step: str, path: list[str]) -> Any:
    if isinstance(value, dict):
        if step not in value:
            raise _PatchError(f"{_format(path)} does not exist")
        return value[step]
    if isinstance(value, list):
        return value[_index(value, step, path)]
    raise _PatchError(f"{_format(path[:-1])} is not an object or an array")


def _index(items: list[Any], step: str, path: list[str], end: bool = False) -> int:
    """An array index: digits without leading zeros, inside the array (or its end)."""
    if not step.isdigit() or not step.isascii() or (step != "0" and step.startswith("0")):
        raise _PatchError(f"{_format(path)}: {step!r} is not an array index")
    at = int(step)
    if at > len(items) or (at == len(items) and not end):
        raise _PatchError(f"{_format(path)}: index {at} is outside the array of {len(items)}")
    return at


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values (RFC 6902 test): numbers by value, but `true` is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _format(path: list[str]) -> str:
    return "/" + "/".join(step.replace("~", "~0").replace("/", "~1") for step in path)


def _describe(op: Mapping[str, Any]) -> str:
    return f"{op.get('op')} {op.get('path')}"


def merge_patch(obj: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        raise BadRequest("invalid JSON document: a merge patch must be a JSON object")
    return _merge_rfc7386(clone(dict(obj)), patch)


def _merge_rfc7386(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            current = target.get(key)
            target[key] = _merge_rfc7386(current if isinstance(current, dict) else {}, value)
        else:
            target[key] = clone(value)
    return target


def strategic_merge_patch(obj: Mapping[str, Any], patch: Any, node: TypeNode | None) -> dict[str, Any]:
    """Kubernetes strategic merge patch.

    Lists whose field declares `patchStrategy: merge` merge item by item: by merge key
    for lists of objects, by value for lists of scalars (finalizers); other lists are
    replaced. Directives: `$patch: replace|delete|merge` in maps and list items,
    `$retainKeys`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`; null
    deletes a key. Fields without type information merge like a JSON merge patch.
    Item order follows the API server: `$setElementOrder` first, then the patch's own
    order, then the live order, server-only items keeping their place where they can.
    """
    if not isinstance(patch, Mapping):
        raise BadRequest("invalid JSON document")
    return _merge_map(clone(dict(obj)), patch, node)


def _child(node: TypeNode | None, name: str) -> TypeNode | None:
    return node.field(name) if node is not None else None


def _merge_map(orig: dict[str, Any], patch: Mapping[str, Any], node: TypeNode | None) -> dict[str, Any]:
    """Merge `patch` into `orig`, which the caller owns and may be mutated."""
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return _merge_map({}, {k: v for k, v in patch.items() if k != _DIRECTIVE}, node)
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise BadRequest(f"unknown patch type: {directive} in map: {dict(patch)}")
    if _RETAIN_KEYS in patch:
        orig = _retain_keys(orig, patch)

    orders: dict[str, Any] = {}
    deletions: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN_KEYS):
            continue
        if key.startswith(_SET_ORDER):
            orders[key[len(_SET_ORDER) :]] = value
        elif key.startswith(_DELETE_PRIMITIVES):
            deletions[key[len(_DELETE_PRIMITIVES) :]] = value
        else:
            rest[key] = value

    for name, order in orders.items():
        before = orig.get(name)
        child = _child(node, name)
        value = rest.pop(name, None)
        if value is not None:
            merged = _merge_value(before, value, child)
        elif name in patch:
            orig.pop(name, None)
            continue
        elif isinstance(before, list):
            merged = before
        else:
            continue
        if isinstance(merged, list):
            patch_list = value if isinstance(value, list) else []
            merged = _set_element_order(merged, order, patch_list, before, child)
        orig[name] = merged

    for name, values in deletions.items():
        if not isinstance(values, list):
            raise BadRequest("invalid patch format of primitive list")
        current = orig.get(name)
        if isinstance(current, list):
            drop = {_canon(v) for v in values}
            orig[name] = [item for item in current if _canon(item) not in drop]

    for key, value in rest.items():
        if value is None:
            orig.pop(key, None)
        else:
            orig[key] = _merge_value(orig.get(key), value, _child(node, key))
    return orig


def _merge_value(current: Any, value: Any, node: TypeNode | None) -> Any:
    if isinstance(value, Mapping):
        return _merge_map(current if isinstance(current, dict) else {}, value, node)
    if isinstance(value, list):
        return _merge_list(current if isinstance(current, list) else [], value, node)
    return value


def _retain_keys(orig: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the keys `$retainKeys` names; every key the patch sets must be named."""
    retain = patch[_RETAIN_KEYS]
    if not isinstance(retain, list):
        raise BadRequest("invalid patch format of retainKeys")
    allowed = set(retain)
    for key, value in patch.items():
        if value is not None and not key.startswith("$") and key not in allowed:
            raise BadRequest("invalid patch format of retainKeys")
    return {k: v for k, v in orig.items() if k in allowed}


def _merge_list(orig: list[Any], patch: list[Any], node: TypeNode | None) -> list[Any]:
    info = node.list_info if node is not None else None
    items = node.items() if node is not None else None
    if info is None or not info.smp_merge:
        return [_merge_value(None, item, items) for item in patch]
    if info.merge_key:
        return _merge_keyed_list(orig, patch, info.merge_key, items)
    merged: list[Any] = []
    seen: set[str] = set()
    for item in orig + patch:
        ident = _canon(item)
        if ident not in seen:
            seen.add(ident)
            merged.append(clone(item))
    return _normalize_order(merged, [_canon(x) for x in patch], [_canon(x) for x in orig], _canon)


def _merge_keyed_list(orig: list[Any], patch: list[Any], key: str, items: TypeNode | None) -> list[Any]:
    """Merge a list of objects by merge key, honouring `$patch` items."""
    base = list(orig)
    kept: list[Mapping[str, Any]] = []
    replace = False
    for item in patch:
        if not isinstance(item, Mapping):
            raise BadRequest(f"invalid patch: list items must be objects with merge key {key!r}")
        directive = item.get(_DIRECTIVE)
        if directive == "delete":
            gone = _canon(_require_key(item, key))
            base = [x for x in base if _key_of(x, key) != gone]
        elif directive == "replace":
            replace = True
        elif directive in (None, "merge"):
            kept.append(item)
        else:
            raise BadRequest(f"unknown patch type: {directive} in map: {dict(item)}")
    if replace:
        return [_merge_map({}, item, items) for item in kept]

    server_order = [_key_of(x, key) for x in base]
    merged = list(base)
    position: dict[str, int] = {}
    for i, ident in enumerate(server_order):
        position.setdefault(ident, i)
    patch_order = []
    for item in kept:
        ident = _canon(_require_key(item, key))
        patch_order.append(ident)
        at = position.get(ident)
        if at is None:
            position[ident] = len(merged)
            merged.append(_merge_map({}, item, items))
        else:
            current = merged[at]
            merged[at] = _merge_map(current if isinstance(current, dict) else {}, item, items)
    return _normalize_order(merged, patch_order, server_order, lambda x: _key_of(x, key))


def _set_element_order(
    merged: list[Any], order: Any, patch_list: list[Any], before: Any, node: TypeNode | None
) -> list[Any]:
    """Reorder a merged list by `$setElementOrder/<field>`, after checking the patch list
    agrees with it (its items appear there, in the same relative order)."""
    if not isinstance(order, list):
        raise BadRequest("invalid patch format of setElementOrder list")
    info = node.list_info if node is not None else None
    key = info.merge_key if info is not None else ""

    def ident(item: Any) -> str:
        return _key_of(item, key) if key else _canon(item)

    order_ids = [ident(x) for x in order]
    rank = {i: n for n, i in reversed(list(enumerate(order_ids)))}
    last = -1
    for item in patch_list:
        if isinstance(item, Mapping) and _DIRECTIVE in item:
            continue
        at = rank.get(ident(item))
        if at is None or at < last:
            raise BadRequest(
                f"The order in patch list:\n{patch_list}\n doesn't match $setElementOrder list:\n{order}\n"
            )
        last = at
    server = [ident(x) for x in before] if isinstance(before, list) else []
    return _normalize_order(merged, order_ids, server, ident)


def _normalize_order(merged: list[Any], wanted: list[str], server: list[str], ident: Callable[[Any], str]) -> list[Any]:
    """Items named in `wanted` take that order; the others keep their live order and are
    slotted in before the first wanted item that comes after them in the live list."""
    rank: dict[str, int] = {}
    for n, name in enumerate(wanted):
        rank.setdefault(name, n)
    live: dict[str, int] = {}
    for n, name in enumerate(server):
        live.setdefault(name, n)
    chosen = sorted((x for x in merged if ident(x) in rank), key=lambda x: rank[ident(x)])
    others = sorted((x for x in merged if ident(x) not in rank), key=lambda x: live.get(ident(x), len(live)))
    out: list[Any] = []
    i = j = 0
    while i < len(others) or j < len(chosen):
        if j >= len(chosen):
            out.append(others[i])
            i += 1
        elif i >= len(others):
            out.append(chosen[j])
            j += 1
        else:
            left, right = live.get(ident(others[i])), live.get(ident(chosen[j]))
            if left is not None and right is not None and left < right:
                out.append(others[i])
                i += 1
            else:
                out.append(chosen[j])
                j += 1
    return out


def _require_key(item: Mapping[str, Any], key: str) -> Any:
    if key not in item:
        raise BadRequest(f"map: {dict(item)} does not contain declared merge key: {key}")
    return item[key]


def _key_of(item: Any, key: str) -> str:
    return _canon(item.get(key)) if isinstance(item, Mapping) else _canon(item)


def _canon(value: Any) -> str:
    """A hashable identity for a JSON value: 80 and 80.0 are one key, true and 1 are not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(value)
