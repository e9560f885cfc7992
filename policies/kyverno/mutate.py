"""Kyverno mutation: `patchStrategicMerge` with anchors and `patchesJson6902`.

A strategic-merge patch is first resolved against the resource: conditional anchors
`(key)` keep a (list element's) patch only where the resource matches, global anchors
`<(key)` drop the whole patch when nothing matches, and `+(key)` adds a field only when
it is absent. The resolved patch is then merged the way Kubernetes' strategic merge
does: objects recursively, lists of named things (containers, volumes, env, ...) by
their merge key, other lists replaced, `null` deleting a field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonpatch

from policies.kyverno.pattern import Node, compile_node, parse_anchor

# The merge key of each well-known list field, by the field's name.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "readinessGates": "conditionType",
    "resourceClaims": "name",
    "conditions": "type",
}


class GlobalSkip(Exception):
    """A global anchor did not match: the rule does not apply to this resource."""


class _CondFail(Exception):
    """A conditional anchor did not match: this (element's) patch does not apply."""


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port" if "port" in sample else None
    return _MERGE_KEYS.get(field)


def _has_anchor(patch: Any) -> bool:
    if isinstance(patch, dict):
        return any(parse_anchor(k)[0] in ("cond", "global") or _has_anchor(v) for k, v in patch.items())
    if isinstance(patch, list):
        return any(_has_anchor(v) for v in patch)
    return False


def _has_global(patch: Any) -> bool:
    if isinstance(patch, dict):
        return any(parse_anchor(k)[0] == "global" or _has_global(v) for k, v in patch.items())
    if isinstance(patch, list):
        return any(_has_global(v) for v in patch)
    return False


def _has_add(patch: Any) -> bool:
    if isinstance(patch, dict):
        return any(parse_anchor(k)[0] == "add" or _has_add(v) for k, v in patch.items())
    if isinstance(patch, list):
        return any(_has_add(v) for v in patch)
    return False


class _MapPatch:
    """A mapping of a patch with its anchors parsed and conditions compiled once."""

    __slots__ = ("conditions", "entries")

    def __init__(self, patch: dict[str, Any]) -> None:
        self.conditions: list[tuple[str, str, Node]] = []
        # (how, key, value, nested): how is "add", "anchored" (nested resolves against the
        # resource), "fixed" (value is final) or "plain" (`+(key)` below: resolved per resource)
        self.entries: list[tuple[str, str, Any, Any]] = []
        for raw_key, value in patch.items():
            anchor, key = parse_anchor(raw_key)
            if anchor in ("cond", "global"):
                self.conditions.append((anchor, key, compile_node(value)))
            elif anchor == "add":
                self.entries.append(("add", key, _strip(value), None))
            elif isinstance(value, dict | list) and _has_anchor(value):
                nested = _MapPatch(value) if isinstance(value, dict) else _ListPatch(value)
                self.entries.append(("anchored", key, value, nested))
            elif _has_add(value):
                self.entries.append(("plain", key, _strip_add(value), None))
            else:
                self.entries.append(("fixed", key, _strip_add(value)(None), None))

    def resolve(self, resource: Any, _field: str = "") -> dict[str, Any]:
        """The patch for this resource; raises GlobalSkip / _CondFail when anchors say no.
        (`_field` keeps the signature of `_ListPatch.resolve`: a mapping has no merge key.)"""
        if not isinstance(resource, dict):
            resource = None
        for anchor, key, node in self.conditions:
            if resource is None or key not in resource or node.fast(resource[key]):
                if anchor == "global":
                    raise GlobalSkip(f"global anchor <({key}) did not match")
                raise _CondFail(key)
        out: dict[str, Any] = {}
        for how, key, value, nested in self.entries:
            if how == "fixed":
                out[key] = value
            elif how == "add":
                if resource is None or key not in resource:
                    out[key] = value
            elif how == "plain":
                out[key] = value(resource.get(key) if resource is not None else None)
            else:
                resolved = nested.resolve(resource.get(key) if resource is not None else None, key)
                if resolved == [] and isinstance(value, list):
                    continue
                out[key] = resolved
        return out


class _ListPatch:
    """A list of a patch: elements with anchors apply to each resource element they match."""

    __slots__ = ("raw", "elements")

    def __init__(self, patch: list[Any]) -> None:
        self.raw = patch
        self.elements: list[tuple[Any, _MapPatch | None, bool]] = []
        for elem in patch:
            if isinstance(elem, dict) and _has_anchor(elem):
                self.elements.append((elem, _MapPatch(elem), _has_global(elem)))
            else:
                self.elements.append((elem, None, False))

    def resolve(self, resource: Any, field: str) -> list[Any]:
        items = resource if isinstance(resource, list) else []
        key = _merge_key(field, items or self.raw)
        out: list[Any] = []
        for elem, compiled, has_global in self.elements:
            if compiled is None:
                out.append(elem)
                continue
            matched = 0
            for item in items:
                try:
                    resolved = compiled.resolve(item)
                except (_CondFail, GlobalSkip):
                    continue
                matched += 1
                if key and isinstance(item, dict) and key in item:
                    resolved = {key: item[key], **resolved}
                    if len(resolved) > 1:
                        out.append(resolved)
            if matched == 0 and has_global:
                raise GlobalSkip(f"no element of {field or 'the list'} matches the global anchor")
        return out


class Patch:
    """A `patchStrategicMerge` compiled once; `apply` resolves its anchors against a
    resource and merges (raises GlobalSkip when the patch does not apply)."""

    __slots__ = ("root",)

    def __init__(self, patch: Any) -> None:
        self.root: Any = (
            _MapPatch(patch) if isinstance(patch, dict) else _ListPatch(patch) if isinstance(patch, list) else patch
        )

    def resolve(self, resource: Any) -> Any:
        root = self.root
        try:
            if isinstance(root, _MapPatch):
                return root.resolve(resource)
            if isinstance(root, _ListPatch):
                return root.resolve(resource, "")
        except _CondFail:
            raise GlobalSkip("conditional anchor did not match") from None
        return root

    def apply(self, resource: Any) -> Any:
        return merge(resource, self.resolve(resource))


def _strip(value: Any) -> Any:
    """A value added wholesale: anchors inside it lose their parentheses."""
    if isinstance(value, dict):
        return {parse_anchor(k)[1]: _strip(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _strip_add(value: Any) -> Callable[[Any], Any]:
    """Resolving `+(key)` below a plain key, compiled: given what the resource has there,
    the value keeping only the added fields the resource lacks (anchors stripped)."""
    if isinstance(value, dict):
        parts: list[tuple[str, bool, Any]] = []
        for raw_key, sub in value.items():
            anchor, key = parse_anchor(raw_key)
            parts.append((key, True, _strip(sub)) if anchor == "add" else (key, False, _strip_add(sub)))

        def resolve(current: Any) -> dict[str, Any]:
            have = current if isinstance(current, dict) else None
            out: dict[str, Any] = {}
            for key, add, part in parts:
                if not add:
                    out[key] = part(have.get(key) if have is not None else None)
                elif have is None or key not in have:
                    out[key] = part
            return out

        return resolve
    fixed = [_strip(v) for v in value] if isinstance(value, list) else value
    return lambda _current: fixed


def merge(resource: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge of a resolved patch into a resource (returns a new value; the
    resource is not modified, untouched sub-trees are shared)."""
    if isinstance(patch, dict) and isinstance(resource, dict):
        out = dict(resource)
        for key, value in patch.items():
            if key == "$patch":
                continue
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, key)
            else:
                out[key] = _clean(value)
        return out
    if isinstance(patch, list) and isinstance(resource, list):
        key = _merge_key(field, resource + patch)
        if key is None or not all(isinstance(i, dict) for i in resource + patch):
            return _clean(patch)
        merged = list(resource)
        for elem in patch:
            idx = next((i for i, r in enumerate(merged) if r.get(key) == elem.get(key)), None)
            if elem.get("$patch") == "delete":
                if idx is not None:
                    merged.pop(idx)
                continue
            if idx is None:
                merged.append(_clean(elem))
            else:
                merged[idx] = merge(merged[idx], elem, field)
        return merged
    return _clean(patch)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k != "$patch" and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def strategic_merge(resource: Any, patch: Any) -> Any:
    """Resolve anchors then merge (a patch used once); raises GlobalSkip when it does not apply."""
    return Patch(patch).apply(resource)


def json6902(resource: Any, operations: list[Any]) -> Any:
    """Apply an RFC 6902 patch (the resource is copied, not modified)."""
    return jsonpatch.apply_patch(copy_json(resource), operations, in_place=True)


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists, scalars): several times faster than
    `copy.deepcopy`, which admission pays for every mutated object."""
    if isinstance(value, dict):
        return {k: copy_json(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) if isinstance(v, dict | list) else v for v in value]
    return value
