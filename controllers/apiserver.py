"""The API machinery: what a Kubernetes API server does between a request and the store.

Every write (from kubectl over HTTP, from a controller in-process) goes through the same
path here: defaulting, validation, admission, generation and managedFields bookkeeping,
optimistic concurrency, finalizers and two-phase deletion. The HTTP facade (`http.py`) and
`LocalClient` are thin adapters over this class."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from controllers import errors
from controllers.admission import CREATE, DELETE, UPDATE, AdmissionChain, AdmissionRequest, UserInfo
from controllers.apply import server_side_apply, update_managed_fields
from controllers.clock import now_rfc3339
from controllers.defaults import apply_defaults
from controllers.kinds import Registry, ResourceType
from controllers.openapi import unknown_fields
from controllers.patch import json_patch, merge_patch, strategic_merge_patch, supports_patch_type
from controllers.schema import TypeNode, type_for
from controllers.selectors import (
    FieldSelector,
    LabelSelector,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)
from controllers.store import (
    ADDED,
    DELETED,
    MODIFIED,
    KeyExists,
    KeyMissing,
    MemoryStore,
    Record,
    RevisionMismatch,
    TooOld,
    Watcher,
)
from controllers.validation import prune_unknown_fields, validate

PATCH_JSON = "application/json-patch+json"
PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC, PATCH_APPLY)

ManagedFields = list[dict[str, Any]]  # metadata.managedFields

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_PATCH_RETRIES = 5
_GENERATE_NAME_TRIES = 8


@dataclass
class WriteOptions:
    """Per-request options of a write; `warnings` collects what the answer must carry."""

    dry_run: bool = False
    field_manager: str = ""
    force: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore, as the fieldValidation parameter
    user: UserInfo = field(default_factory=UserInfo)
    warnings: list[str] = field(default_factory=list)


@dataclass
class DeleteOptions:
    dry_run: bool = False
    propagation_policy: str | None = None  # Background | Foreground | Orphan
    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    user: UserInfo = field(default_factory=UserInfo)


@dataclass
class ListResult:
    items: list[bytes]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None

    def objects(self) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in self.items]


class APIWatch:
    """A watch on one resource as the API defines it: selector transitions become ADDED or
    DELETED, and an initial listing is replayed when no resourceVersion was given."""

    def __init__(
        self,
        server: APIServer,
        rt: ResourceType,
        watcher: Watcher,
        labels: LabelSelector,
        fields: FieldSelector,
        initial: list[Record],
    ) -> None:
        self._server = server
        self.rt = rt
        self._watcher = watcher
        self._labels = labels
        self._fields = fields
        self._initial = initial
        self.last_rv = 0

    @property
    def closed(self) -> bool:
        return self._watcher.closed and not self._initial

    @property
    def overflowed(self) -> bool:
        return self._watcher.overflowed

    def next(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """The next (type, raw object) that passes the selectors, or None on timeout/close."""
        while self._initial:
            rec = self._initial.pop(0)
            if self._server._matches(rec.raw, self._labels, self._fields):
                self.last_rv = max(self.last_rv, rec.rv)
                return ADDED, self._server._convert(self.rt, rec.raw)
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - _monotonic())
            ev = self._watcher.next(remaining)
            if ev is None:
                return None
            self.last_rv = ev.rv
            out = self._filter(ev.type, ev.raw, ev.prev_raw)
            if out is not None:
                return out[0], self._server._convert(self.rt, out[1])
            if deadline is not None and _monotonic() >= deadline:
                return None

    def _filter(self, etype: str, raw: bytes, prev: bytes | None) -> tuple[str, bytes] | None:
        if self._labels.empty and self._fields.empty:
            return etype, raw
        match_new = self._server._matches(raw, self._labels, self._fields)
        if etype == ADDED:
            return (ADDED, raw) if match_new else None
        match_old = prev is not None and self._server._matches(prev, self._labels, self._fields)
        if etype == DELETED:
            return (DELETED, raw) if match_old or match_new else None
        if match_new and match_old:
            return MODIFIED, raw
        if match_new:
            return ADDED, raw
        if match_old:
            return DELETED, raw
        return None

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while True:
            item = self.next()
            if item is None:
                return
            yield item

    def stop(self) -> None:
        self._initial = []
        self._watcher.close()


class _UidSource:
    """Version 4 UUIDs from the OS's random bytes, read 8 KiB at a time: `uuid.uuid4`
    reads them for each uid, which was 5% of a create."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)  # a child must not repeat our uids

    def _forget(self) -> None:
        self._buf, self._at = b"", 0

    def __call__(self) -> str:
        with self._lock:
            if self._at + 16 > len(self._buf):
                self._buf, self._at = os.urandom(8192), 0
            h = self._buf[self._at : self._at + 16].hex()
            self._at += 16
        # RFC 9562: version 4 in the 13th digit, variant 10 in the top bits of the 17th.
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_new_uid = _UidSource()


def _monotonic() -> float:
    return time.monotonic()


class APIServer:
    """In-process Kubernetes API semantics over a `MemoryStore`/`SQLiteStore`."""

    SERVICE_CIDR = "10.96.0.0/12"
    NODE_PORT_RANGE = (30000, 32767)

    def __init__(
        self, store: MemoryStore, registry: Registry | None = None, default_toleration_seconds: int = 300
    ) -> None:
        self.store = store
        self.default_toleration_seconds = default_toleration_seconds
        self.registry = registry or Registry()
        self.admission = AdmissionChain()
        self._alloc_lock = threading.Lock()
        self._nodes: dict[int, tuple[ResourceType, TypeNode | None]] = {}
        self._load_crds()
        self._cluster_ips, self._node_ports = self._used_service_addresses()
        self._ensure_bootstrap_objects()

    # ------------------------------------------------------------------ lookups
    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.registry.get(group, version, plural)
        if rt is None:
            gv = f"{group}/{version}" if group else version
            raise errors.NotFound(f"the server could not find the requested resource ({plural} in {gv})")
        return rt

    def resource_for(self, api_version: str, kind: str) -> ResourceType:
        rt = self.registry.by_kind(api_version, kind)
        if rt is None:
            raise errors.NotFound(f'no matches for kind "{kind}" in version "{api_version}"')
        return rt

    def _key_ns(self, rt: ResourceType, namespace: str) -> str:
        return namespace if rt.namespaced else ""

    # ------------------------------------------------------------------ reads
    def get_raw(self, rt: ResourceType, namespace: str, name: str) -> bytes:
        rec = self.store.get(rt.group_resource, self._key_ns(rt, namespace), name)
        if rec is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return self._convert(rt, rec.raw)

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return orjson.loads(self.get_raw(rt, namespace, name))

    def list(
        self,
        rt: ResourceType,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> ListResult:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt, rt.selectable_fields)
        records, rev = self.store.list(rt.group_resource, namespace if rt.namespaced and namespace else None)
        start_after: tuple[str, str] | None = None
        if continue_token:
            rev, start_after = _decode_continue(continue_token)
        items: list[bytes] = []
        last: tuple[str, str] | None = None
        remaining = 0
        for rec in records:
            if start_after is not None and (rec.namespace, rec.name) <= start_after:
                continue
            if not self._matches(rec.raw, labels, fields):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(self._convert(rt, rec.raw))
            last = (rec.namespace, rec.name)
        token = _encode_continue(rev, last) if remaining and last else ""
        return ListResult(items, rev, token, remaining if token else None)

    def _matches(self, raw: bytes, labels: LabelSelector, fields: FieldSelector) -> bool:
        if labels.empty and fields.empty:
            return True
        obj = orjson.loads(raw)
        return labels.matches(obj.get("metadata", {}).get("labels") or {}) and fields.matches(obj)

    def _convert(self, rt: ResourceType, raw: bytes) -> bytes:
        """CRDs with several served versions share one storage; serve each under its own
        apiVersion (conversion strategy None, as Kubernetes does without a webhook)."""
        if not rt.crd:
            return raw
        marker = b'"apiVersion":"' + rt.api_version.encode() + b'"'
        if marker in raw:
            return raw
        obj = orjson.loads(raw)
        obj["apiVersion"] = rt.api_version
        return orjson.dumps(obj)

    def watch(
        self,
        rt: ResourceType,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> APIWatch:
        """A watch from `resource_version`; "" or "0" first replays the current objects."""
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt, rt.selectable_fields)
        ns = namespace if rt.namespaced else ""
        initial: list[Record] = []
        if resource_version in ("", "0"):
            records, rev = self.store.list(rt.group_resource, ns or None)
            initial = records
            since = rev
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise errors.BadRequest(f"invalid resource version: {resource_version!r}") from None
        try:
            watcher = self.store.watch(rt.group_resource, ns, since)
        except TooOld as exc:
            raise errors.Gone(str(exc)) from None
        w = APIWatch(self, rt, watcher, labels, fields, initial)
        w.last_rv = since
        return w

    # ------------------------------------------------------------------ create
    def create(
        self, rt: ResourceType, namespace: str, obj: dict[str, Any], opts: WriteOptions | None = None
    ) -> dict[str, Any]:
        return self._create(rt, namespace, obj, opts or WriteOptions(), None)

    def _create(
        self,
        rt: ResourceType,
        namespace: str,
        obj: dict[str, Any],
        opts: WriteOptions,
        applied_fields: ManagedFields | None,
    ) -> dict[str, Any]:
        """A create in one store write. `applied_fields` is the managedFields of a
        server-side apply that creates, computed before the write; None records the
        create as an ordinary Update by the request's field manager."""
        obj = _clone(obj)
        self._check_type(rt, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.BadRequest("metadata must be an object")
        ns = self._request_namespace(rt, namespace, meta)
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = meta["generateName"] + "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
        name = meta.get("name") or ""
        if meta.get("resourceVersion"):
            raise errors.BadRequest("resourceVersion should not be set on objects to be created")
        if rt.namespaced:
            self._check_namespace_open(ns)
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(k, None)
        now = now_rfc3339()
        meta["uid"] = _new_uid()
        meta["creationTimestamp"] = now
        meta["generation"] = 1
        self._prepare_create(rt, obj)
        self._drop_unknown_fields(rt, obj, opts)
        self._default_and_validate(rt, obj, None, opts)
        if applied_fields is not None:
            if applied_fields:
                meta["managedFields"] = applied_fields
        else:
            update_managed_fields(
                None,
                obj,
                opts.field_manager or "unknown",
                "Update",
                now,
                rt.api_version,
                node=self._node(rt),
                status_subresource=rt.has_status,
            )
        req = AdmissionRequest(CREATE, rt, "", ns, name, obj, None, opts.dry_run, opts.user, opts.warnings)
        if self.admission.has_mutating:
            self.admission.mutate(req)
            self._default_and_validate(rt, obj, None, opts)
        self.admission.validate(req)
        if not name:
            raise errors.invalid(
                rt.kind,
                rt.group,
                "",
                [errors.field_error("metadata.name", "name or generateName is required", "FieldValueRequired")],
            )
        self._allocate(rt, obj, None, opts.dry_run)
        if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
            self._crd_accepted(obj)
        if opts.dry_run:
            return obj
        for attempt in range(_GENERATE_NAME_TRIES):
            try:
                rec = self.store.create(rt.group_resource, self._key_ns(rt, ns), name, obj)
                break
            except KeyExists:
                # A generated name that collides is generated again, as the apiserver does.
                if generated and attempt + 1 < _GENERATE_NAME_TRIES:
                    name = meta["name"] = meta["generateName"] + "".join(
                        secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5)
                    )
                    continue
                self._release(rt, obj, None)
                raise errors.already_exists(rt.plural, rt.group, name) from None
        self._after_write(rt, obj)
        return orjson.loads(rec.raw)

    def _check_type(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rt.kind:
            raise errors.BadRequest(f"the kind of the object ({kind}) does not match the resource ({rt.kind})")
        # Versions of one CRD share storage: accept any served version of the resource.
        if (
            api_version
            and api_version != rt.api_version
            and api_version not in (o.api_version for o in self.registry.by_group_resource(rt.group, rt.plural))
        ):
            raise errors.BadRequest(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
            )
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version

    def _request_namespace(self, rt: ResourceType, namespace: str, meta: dict[str, Any]) -> str:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return ""
        body_ns = meta.get("namespace") or ""
        if namespace and body_ns and body_ns != namespace:
            raise errors.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        ns = namespace or body_ns
        if not ns:
            raise errors.BadRequest("the namespace of the object must be set")
        meta["namespace"] = ns
        return str(ns)

    def _check_namespace_open(self, ns: str) -> None:
        rec = self.store.get("namespaces", "", ns)
        if rec is None:
            raise errors.not_found("namespaces", "", ns)
        if b'"deletionTimestamp"' not in rec.raw:  # an open namespace, without parsing it
            return
        nsobj = orjson.loads(rec.raw)
        if nsobj.get("metadata", {}).get("deletionTimestamp"):
            raise errors.Forbidden(
                f"unable to create new content in namespace {ns} because it is being terminated",
                kind="namespaces",
                name=ns,
            )

    def _prepare_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Status is the controllers' to write: a create starts from the kind's empty status."""
        if rt.kind == "Pod" and not rt.group:
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
        elif rt.kind == "Namespace" and not rt.group:
            obj["status"] = {"phase": "Active"}
        elif rt.kind == "Service" and not rt.group:
            obj["status"] = {"loadBalancer": {}}
        elif rt.has_status and not (rt.kind == "Node" and not rt.group):
            obj.pop("status", None)

    def _drop_unknown_fields(self, rt: ResourceType, obj: dict[str, Any], opts: WriteOptions) -> None:
        """Fields the kind's schema does not declare are dropped, as decoding does in the
        apiserver; `fieldValidation` says whether that is an error (Strict), a warning
        (Warn, the default) or silent (Ignore)."""
        if rt.crd:
            dropped = prune_unknown_fields(rt.schema, obj) if rt.schema else []
        else:
            dropped = unknown_fields(self.registry, obj)
            for path in dropped:
                _delete_path(obj, path)
        if not dropped:
            return
        if opts.field_validation == "Strict":
            raise errors.BadRequest(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding '
                "error: " + ", ".join(f'unknown field "{p}"' for p in dropped)
            )
        if opts.field_validation == "Warn":
            opts.warnings.extend(f'unknown field "{p}"' for p in dropped)

    def _default_and_validate(
        self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, opts: WriteOptions
    ) -> None:
        apply_defaults(rt, obj, self.default_toleration_seconds)
        causes = validate(rt, obj, old)
        if causes:
            raise errors.invalid(rt.kind, rt.group, obj.get("metadata", {}).get("name", ""), causes)

    def _node(self, rt: ResourceType) -> TypeNode | None:
        """The field-type tree of a kind (patch strategies, list keys), cached per type."""
        hit = self._nodes.get(id(rt))
        if hit is not None and hit[0] is rt:
            return hit[1]
        node = type_for(rt.api_version, rt.kind, rt.schema)
        self._nodes[id(rt)] = (rt, node)
        return node

    # ------------------------------------------------------------------ update
    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        opts: WriteOptions | None = None,
        subresource: str = "",
    ) -> dict[str, Any]:
        opts = opts or WriteOptions()
        obj = _clone(obj)
        self._check_type(rt, obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        rv = meta.get("resourceVersion") or ""
        expected = _parse_rv(rv) if rv else None
        ns = self._key_ns(rt, namespace)
        rec = self.store.get(rt.group_resource, ns, name)
        if rec is None:
            raise errors.not_found(rt.plural, rt.group, name)
        if expected is not None and rec.rv != expected:
            raise errors.conflict(rt.plural, rt.group, name)
        old = orjson.loads(rec.raw)
        return self._update_from(rt, ns, name, old, rec.rv, obj, opts, subresource)

    def _update_from(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        old: dict[str, Any],
        old_rv: int,
        obj: dict[str, Any],
        opts: WriteOptions,
        subresource: str,
        operation: str = "Update",
    ) -> dict[str, Any]:
        new = self._merge_for_subresource(rt, old, obj, subresource)
        new_meta = new.setdefault("metadata", {})
        old_meta = old.get("metadata", {})
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "name"):
            if k in old_meta:
                new_meta[k] = old_meta[k]
            else:
                new_meta.pop(k, None)
        if rt.namespaced:
            new_meta["namespace"] = ns
        else:
            new_meta.pop("namespace", None)
        if old_meta.get("deletionTimestamp"):
            added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    name,
                    [
                        errors.field_error(
                            "metadata.finalizers",
                            "no new finalizers can be added if the object is being deleted",
                            "FieldValueForbidden",
                        )
                    ],
                )
        if subresource != "status":
            self._drop_unknown_fields(rt, new, opts)
            self._default_and_validate(rt, new, old, opts)
        new_meta["generation"] = old_meta.get("generation", 1) + (1 if _spec_changed(rt, old, new) else 0)
        if operation == "Update":
            update_managed_fields(
                old,
                new,
                opts.field_manager or "unknown",
                "Update",
                now_rfc3339(),
                rt.api_version,
                subresource=subresource,
            )
        req = AdmissionRequest(UPDATE, rt, subresource, ns, name, new, old, opts.dry_run, opts.user, opts.warnings)
        if self.admission.has_mutating:
            self.admission.mutate(req)
            if subresource != "status":
                self._default_and_validate(rt, new, old, opts)
        self.admission.validate(req)
        self._allocate(rt, new, old, opts.dry_run)
        if _same_object(old, new):
            return old
        if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
            self._crd_accepted(new)
        if opts.dry_run:
            new_meta["resourceVersion"] = str(old_rv)
            return new
        if (
            new_meta.get("deletionTimestamp")
            and not new_meta.get("finalizers")
            and not _spec_finalizers(rt, new)
            and not new_meta.get("deletionGracePeriodSeconds")  # a pod stopping gracefully stays until then
        ):
            removed = self._remove(rt, ns, name, old_rv, new)
            new_meta["resourceVersion"] = removed["metadata"]["resourceVersion"]
            return new  # the object as this write left it: without the finalizer it removed
        try:
            rec = self.store.update(rt.group_resource, ns, name, new, old_rv)
        except RevisionMismatch:
            raise errors.conflict(rt.plural, rt.group, name) from None
        except KeyMissing:
            raise errors.not_found(rt.plural, rt.group, name) from None
        self._release(rt, new, old)
        self._after_write(rt, new)
        return orjson.loads(rec.raw)

    def _merge_for_subresource(
        self, rt: ResourceType, old: dict[str, Any], obj: dict[str, Any], subresource: str
    ) -> dict[str, Any]:
        """The main resource ignores status changes; the status subresource ignores the rest."""
        if subresource == "status":
            if not rt.has_status:
                raise errors.NotFound(f"the server could not find the requested resource ({rt.plural}/status)")
            # The old object but its status (not copied: it is replaced), in its key order.
            rest = _clone({k: v for k, v in old.items() if k != "status"})
            new = {k: obj["status"] if k == "status" else rest[k] for k in old if k != "status" or "status" in obj}
            if "status" in obj:
                new["status"] = obj["status"]
            return new
        if subresource:
            raise errors.NotFound(f"the server could not find the requested resource ({rt.plural}/{subresource})")
        new = obj
        if rt.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return new

    # ------------------------------------------------------------------ patch
    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions | None = None,
        subresource: str = "",
    ) -> dict[str, Any]:
        """Apply a JSON, merge, strategic-merge or server-side-apply patch.

        Conflicts with concurrent writers are retried against the fresh object, as the
        apiserver does, unless the patch itself pins a resourceVersion."""
        opts = opts or WriteOptions()
        if patch_type not in PATCH_TYPES:
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media "
                f"types include: {', '.join(PATCH_TYPES)}"
            )
        if not supports_patch_type(rt, patch_type):
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{PATCH_JSON}, {PATCH_MERGE}, {PATCH_APPLY}"
            )
        ns = self._key_ns(rt, namespace)
        for _ in range(_PATCH_RETRIES):
            rec = self.store.get(rt.group_resource, ns, name)
            if patch_type == PATCH_APPLY:
                try:
                    return self._apply(rt, namespace, name, rec, body, opts, subresource)
                except _LostRace:
                    continue
            if rec is None:
                raise errors.not_found(rt.plural, rt.group, name)
            old = orjson.loads(rec.raw)
            # A JSON patch shares what it leaves unchanged with its input, and the write
            # changes `new` in place: it patches a copy of its own (merge patches copy).
            new = self._patched(rt, orjson.loads(rec.raw) if patch_type == PATCH_JSON else old, patch_type, body)
            pinned = new.get("metadata", {}).get("resourceVersion")
            if pinned and pinned != str(rec.rv):
                raise errors.conflict(rt.plural, rt.group, name)
            try:
                return self._update_from(rt, ns, name, old, rec.rv, new, opts, subresource)
            except errors.Conflict:
                if pinned:
                    raise
        raise errors.conflict(rt.plural, rt.group, name)

    def _patched(self, rt: ResourceType, old: dict[str, Any], patch_type: str, body: Any) -> dict[str, Any]:
        if patch_type == PATCH_JSON:
            if not isinstance(body, list):
                raise errors.BadRequest("json patch must be a list of operations")
            return json_patch(old, body)
        if not isinstance(body, dict):
            raise errors.BadRequest("patch body must be a JSON object")
        if patch_type == PATCH_MERGE:
            return merge_patch(old, body)
        return strategic_merge_patch(old, body, self._node(rt))

    def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        rec: Record | None,
        body: Any,
        opts: WriteOptions,
        subresource: str,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.BadRequest("apply patch must be a YAML or JSON object")
        if not opts.field_manager:
            raise errors.BadRequest("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        body = _clone(body)
        self._check_type(rt, body)
        meta = body.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        node = self._node(rt)
        now = now_rfc3339()
        if rec is None:
            if subresource:
                raise errors.not_found(rt.plural, rt.group, name)
            created = server_side_apply(
                None, body, opts.field_manager, opts.force, node, now, status_subresource=rt.has_status
            )
            try:
                return self._create_applied(rt, namespace, created, opts)
            except errors.AlreadyExists:
                raise _LostRace from None  # created meanwhile: apply to that object
        old = orjson.loads(rec.raw)
        pinned = meta.get("resourceVersion")
        if pinned and pinned != str(rec.rv):
            raise errors.conflict(rt.plural, rt.group, name)
        new = server_side_apply(
            old,
            body,
            opts.field_manager,
            opts.force,
            node,
            now,
            subresource=subresource,
            status_subresource=rt.has_status,
        )
        try:
            return self._update_from(
                rt, self._key_ns(rt, namespace), name, old, rec.rv, new, opts, subresource, operation="Apply"
            )
        except errors.Conflict:
            if pinned:
                raise
            raise _LostRace from None  # written meanwhile: apply to what it is now

    def _create_applied(
        self, rt: ResourceType, namespace: str, obj: dict[str, Any], opts: WriteOptions
    ) -> dict[str, Any]:
        """An apply that creates is one create (one revision, one ADDED event) carrying
        the apply's managedFields: a writer that comes in between cannot fail it."""
        managed = obj.get("metadata", {}).pop("managedFields", None)
        return self._create(rt, namespace, obj, opts, managed or [])

    # ------------------------------------------------------------------ delete
    def delete(self, rt: ResourceType, namespace: str, name: str, opts: DeleteOptions | None = None) -> dict[str, Any]:
        """Delete now, or mark for deletion when finalizers (or a graceful pod stop) must run
        first. Returns the object as it is after the call."""
        opts = opts or DeleteOptions()
        ns = self._key_ns(rt, namespace)
        rec = self.store.get(rt.group_resource, ns, name)
        if rec is None:
            raise errors.not_found(rt.plural, rt.group, name)
        obj = orjson.loads(rec.raw)
        meta = obj["metadata"]
        if opts.precondition_uid and opts.precondition_uid != meta.get("uid"):
            raise errors.Conflict(
                f"Precondition failed: UID in precondition: {opts.precondition_uid}, UID in object meta: "
                f"{meta.get('uid')}",
                kind=rt.plural,
                name=name,
            )
        if opts.precondition_rv and opts.precondition_rv != meta.get("resourceVersion"):
            raise errors.Conflict(
                f"Precondition failed: ResourceVersion in precondition: {opts.precondition_rv}, "
                f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                kind=rt.plural,
                name=name,
            )
        req = AdmissionRequest(DELETE, rt, "", ns, name, None, obj, opts.dry_run, opts.user)
        self.admission.mutate(req)
        self.admission.validate(req)
        finalizers = list(meta.get("finalizers") or [])
        policy = opts.propagation_policy
        if policy == "Foreground" and FOREGROUND_FINALIZER not in finalizers:
            finalizers.append(FOREGROUND_FINALIZER)
        elif policy == "Orphan" and ORPHAN_FINALIZER not in finalizers:
            finalizers.append(ORPHAN_FINALIZER)
        grace = self._grace_period(rt, obj, opts)
        if not finalizers and not grace and not _spec_finalizers(rt, obj):
            if meta.get("deletionTimestamp") and opts.dry_run:
                return obj
            if opts.dry_run:
                return obj
            return self._remove(rt, ns, name, rec.rv, obj)
        if meta.get("deletionTimestamp"):
            # Already terminating: a shorter grace period (0: the kubelet is done) hurries it
            # along; finalizers still hold the object until they are removed.
            shorter = opts.grace_period_seconds
            if shorter is not None and shorter < (meta.get("deletionGracePeriodSeconds") or 0) and not opts.dry_run:
                meta["deletionGracePeriodSeconds"] = shorter
                return self._store_update(rt, ns, name, rec.rv, obj)
            return obj
        meta["finalizers"] = finalizers
        meta["deletionTimestamp"] = _rfc3339_in(grace or 0)
        meta["deletionGracePeriodSeconds"] = grace or 0
        if rt.kind == "Namespace" and not rt.group:
            obj.setdefault("status", {})["phase"] = "Terminating"
        if opts.dry_run:
            return obj
        return self._store_update(rt, ns, name, rec.rv, obj)

    def _grace_period(self, rt: ResourceType, obj: dict[str, Any], opts: DeleteOptions) -> int | None:
        """Only a pod on a node stops gracefully: the kubelet finishes the delete."""
        if rt.kind != "Pod" or rt.group:
            return None
        spec, status = obj.get("spec", {}), obj.get("status", {})
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return None
        grace = opts.grace_period_seconds
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return int(grace) if grace else None

    def _store_update(self, rt: ResourceType, ns: str, name: str, rv: int, obj: dict[str, Any]) -> dict[str, Any]:
        try:
            rec = self.store.update(rt.group_resource, ns, name, obj, rv)
        except RevisionMismatch:
            raise errors.conflict(rt.plural, rt.group, name) from None
        return orjson.loads(rec.raw)

    def _remove(self, rt: ResourceType, ns: str, name: str, rv: int, obj: dict[str, Any]) -> dict[str, Any]:
        try:
            rec = self.store.delete(rt.group_resource, ns, name, rv)
        except RevisionMismatch:
            raise errors.conflict(rt.plural, rt.group, name) from None
        except KeyMissing:
            raise errors.not_found(rt.plural, rt.group, name) from None
        self._release(rt, None, obj)
        if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
            self._crd_removed(obj)
        return orjson.loads(rec.raw)

    # ------------------------------------------------------------------ pods/binding
    def bind(self, namespace: str, name: str, binding: dict[str, Any], opts: WriteOptions | None = None) -> None:
        """pods/binding: set spec.nodeName once, and mark the pod scheduled."""
        opts = opts or WriteOptions()
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise errors.invalid(
                "Binding", "", name, [errors.field_error("target.name", "Required value", "FieldValueRequired")]
            )
        rt = self.resource("", "v1", "pods")
        for _ in range(_PATCH_RETRIES):
            rec = self.store.get("pods", namespace, name)
            if rec is None:
                raise errors.not_found("pods", "", name)
            pod = orjson.loads(rec.raw)
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.Conflict(f"pod {name} is being deleted, cannot be assigned to a host")
            current = pod.get("spec", {}).get("nodeName")
            if current:
                raise errors.Conflict(f'pod {name} is already assigned to node "{current}"')
            pod["spec"]["nodeName"] = target
            conds = [c for c in pod.setdefault("status", {}).get("conditions", []) if c.get("type") != "PodScheduled"]
            conds.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
            )
            pod["status"]["conditions"] = conds
            if opts.dry_run:
                return
            try:
                self.store.update(rt.group_resource, namespace, name, pod, rec.rv)
                return
            except RevisionMismatch:
                continue
        raise errors.conflict("pods", "", name)

    # ------------------------------------------------------------------ scale subresource
    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.get(rt, namespace, name)
        return _scale_of(rt, obj)

    def update_scale(
        self, rt: ResourceType, namespace: str, name: str, scale: dict[str, Any], opts: WriteOptions | None = None
    ) -> dict[str, Any]:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                name,
                [errors.field_error("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")],
            )
        patch: dict[str, Any] = {}
        node = patch
        parts = _scale_paths(rt)[0].strip(".").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = replicas
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            patch["metadata"] = {"resourceVersion": rv}
        obj = self.patch(rt, namespace, name, PATCH_MERGE, patch, opts)
        return _scale_of(rt, obj)

    # ------------------------------------------------------------------ services
    def _used_service_addresses(self) -> tuple[set[str], set[int]]:
        ips: set[str] = set()
        ports: set[int] = set()
        records, _ = self.store.list("services")
        for rec in records:
            spec = orjson.loads(rec.raw).get("spec", {})
            ips.update(ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None")
            ports.update(p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort"))
        return ips, ports

    def _allocate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        """ClusterIP and NodePort allocation, as the Service REST storage does."""
        if rt.kind != "Service" or rt.group:
            return
        spec = obj.setdefault("spec", {})
        stype = spec.get("type", "ClusterIP")
        with self._alloc_lock:
            if stype == "ExternalName":
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            elif old is not None and old.get("spec", {}).get("clusterIP") and not spec.get("clusterIP"):
                spec["clusterIP"] = old["spec"]["clusterIP"]
            elif not spec.get("clusterIP"):
                spec["clusterIP"] = self._next_cluster_ip(dry_run)
            elif spec["clusterIP"] != "None" and old is None:
                self._claim_cluster_ip(spec["clusterIP"], rt, obj, dry_run)
            if spec.get("clusterIP"):
                spec["clusterIPs"] = [spec["clusterIP"]]
            old_ports = {
                (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                for p in (old or {}).get("spec", {}).get("ports") or []
            }
            for i, port in enumerate(spec.get("ports") or []):
                if stype not in ("NodePort", "LoadBalancer"):
                    port.pop("nodePort", None)
                    continue
                previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if port.get("nodePort"):
                    if port["nodePort"] != previous:
                        self._claim_node_port(port["nodePort"], i, rt, obj, dry_run)
                elif previous:
                    port["nodePort"] = previous
                else:
                    port["nodePort"] = self._next_node_port(dry_run)

    def _next_cluster_ip(self, dry_run: bool) -> str:
        net = ipaddress.ip_network(self.SERVICE_CIDR)
        for ip in net.hosts():
            s = str(ip)
            if s.endswith(".0.1") and s == str(net.network_address + 1):
                continue  # reserved for the kubernetes Service
            if s not in self._cluster_ips:
                if not dry_run:
                    self._cluster_ips.add(s)
                return s
        raise errors.InternalError("the service cluster IP range is full")

    def _claim_cluster_ip(self, ip: str, rt: ResourceType, obj: dict[str, Any], dry_run: bool) -> None:
        name = obj.get("metadata", {}).get("name", "")
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise errors.invalid(
                rt.kind,
                "",
                name,
                [errors.field_error("spec.clusterIPs[0]", f'Invalid value: "{ip}": must be a valid IP address')],
            ) from None
        if addr not in ipaddress.ip_network(self.SERVICE_CIDR):
            raise errors.invalid(
                rt.kind,
                "",
                name,
                [
                    errors.field_error(
                        "spec.clusterIPs[0]",
                        f'Invalid value: "{ip}": provided IP is not in the valid range. The range of '
                        f"valid IPs is {self.SERVICE_CIDR}",
                    )
                ],
            )
        if ip in self._cluster_ips:
            raise errors.invalid(
                rt.kind,
                "",
                name,
                [
                    errors.field_error(
                        "spec.clusterIPs",
                        f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: '
                        "provided IP is already allocated",
                    )
                ],
            )
        if not dry_run:
            self._cluster_ips.add(ip)

    def _next_node_port(self, dry_run: bool) -> int:
        lo, hi = self.NODE_PORT_RANGE
        for port in range(lo, hi + 1):
            if port not in self._node_ports:
                if not dry_run:
                    self._node_ports.add(port)
                return port
        raise errors.InternalError("the node port range is full")

    def _claim_node_port(self, port: int, i: int, rt: ResourceType, obj: dict[str, Any], dry_run: bool) -> None:
        lo, hi = self.NODE_PORT_RANGE
        name = obj.get("metadata", {}).get("name", "")
        if not lo <= port <= hi:
            raise errors.invalid(
                rt.kind,
                "",
                name,
                [
                    errors.field_error(
                        f"spec.ports[{i}].nodePort",
                        f"Invalid value: {port}: provided port is not in the valid range. "
                        f"The range of valid ports is {lo}-{hi}",
                    )
                ],
            )
        if port in self._node_ports:
            raise errors.invalid(
                rt.kind,
                "",
                name,
                [
                    errors.field_error(
                        f"spec.ports[{i}].nodePort", f"Invalid value: {port}: provided port is already allocated"
                    )
                ],
            )
        if not dry_run:
            self._node_ports.add(port)

    def _release(self, rt: ResourceType, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if rt.kind != "Service" or rt.group or old is None:
            return
        new_spec = (new or {}).get("spec", {})
        old_spec = old.get("spec", {})
        with self._alloc_lock:
            if old_spec.get("clusterIP") and old_spec.get("clusterIP") != new_spec.get("clusterIP"):
                self._cluster_ips.discard(old_spec["clusterIP"])
            keep = {p.get("nodePort") for p in new_spec.get("ports") or []}
            for p in old_spec.get("ports") or []:
                if p.get("nodePort") and p["nodePort"] not in keep:
                    self._node_ports.discard(p["nodePort"])

    # ------------------------------------------------------------------ CRDs
    def _load_crds(self) -> None:
        records, _ = self.store.list("customresourcedefinitions.apiextensions.k8s.io")
        for rec in records:
            crd = orjson.loads(rec.raw)
            if not crd["metadata"].get("deletionTimestamp"):
                self.registry.add_crd(crd["metadata"]["name"], crd_types(crd))

    def _crd_accepted(self, crd: dict[str, Any]) -> None:
        names = crd.get("spec", {}).get("names", {})
        now = now_rfc3339()
        accepted = dict(names)
        accepted.setdefault("singular", str(names.get("kind", "")).lower())
        accepted.setdefault("listKind", f"{names.get('kind', '')}List")
        status = crd.setdefault("status", {})
        status["acceptedNames"] = accepted
        status["storedVersions"] = sorted(
            set(status.get("storedVersions") or [])
            | {v["name"] for v in crd.get("spec", {}).get("versions", []) if v.get("storage")}
        )
        conds = {c["type"]: c for c in status.get("conditions") or []}
        for ctype, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ):
            conds.setdefault(
                ctype,
                {"type": ctype, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message},
            )
        status["conditions"] = list(conds.values())

    def _crd_removed(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec", {})
        resource = f"{spec.get('names', {}).get('plural', '')}.{spec.get('group', '')}"
        records, _ = self.store.list(resource)
        for rec in records:
            try:
                self.store.delete(resource, rec.namespace, rec.name)
            except KeyMissing:
                pass
        self.registry.remove_crd(crd["metadata"]["name"])

    def _after_write(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
            if obj["metadata"].get("deletionTimestamp"):
                return
            self.registry.add_crd(obj["metadata"]["name"], crd_types(obj))

    # ------------------------------------------------------------------ bootstrap
    def _ensure_bootstrap_objects(self) -> None:
        """The namespaces and the `kubernetes` Service every cluster starts with."""
        ns_rt = self.resource("", "v1", "namespaces")
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.get("namespaces", "", ns) is None:
                self.create(ns_rt, "", {"metadata": {"name": ns}}, WriteOptions(field_manager="kube-apiserver"))
        if self.store.get("services", "default", "kubernetes") is None:
            net = ipaddress.ip_network(self.SERVICE_CIDR)
            svc = {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "clusterIP": str(net.network_address + 1),
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                },
            }
            self.create(
                self.resource("", "v1", "services"), "default", svc, WriteOptions(field_manager="kube-apiserver")
            )


class _LostRace(Exception):
    """Another writer changed the object between an apply's read and its write."""


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves, one per served version."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    out = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        sub = version.get("subresources") or {}
        subresources = tuple(s for s in ("status", "scale") if s in sub)
        out.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version["name"],
                kind=names.get("kind", ""),
                plural=names.get("plural", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                scale=sub.get("scale"),
                selectable_fields=tuple(
                    f["jsonPath"] for f in version.get("selectableFields") or () if f.get("jsonPath")
                ),
                crd=True,
            )
        )
    return out


# ---------------------------------------------------------------------- helpers
def _spec_finalizers(rt: ResourceType, obj: dict[str, Any]) -> list[str]:
    """A Namespace also waits for spec.finalizers (the namespace controller's `kubernetes`
    entry, cleared through namespaces/finalize once the namespace is empty)."""
    if rt.kind == "Namespace" and not rt.group:
        return list((obj.get("spec") or {}).get("finalizers") or [])
    return []


def _clone(obj: dict[str, Any]) -> dict[str, Any]:
    """A private deep copy of a JSON object (faster than copy.deepcopy)."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except TypeError:
        raise errors.BadRequest("the object is not valid JSON") from None


def _delete_path(obj: dict[str, Any], path: str) -> None:
    """Remove `a.b[0].c` from obj (paths as the unknown-field check reports them)."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        for idx in rest.split("[") if rest else ():
            steps.append(int(idx.rstrip("]")))
    cur: Any = obj
    for step in steps[:-1]:
        try:
            cur = cur[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(cur, dict):
        cur.pop(steps[-1], None)


def _parse_rv(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        raise errors.BadRequest(f"invalid resourceVersion: {rv!r}") from None


def _encode_continue(rev: int, last: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": rev, "ns": last[0], "name": last[1]})).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["ns"]), str(data["name"]))
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise errors.BadRequest("continue key is not valid") from None


def _rfc3339_in(seconds: int) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """generation counts changes of everything but metadata and status."""
    skip = {"metadata", "status", "apiVersion", "kind"}
    keys = (set(old) | set(new)) - skip
    return any(old.get(k) != new.get(k) for k in keys)


def _same_object(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A write that changes nothing is not stored (no new revision, no watch event)."""

    def strip(o: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in o.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")}
        mf = [{k: v for k, v in e.items() if k != "time"} for e in o.get("metadata", {}).get("managedFields") or []]
        return {**o, "metadata": meta, "__mf": mf}

    return strip(old) == strip(new)


def _qos_class(pod: dict[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    requests_any = limits_any = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests_any |= bool(req)
        limits_any |= bool(lim)
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any or limits_any else "BestEffort"


def _scale_paths(rt: ResourceType) -> tuple[str, str, str | None]:
    """(spec replicas, status replicas, label selector) paths: the CRD's scale subresource
    declares them; built-in kinds use spec.replicas, status.replicas and spec.selector."""
    if rt.crd and rt.scale:
        return (
            rt.scale.get("specReplicasPath", ".spec.replicas"),
            rt.scale.get("statusReplicasPath", ".status.replicas"),
            rt.scale.get("labelSelectorPath"),
        )
    return ".spec.replicas", ".status.replicas", None


def _dig(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _scale_of(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    spec_path, status_path, selector_path = _scale_paths(rt)
    if selector_path:
        sel = str(_dig(obj, selector_path) or "")
    else:
        selector = (obj.get("spec") or {}).get("selector")
        sel = str(label_selector_from_dict(selector)) if isinstance(selector, dict) else ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": _dig(obj, spec_path) or 0},
        "status": {"replicas": _dig(obj, status_path) or 0, "selector": sel},
    }
