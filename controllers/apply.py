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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass
class _Manager:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str
    fields: set[Path] = field(default_factory=set)

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
    ignored = _ignore_filter(subresource, status_subresource)
    version = str(config.get("apiVersion") or (live or {}).get("apiVersion") or "")
    if node is None:
        node = type_for(version, str(config.get("kind") or (live or {}).get("kind") or ""))

    managers = _decode_managers(live)
    live_paths = _paths(live, node, ignored) if live is not None else {}
    if live is not None and not managers and live_paths:
        # An object nobody tracked yet: its current fields belong to a stand-in manager,
        # so the first apply cannot silently overwrite them.
        stand_in = _Manager(_BEFORE_FIRST_APPLY, "Update", str(live.get("apiVersion", version)), "", now)
        stand_in.fields = _owned(live_paths)
        managers[stand_in.identity] = stand_in

    me = _Manager(manager, "Apply", version, subresource, now, _owned(_paths(config, node, ignored)))
    previous = managers.get(me.identity)
    merged = _apply_merge(_without_managed_fields(live) if live is not None else {}, config, node)

    if previous is not None:
        claimed = set(me.fields)
        for other in managers.values():
            if other.identity != me.identity:
                claimed |= other.fields
        for path in sorted(previous.fields - claimed, key=len):
            _remove(merged, path, node)

    added, modified, removed = _compare(live_paths, _paths(merged, node, ignored))
    changed = added | modified
    conflicts = {
        other.identity: other.fields & changed
        for other in managers.values()
        if other.identity != me.identity and other.fields & changed
    }
    if conflicts and not force:
        raise _conflict_error([(managers[k], paths) for k, paths in conflicts.items()])
    for identity, lost in conflicts.items():
        managers[identity].fields -= lost
    for other in managers.values():
        other.fields -= removed
    if previous is not None and previous.fields == me.fields and not changed and not removed:
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
    managers = _decode_entries(incoming) if incoming else _decode_managers(old)
    if node is None:
        node = type_for(str(new.get("apiVersion", "")), str(new.get("kind", "")))
    ignored = _ignore_filter(subresource, status_subresource)
    before = _paths(old, node, ignored) if old is not None else {}
    added, modified, removed = _compare(before, _paths(new, node, ignored))
    changed = added | modified
    for other in managers.values():
        other.fields -= changed | removed
    if changed:
        version = api_version or str(new.get("apiVersion", ""))
        writer = _Manager(manager, operation, version, subresource, now)
        previous = managers.get(writer.identity)
        writer.fields = (previous.fields if previous is not None else set()) | changed
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


def _ignore_filter(subresource: str, status_subresource: bool) -> Callable[[Path], bool]:
    """Paths an endpoint does not track: identity and server metadata always, `status`
    on the main resource of kinds with a status subresource, all but `status` on it."""

    def ignored(path: Path) -> bool:
        top = path[0]
        if top in ("f:apiVersion", "f:kind"):
            return True
        if top == "f:metadata" and len(path) > 1 and path[1][2:] in _UNTRACKED_META:
            return True
        if subresource == "status":
            return top != "f:status"
        return status_subresource and top == "f:status"

    return ignored


# ---------------------------------------------------------------------------------------
# Walking objects into field paths


def _paths(obj: Mapping[str, Any], node: TypeNode | None, ignored: Callable[[Path], bool]) -> dict[Path, _Entry]:
    """Every position of `obj` as a FieldsV1 path, with how it is held."""
    out: dict[Path, _Entry] = {}
    for key, value in obj.items():
        if value is not None and not ignored(("f:" + key,)):
            _walk(value, _child(node, key), ("f:" + key,), out)
    return {path: entry for path, entry in out.items() if not ignored(path)}


def _owned(paths: dict[Path, _Entry]) -> set[Path]:
    """What an applier owns: values and list items, not the containers around them."""
    return {path for path, (kind, _) in paths.items() if kind in ("leaf", "item")}


def _child(node: TypeNode | None, name: str) -> TypeNode | None:
    return node.field(name) if node is not None else None


def _walk(value: Any, node: TypeNode | None, path: Path, out: dict[Path, _Entry]) -> None:
    if (node is not None and node.atomic) or value == {} or value == []:
        out[path] = ("leaf", value)
        return
    if isinstance(value, dict):
        out[path] = ("map" if node is not None and node.kind == "map" else "struct", None)
        for key, sub in value.items():
            if sub is not None:
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
    return _decode_entries(entries) if isinstance(entries, list) else {}


def _decode_entries(entries: list[Any]) -> dict[_Identity, _Manager]:
    managers: dict[_Identity, _Manager] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        m = _Manager(
            str(entry.get("manager", "")),
            str(entry.get("operation", "")),
            str(entry.get("apiVersion", "")),
            str(entry.get("subresource", "")),
            str(entry.get("time", "")),
            _decode_fields(entry.get("fieldsV1"), ()),
        )
        if m.identity in managers:
            managers[m.identity].fields |= m.fields
        else:
            managers[m.identity] = m
    return managers


def _decode_fields(trie: Any, prefix: Path) -> set[Path]:
    """FieldsV1 (`{"f:spec": {"f:replicas": {}}}`, `.` for a member with children) to paths."""
    paths: set[Path] = set()
    if not isinstance(trie, Mapping):
        return paths
    for key, sub in trie.items():
        if key == ".":
            if prefix:
                paths.add(prefix)
            continue
        path = prefix + (_canonical_element(key),)
        if isinstance(sub, Mapping) and sub:
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
    root: dict[str, Any] = {}
    for path in paths:
        trie = root
        for element in path:
            trie = trie.setdefault(element, {})
    for path in paths:
        trie = root
        for element in path:
            trie = trie[element]
        if trie:
            trie["."] = {}
    return _sorted_trie(root)


def _sorted_trie(trie: dict[str, Any]) -> dict[str, Any]:
    def order(key: str) -> tuple[int, str]:
        return (-1, "") if key == "." else (_ELEMENT_ORDER.get(key[:1], 4), key)

    return {key: _sorted_trie(trie[key]) for key in sorted(trie, key=order)}


def _store_managers(obj: dict[str, Any], managers: dict[_Identity, _Manager]) -> None:
    """Write managers back as managedFields, sorted as the API server sorts them."""
    entries = []
    for m in managers.values():
        if not m.fields:
            continue
        entry: dict[str, Any] = {"manager": m.manager, "operation": m.operation, "apiVersion": m.api_version}
        if m.time:
            entry["time"] = m.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = _encode_fields(m.fields)
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
