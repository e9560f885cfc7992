"""Server-side apply and field ownership, with the Kubernetes API server's semantics.

Every write records who set which fields in `metadata.managedFields` (FieldsV1), so a
later apply can tell a field it is taking over from a field it merely shares:

- `server_side_apply` merges an applied configuration into the live object, removes
  what this manager applied before and applies no more (unless someone else owns it),
  and refuses, with a 409 naming fields and managers, to change a field another
  manager owns, unless forced, which takes ownership;
- `update_managed_fields` records an ordinary write (create, update, patch): the
  writer gains the fields it set or changed and other managers lose them, which is how
  an apply later notices that `kubectl scale` changed `.spec.replicas`.

Ownership granularity follows the schema (`controllers.schema`): list items of
`map`/`set` lists and keys of granular maps are owned one by one, atomic values whole.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from controllers.errors import BadRequest, Conflict
from controllers.patch import clone
from controllers.schema import ListInfo, TypeNode, type_for

Path = tuple[str, ...]
# How one position of an object is held: "leaf" (a value owned whole), "item" (an item of
# a map list), "map"/"list" (granular containers), "struct" (never owned itself).
_Entry = tuple[str, Any]
_Identity = tuple[str, str, str, str]

# Fields the API server never tracks: identity and server-populated metadata.
_UNTRACKED_META = frozenset(
    {
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    }
)
# Server-populated metadata an applied configuration cannot set.
_SERVER_META = ("uid", "resourceVersion", "creationTimestamp", "generation", "selfLink", "managedFields")
_BEFORE_FIRST_APPLY = "before-first-apply"


class _Manager:
    """One managedFields entry. An entry read from a stored object keeps its FieldsV1:
    it is decoded only when a write may touch what it owns, and written back as it was
    while its fields stay the same (most writes touch one or two managers)."""

    def __init__(
        self,
        manager: str,
        operation: str,
        api_version: str,
        subresource: str,
        time: str,
        fields: set[Path] | None = None,
        stored: Any = None,
    ) -> None:
        self.manager = manager
        self.operation = operation
        self.api_version = api_version
        self.subresource = subresource
        self.time = time
        self._stored = stored  # FieldsV1 as stored: the encoding of the fields as decoded
        self._decoded = -1  # how many fields it decoded to; fields only shrink after that
        self._fields = fields if fields is not None or stored is not None else set()

    @property
    def fields(self) -> set[Path]:
        if self._fields is None:
            self._fields = _decode_fields(self._stored, ())
            self._decoded = len(self._fields)
        return self._fields

    @fields.setter
    def fields(self, value: set[Path]) -> None:
        self._fields = value

    def may_own(self, paths: set[Path]) -> bool:
        """False when none of `paths` can be this manager's (without decoding it)."""
        if not paths:
            return False
        if self._fields is not None:
            return True
        return isinstance(self._stored, dict) and not {path[0] for path in paths}.isdisjoint(self._stored)

    def unchanged(self) -> bool:
        """Whether the fields are still those of the stored FieldsV1 (so it can be reused)."""
        return self._stored is not None and (self._fields is None or len(self._fields) == self._decoded)

    def keep_encoding_of(self, other: _Manager) -> None:
        """Reuse `other`'s stored FieldsV1, known to encode exactly these fields."""
        self._stored, self._decoded = other._stored, len(self.fields)

    def fields_v1(self) -> dict[str, Any]:
        if self.unchanged():
            return dict(self._stored)
        return _encode_fields(self.fields)

    def empty(self) -> bool:
        if self._fields is None:
            return not isinstance(self._stored, dict) or not any(key != "." for key in self._stored)
        return not self._fields

    @property
    def identity(self) -> _Identity:
        """Apply entries are one per manager; Update entries one per manager and version."""
        version = self.api_version if self.operation == "Update" else ""
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """The manager as conflict messages name it: `"kubectl" using apps/v1`."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


def server_side_apply(
    live: Mapping[str, Any] | None,
    applied: Mapping[str, Any],
    manager: str,
    force: bool,
    node: TypeNode | None,
    now: str,
    *,
    subresource: str = "",
    status_subresource: bool = True,
) -> dict[str, Any]:
    """Apply `applied` as `manager` onto `live` (None creates) and return the new object.

    `status_subresource` says the kind has a status subresource, so the main resource
    does not track `status` (the caller resets it, as the API server's strategies do);
    `subresource="status"` applies and tracks status only. Without `node`, built-in
    kinds are looked up from apiVersion/kind. Raises `Conflict` (409) when another
    manager owns a field this apply would change, unless `force`.
    """
    if not isinstance(applied, Mapping):
        raise BadRequest("the applied configuration must be a JSON object")
    if not manager:
        raise BadRequest("fieldManager is required for apply requests")
    meta = applied.get("metadata")
    if isinstance(meta, Mapping) and meta.get("managedFields"):
        raise BadRequest("metadata.managedFields must be nil")
    config = _applied_config(applied, subresource)
    scope = _Scope(subresource, status_subresource)
    version = str(config.get("apiVersion") or (live or {}).get("apiVersion") or "")
    if node is None:
        node = type_for(version, str(config.get("kind") or (live or {}).get("kind") or ""))

    managers = _decode_managers(live)
    if live is not None and not managers:
        # An object nobody tracked yet: its current fields belong to a stand-in manager,
        # so the first apply cannot silently overwrite them.
        live_paths = _paths(live, node, scope)
        if live_paths:
            stand_in = _Manager(_BEFORE_FIRST_APPLY, "Update", str(live.get("apiVersion", version)), "", now)
            stand_in.fields = _owned(live_paths)
            managers[stand_in.identity] = stand_in

    me = _Manager(manager, "Apply", version, subresource, now, _owned(_paths(config, node, scope)))
    previous = managers.get(me.identity)
    merged = _apply_merge(_without_managed_fields(live) if live is not None else {}, config, node)

    if previous is not None:
        dropped = previous.fields - me.fields
        for other in managers.values():
            if other.identity != me.identity and other.may_own(dropped):
                dropped -= other.fields
        for path in sorted(dropped, key=len):
            _remove(merged, path, node)

    if live is None:  # a create: nobody else owns anything, nothing to compare
        managers[me.identity] = me
        _store_managers(merged, managers)
        return merged
    added, modified, removed = _changes(live, merged, node, scope)
    changed = added | modified
    conflicts = {
        other.identity: other.fields & changed
        for other in managers.values()
        if other.identity != me.identity and other.may_own(changed) and other.fields & changed
    }
    if conflicts and not force:
        raise _conflict_error([(managers[k], paths) for k, paths in conflicts.items()])
    for identity, lost in conflicts.items():
        managers[identity].fields -= lost
    for other in managers.values():
        if other.may_own(removed):
            other.fields -= removed
    if previous is not None and previous.fields == me.fields:
        if previous.unchanged():
            me.keep_encoding_of(previous)
        if not changed and not removed:
            me.time = previous.time
    managers[me.identity] = me
    _store_managers(merged, managers)
    return merged


def update_managed_fields(
    old: Mapping[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    operation: str = "Update",
    now: str = "",
    api_version: str = "",
    *,
    node: TypeNode | None = None,
    subresource: str = "",
    status_subresource: bool = True,
) -> dict[str, Any]:
    """Record an ordinary write of `new` over `old` (None for a create) by `manager`,
    writing `metadata.managedFields` into `new` in place and returning it.

    The writer gains the fields it added or changed, every other manager loses them, and
    removed fields leave everyone. Managed fields sent with `new` replace the recorded
    ones (how clients edit them); `[{}]` strips them altogether, as in Kubernetes.
    Without `node`, built-in kinds are looked up from apiVersion/kind.
    """
    meta = new.get("metadata")
    incoming = meta.pop("managedFields", None) if isinstance(meta, dict) else None
    if incoming == [{}]:
        return new
    managers = _decode_entries(incoming, stored=False) if incoming else _decode_managers(old)
    if node is None:
        node = type_for(str(new.get("apiVersion", "")), str(new.get("kind", "")))
    scope = _Scope(subresource, status_subresource)
    removed: set[Path] = set()
    if old is None:  # a create: every field is new
        changed = {p for p, (kind, _) in _paths(new, node, scope).items() if kind != "struct"}
    else:
        added, modified, removed = _changes(old, new, node, scope)
        changed = added | modified
    writer = _Manager(manager, operation, api_version or str(new.get("apiVersion", "")), subresource, now)
    previous = managers.get(writer.identity)
    # A writer that changes only fields it already owns keeps its FieldsV1 as it is.
    same_fields = (
        previous is not None
        and previous.unchanged()
        and changed <= previous.fields
        and previous.fields.isdisjoint(removed)
    )
    for other in managers.values():
        if other.may_own(changed | removed):
            other.fields -= changed | removed
    if changed:
        writer.fields = (previous.fields if previous is not None else set()) | changed
        if same_fields and previous is not None:
            writer.keep_encoding_of(previous)
        managers[writer.identity] = writer
    _store_managers(new, managers)
    return new


# ---------------------------------------------------------------------------------------
# Inputs


def _applied_config(applied: Mapping[str, Any], subresource: str) -> dict[str, Any]:
    """The applied object minus what the server owns: server metadata, and on the status
    subresource everything but status (the status strategy would reset it anyway)."""
    config = clone(dict(applied))
    meta = config.get("metadata")
    if isinstance(meta, dict):
        for key in _SERVER_META:
            meta.pop(key, None)
    if subresource == "status":
        keep = ("apiVersion", "kind", "status")
        trimmed = {k: v for k, v in config.items() if k in keep}
        if isinstance(meta, dict):
            trimmed["metadata"] = {k: meta[k] for k in ("name", "namespace") if k in meta}
        return trimmed
    return config


def _without_managed_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    copied = clone(dict(obj))
    meta = copied.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return copied


@dataclass(frozen=True)
class _Scope:
    """What an endpoint tracks: never identity and server metadata (`_UNTRACKED_META`
    under metadata), not `status` on the main resource of kinds with a status
    subresource, and nothing but `status` on that subresource."""

    subresource: str
    status_subresource: bool

    def tracks(self, key: str) -> bool:
        """Whether the top-level field `key` is tracked."""
        if key in ("apiVersion", "kind"):
            return False
        if self.subresource == "status":
            return key == "status"
        return not (self.status_subresource and key == "status")


def _skipped(key: str) -> frozenset[str]:
    """Keys of a top-level field that are never tracked."""
    return _UNTRACKED_META if key == "metadata" else _NOTHING


_NOTHING: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------------------
# Walking objects into field paths


def _paths(obj: Mapping[str, Any], node: TypeNode | None, scope: _Scope) -> dict[Path, _Entry]:
    """Every tracked position of `obj` as a FieldsV1 path, with how it is held."""
    out: dict[Path, _Entry] = {}
    for key, value in obj.items():
        if value is not None and scope.tracks(key):
            _walk(value, _child(node, key), ("f:" + key,), out, _skipped(key))
    return out


def _changes(
    old: Mapping[str, Any], new: Mapping[str, Any], node: TypeNode | None, scope: _Scope
) -> tuple[set[Path], set[Path], set[Path]]:
    """Added, modified and removed paths from `old` to `new`: what comparing the two
    full walks gives, but only the subtrees that differ are walked (an update usually
    touches a few fields of a large object)."""
    changes: tuple[set[Path], set[Path], set[Path]] = (set(), set(), set())
    for key in old.keys() | new.keys():
        if scope.tracks(key):
            _diff(old.get(key), new.get(key), _child(node, key), ("f:" + key,), _skipped(key), changes)
    return changes


def _diff(
    old: Any,
    new: Any,
    node: TypeNode | None,
    path: Path,
    skip: frozenset[str],
    changes: tuple[set[Path], set[Path], set[Path]],
) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and old and new and not (node is not None and node.atomic):
        # Both walk to the same container entry here: only the members can differ.
        for key in old.keys() | new.keys():
            if key not in skip:
                _diff(old.get(key), new.get(key), _child(node, key), path + ("f:" + key,), _NOTHING, changes)
        return
    before: dict[Path, _Entry] = {}
    after: dict[Path, _Entry] = {}
    if old is not None:
        _walk(old, node, path, before, skip)
    if new is None:
        changes[2].update(before)
        return
    _walk(new, node, path, after, skip)
    if old is None:
        changes[0].update(p for p, (kind, _) in after.items() if kind != "struct")
        return
    for found, more in zip(changes, _compare(before, after), strict=True):
        found |= more


def _owned(paths: dict[Path, _Entry]) -> set[Path]:
    """What an applier owns: values and list items, not the containers around them."""
    return {path for path, (kind, _) in paths.items() if kind in ("leaf", "item")}


def _child(node: TypeNode | None, name: str) -> TypeNode | None:
    return node.field(name) if node is not None else None


def _walk(
    value: Any, node: TypeNode | None, path: Path, out: dict[Path, _Entry], skip: frozenset[str] = _NOTHING
) -> None:
    """Walk `value` at `path` into `out`; `skip` names keys of this map that are not tracked."""
    if (node is not None and node.atomic) or value == {} or value == []:
        out[path] = ("leaf", value)
        return
    if isinstance(value, dict):
        out[path] = ("map" if node is not None and node.kind == "map" else "struct", None)
        for key, sub in value.items():
            if sub is not None and key not in skip:
                _walk(sub, _child(node, key), path + ("f:" + key,), out)
        return
    info = node.list_info if node is not None else None
    if isinstance(value, list) and info is not None and node is not None:
        if info.list_type == "set" and not any(isinstance(x, (dict, list)) for x in value):
            out[path] = ("list", None)
            for item in value:
                out[path + ("v:" + _json(item),)] = ("leaf", item)
            return
        keys = [_item_key(item, info) for item in value] if info.list_type == "map" else []
        if keys and all(keys):
            out[path] = ("list", None)
            items = node.items()
            for key, item in zip(keys, value, strict=True):
                item_path = path + (key,)
                if items is not None and items.atomic:
                    out[item_path] = ("leaf", item)
                    continue
                out[item_path] = ("item", None)
                for name, sub in item.items():
                    if sub is not None:
                        _walk(sub, _child(items, name), item_path + ("f:" + name,), out)
            return
    out[path] = ("leaf", value)


def _item_key(item: Any, info: ListInfo) -> str:
    """`k:{"name":"x"}` for a map-list item; "" when it carries none of the keys."""
    if not isinstance(item, dict):
        return ""
    defaults = dict(info.key_defaults)
    fields = {}
    for key in info.map_keys:
        if item.get(key) is not None:
            fields[key] = item[key]
        elif key in defaults:
            fields[key] = defaults[key]
    return "k:" + _json(fields) if fields else ""


def _json(value: Any) -> str:
    """Compact JSON with sorted keys, as FieldsV1 keys and values are written."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _compare(old: dict[Path, _Entry], new: dict[Path, _Entry]) -> tuple[set[Path], set[Path], set[Path]]:
    """Added, modified and removed paths between two walks of an object."""
    added = {path for path, (kind, _) in new.items() if path not in old and kind != "struct"}
    modified = {
        path
        for path, (kind, value) in new.items()
        if path in old and "leaf" in (kind, old[path][0]) and (kind, value) != old[path]
    }
    removed = set(old) - set(new)
    return added, modified, removed


# ---------------------------------------------------------------------------------------
# Merging and pruning


def _apply_merge(live: Any, config: Any, node: TypeNode | None) -> Any:
    """Merge an applied configuration into live: granular maps and `map`/`set` lists
    merge, everything else is replaced by the configuration."""
    atomic = node is not None and node.atomic
    if isinstance(config, dict) and isinstance(live, dict) and not atomic:
        for key, value in config.items():
            if value is None:
                live.pop(key, None)
            else:
                live[key] = _apply_merge(live.get(key), value, _child(node, key))
        return live
    info = node.list_info if node is not None else None
    if isinstance(config, list) and isinstance(live, list) and info is not None and node is not None:
        if info.list_type == "set":
            return _merge_items(live, config, [_json(x) for x in live], [_json(x) for x in config], None)
        if info.list_type == "map":
            live_keys = [_item_key(x, info) for x in live]
            config_keys = [_item_key(x, info) for x in config]
            if all(live_keys) and all(config_keys):
                return _merge_items(live, config, live_keys, config_keys, node.items())
    return config


def _merge_items(
    live: list[Any], config: list[Any], live_keys: list[str], config_keys: list[str], items: TypeNode | None
) -> list[Any]:
    """Keyed list merge: live-only items keep their place, applied items come in applied
    order, each merged with the live item of the same key."""
    live_by = dict(zip(live_keys, live, strict=True))
    wanted = set(config_keys)
    out: list[Any] = []
    done: set[str] = set()
    i = j = 0
    while i < len(live) or j < len(config):
        if i < len(live) and (live_keys[i] in done or live_keys[i] not in wanted):
            if live_keys[i] not in done:
                done.add(live_keys[i])
                out.append(live[i])
            i += 1
            continue
        if j >= len(config):
            i += 1
            continue
        key = config_keys[j]
        if key not in done:
            done.add(key)
            out.append(_apply_merge(live_by.get(key), config[j], items))
        j += 1
    return out


def _remove(obj: dict[str, Any], path: Path, node: TypeNode | None) -> None:
    """Remove the value at `path`, then the maps and lists that removal left empty
    (top-level sections such as `spec` stay)."""
    trail: list[tuple[Any, Any]] = []
    current: Any = obj
    for element in path:
        kind, _, body = element.partition(":")
        if kind == "f" and isinstance(current, dict) and body in current:
            trail.append((current, body))
            current = current[body]
            node = _child(node, body)
            continue
        if kind in ("k", "v") and isinstance(current, list):
            info = node.list_info if node is not None else None
            at = _find_item(current, kind, body, info)
            if at is not None:
                trail.append((current, at))
                current = current[at]
                node = node.items() if node is not None else None
                continue
        return
    container, key = trail.pop()
    del container[key]
    while len(trail) > 1:
        container, key = trail.pop()
        if container[key] not in ({}, []):
            break
        del container[key]


def _find_item(items: list[Any], kind: str, body: str, info: ListInfo | None) -> int | None:
    if kind == "v":
        return next((n for n, x in enumerate(items) if _json(x) == _json(json.loads(body))), None)
    defaults = dict(info.key_defaults) if info is not None else {}
    wanted = json.loads(body)
    for n, item in enumerate(items):
        if isinstance(item, dict) and all(_json(item.get(k, defaults.get(k))) == _json(v) for k, v in wanted.items()):
            return n
    return None


# ---------------------------------------------------------------------------------------
# managedFields encoding


def _decode_managers(obj: Mapping[str, Any] | None) -> dict[_Identity, _Manager]:
    meta = obj.get("metadata") if obj is not None else None
    entries = meta.get("managedFields") if isinstance(meta, Mapping) else None
    return _decode_entries(entries, stored=True) if isinstance(entries, list) else {}


def _decode_entries(entries: list[Any], stored: bool) -> dict[_Identity, _Manager]:
    """Entries to managers. `stored` entries were written by `_store_managers`, so
    their FieldsV1 is canonical and decoded only when needed; others (sent by a client)
    are decoded now, which canonicalizes them."""
    managers: dict[_Identity, _Manager] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        trie = entry.get("fieldsV1")
        m = _Manager(
            str(entry.get("manager", "")),
            str(entry.get("operation", "")),
            str(entry.get("apiVersion", "")),
            str(entry.get("subresource", "")),
            str(entry.get("time", "")),
            None if stored and isinstance(trie, dict) else _decode_fields(trie, ()),
            trie if stored and isinstance(trie, dict) else None,
        )
        if m.identity in managers:
            merged = managers[m.identity]
            merged.fields = merged.fields | m.fields  # a new set: no longer the stored one
            merged._stored = None
        else:
            managers[m.identity] = m
    return managers


def _decode_fields(trie: Any, prefix: Path) -> set[Path]:
    """FieldsV1 (`{"f:spec": {"f:replicas": {}}}`, `.` for a member with children) to paths."""
    paths: set[Path] = set()
    if not isinstance(trie, (dict, Mapping)):
        return paths
    for key, sub in trie.items():
        if key == ".":
            if prefix:
                paths.add(prefix)
            continue
        path = prefix + (_canonical_element(key),)
        if isinstance(sub, (dict, Mapping)) and sub:
            paths |= _decode_fields(sub, path)
        else:
            paths.add(path)
    return paths


@functools.lru_cache(maxsize=4096)
def _canonical_element(element: str) -> str:
    """Re-serialize `k:`/`v:` JSON so paths written elsewhere compare equal to ours."""
    kind, sep, body = element.partition(":")
    if kind in ("k", "v") and sep:
        try:
            return f"{kind}:{_json(json.loads(body))}"
        except ValueError:
            return element
    return element


_ELEMENT_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def _encode_fields(paths: set[Path]) -> dict[str, Any]:
    """Paths to FieldsV1, members in the API server's order (`.` first, then `f:`,
    `k:`, `v:`, `i:` elements, each sorted): inserting the paths in that order builds
    every level of the trie already sorted, a parent before its members."""
    root: dict[str, Any] = {}
    owned: list[dict[str, Any]] = []
    for path in sorted(paths, key=_path_order):
        trie = root
        for element in path[:-1]:
            trie = trie.setdefault(element, {})
        entry = trie[path[-1]] = {".": {}}
        owned.append(entry)
    for entry in owned:
        if len(entry) == 1:  # no members: a plain `{}`
            entry.clear()
    return root


def _path_order(path: Path) -> list[tuple[int, str]]:
    return [(_ELEMENT_ORDER.get(element[:1], 4), element) for element in path]


def _store_managers(obj: dict[str, Any], managers: dict[_Identity, _Manager]) -> None:
    """Write managers back as managedFields, sorted as the API server sorts them."""
    entries = []
    for m in managers.values():
        if m.empty():
            continue
        entry: dict[str, Any] = {"manager": m.manager, "operation": m.operation, "apiVersion": m.api_version}
        if m.time:
            entry["time"] = m.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = m.fields_v1()
        if m.subresource:
            entry["subresource"] = m.subresource
        entries.append(entry)
    entries.sort(
        key=lambda e: (e["operation"], e.get("time", ""), e["manager"], e["apiVersion"], e.get("subresource", ""))
    )
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


# ---------------------------------------------------------------------------------------
# Conflicts


def _path_string(path: Path) -> str:
    """`.spec.template.spec.containers[name="app"].image`, as conflict messages print."""
    out = []
    for element in path:
        kind, _, body = element.partition(":")
        if kind == "f":
            out.append("." + body)
        elif kind == "k":
            fields = json.loads(body)
            out.append("[" + ",".join(f"{k}={_json(v)}" for k, v in fields.items()) + "]")
        elif kind == "v":
            out.append(f"[={body}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


def _conflict_error(conflicts: list[tuple[_Manager, set[Path]]]) -> Conflict:
    """409 in the API server's words: `Apply failed with 1 conflict: conflict with
    "kubectl" using apps/v1: .spec.replicas`, one cause per field."""
    rows = sorted((m.describe(), _path_string(path)) for m, paths in conflicts for path in paths)
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": where} for who, where in rows
    ]
    if len(rows) == 1:
        who, where = rows[0]
        return Conflict(f"Apply failed with 1 conflict: conflict with {who}: {where}", causes=causes)
    lines: list[str] = []
    for who in sorted({who for who, _ in rows}):
        lines.append(f"conflicts with {who}:")
        lines.extend(f"- {where}" for w, where in rows if w == who)
    return Conflict(f"Apply failed with {len(rows)} conflicts: " + "\n".join(lines), causes=causes)
