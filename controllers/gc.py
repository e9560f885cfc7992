"""The garbage collector: ownerReferences honoured as kube-controller-manager's garbage
collector honours them.

- Background: an object whose owners are all gone (checked with a live GET by uid, the
  caches may lag) is deleted; so is one whose owner never existed (a dangling reference).
- Foreground: an owner marked for deletion with the `foregroundDeletion` finalizer has its
  dependents deleted first, and loses the finalizer (so the API server removes it) once
  no dependent with `blockOwnerDeletion: true` remains.
- Orphan: an owner with the `orphan` finalizer has its reference removed from every
  dependent, then loses the finalizer.

The owner -> dependents graph is the `owner` index of one shared informer per served kind
(built-in kinds, and CRD kinds as they are established); events are not watched, as in
Kubernetes. This module also holds `served_resources` and `KindWatcher`, the discovery of
every served kind that the namespace controller shares."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from controllers import errors
from controllers.apiserver import FOREGROUND_FINALIZER, ORPHAN_FINALIZER
from controllers.client import Client, LocalClient, RemoteClient, ResourceInfo
from controllers.events import WARNING
from controllers.kinds import ResourceType
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Handler, Informer, Result

log = logging.getLogger(__name__)

Obj = dict[str, Any]
GroupKind = tuple[str, str]

_NEEDED_VERBS = {"list", "watch", "delete"}
# kube-controller-manager's garbage collector ignores events too: many, short-lived, unowned.
IGNORED_KINDS: frozenset[GroupKind] = frozenset({("", "Event"), ("events.k8s.io", "Event")})
FIELD_MANAGER = "garbage-collector"


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


# ---------------------------------------------------------------------- discovery
def served_resources(client: Client) -> list[ResourceInfo]:
    """Every kind the server serves that can be listed, watched and deleted, once, in its
    group's preferred version. (The Client protocol has no "list every kind" method; this
    reads the registry in-process and discovery over HTTP.)"""
    if isinstance(client, LocalClient):
        registry = client.server.registry
        preference = registry.group_versions()  # versions per group, preferred first
        best: dict[tuple[str, str], ResourceType] = {}
        for rt in registry.all():
            if not _NEEDED_VERBS.issubset(rt.verbs):
                continue
            held = best.get((rt.group, rt.plural))
            order = preference[rt.group]
            if held is None or order.index(rt.version) < order.index(held.version):
                best[(rt.group, rt.plural)] = rt
        return [
            ResourceInfo(rt.api_version, rt.kind, rt.plural, rt.namespaced, rt.subresources) for rt in best.values()
        ]
    if isinstance(client, RemoteClient):
        return _discovered_resources(client)
    raise TypeError(f"cannot discover the kinds served through {type(client).__name__}")


def _discovered_resources(client: RemoteClient) -> list[ResourceInfo]:
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.resource import Resource

    dyn = DynamicClient(client.api_client)
    dyn.resources.invalidate_cache()  # the on-disk discovery cache may predate new CRDs
    out = []
    for res in dyn.resources.search():
        if type(res) is not Resource or not res.preferred or not _NEEDED_VERBS.issubset(res.verbs or ()):
            continue
        api_version = f"{res.group}/{res.api_version}" if res.group else res.api_version
        subs = tuple(sorted((res.subresources or {}).keys()))
        out.append(ResourceInfo(api_version, res.kind, res.name, bool(res.namespaced), subs))
    return out


TrackCallback = Callable[[ResourceInfo, Informer], None]


class KindWatcher:
    """A shared informer on every served kind that `wanted` accepts, the set growing as
    CRDs are established (a CRD informer wakes a rediscovery; a CRD whose kind is not
    served yet is looked at again shortly). `on_track` attaches handlers to each new
    informer."""

    def __init__(
        self, ctx: ControllerContext, name: str, wanted: Callable[[ResourceInfo], bool], on_track: TrackCallback
    ) -> None:
        self.ctx = ctx
        self.wanted = wanted
        self.on_track = on_track
        self._lock = threading.Lock()
        self._tracked: dict[GroupKind, tuple[ResourceInfo, Informer]] = {}
        self._misses: dict[str, int] = {}  # CRD name -> looks that did not find its kind served
        self.crds = ctx.informers.informer("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        self.controller = Controller(f"{name}-discovery", self._sync_crd)
        self.controller.watch(self.crds)
        self.refresh()

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def refresh(self) -> None:
        """Start informers for kinds that appeared since the last look."""
        fresh = [i for i in served_resources(self.ctx.client) if self.wanted(i)]
        with self._lock:
            added = []
            for info in fresh:
                gk = (group_of(info.api_version), info.kind)
                if gk not in self._tracked:
                    inf = self.ctx.informers.informer(info.api_version, info.kind)
                    self._tracked[gk] = (info, inf)
                    added.append((info, inf))
        for info, inf in added:
            self.on_track(info, inf)

    def _sync_crd(self, key: str) -> Result | None:
        crd = self.crds.cache.get(key)
        if crd is None or crd["metadata"].get("deletionTimestamp"):
            self._misses.pop(key, None)
            return None
        self.refresh()
        if self.covers(crd):
            self._misses.pop(key, None)
            return None
        # Served a moment after the CRD is written, normally; a CRD whose names are never
        # accepted is looked at less and less often.
        misses = self._misses[key] = self._misses.get(key, 0) + 1
        return Result(requeue_after=min(0.1 * 2**misses, 60.0))

    def covers(self, crd: Obj) -> bool:
        """Whether the CRD's kind is tracked (or not wanted, e.g. cluster-scoped ones for
        the namespace controller)."""
        spec = crd.get("spec") or {}
        gk = (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", "")))
        if gk in self._tracked:
            return True
        served = [v["name"] for v in spec.get("versions") or [] if v.get("served", True)]
        if not served:
            return True
        probe = ResourceInfo(f"{gk[0]}/{served[0]}", gk[1], "", spec.get("scope") == "Namespaced", ())
        return not self.wanted(probe)

    def synced(self) -> bool:
        """Every tracked cache has its first listing."""
        return all(inf.has_synced() for _, inf in self.tracked())

    def tracked(self) -> list[tuple[ResourceInfo, Informer]]:
        with self._lock:
            return list(self._tracked.values())

    def lookup(self, api_version: str, kind: str) -> tuple[ResourceInfo, Informer] | None:
        return self._tracked.get((group_of(api_version), kind))


# ---------------------------------------------------------------------- the collector
def _key(info: ResourceInfo, namespace: str, name: str) -> str:
    return "|".join((info.api_version, info.kind, namespace, name))


def _cache_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _refs(obj: Obj) -> list[Obj]:
    return list(obj.get("metadata", {}).get("ownerReferences") or [])


def _gc_view(obj: Obj) -> tuple[Any, ...]:
    meta = obj.get("metadata", {})
    return meta.get("ownerReferences"), meta.get("deletionTimestamp"), meta.get("finalizers")


class GarbageCollector:
    """One queue of objects to look at, keyed `apiVersion|kind|namespace|name`."""

    SOLID, DANGLING, WAITING = "solid", "dangling", "waiting"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.recorder = ctx.recorder("garbage-collector-controller")
        self.controller = Controller("garbage-collector", self.reconcile, workers=2)
        self.kinds = KindWatcher(
            ctx,
            "garbage-collector",
            lambda info: (group_of(info.api_version), info.kind) not in IGNORED_KINDS,
            lambda info, inf: inf.add_handler(self._handler(info)),
        )

    def start(self) -> GarbageCollector:
        self.kinds.start()
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        self.kinds.stop()

    # -- event mapping ------------------------------------------------------------------
    def _handler(self, info: ResourceInfo) -> Handler:
        def handler(etype: str, obj: Obj, old: Obj | None) -> None:
            meta = obj.get("metadata", {})
            ns = meta.get("namespace", "")
            if etype == "DELETED":
                for dep_info, dep in self._dependents(info, obj):
                    self._enqueue(dep_info, dep)
                self._enqueue_owners(obj)  # an owner in foreground deletion may be unblocked
                return
            if etype == "MODIFIED" and old is not None:
                if _gc_view(old) == _gc_view(obj):
                    return
                if _refs(old) != _refs(obj):
                    self._enqueue_owners(old)
            if _refs(obj) or meta.get("deletionTimestamp"):
                self.controller.queue.add(_key(info, ns, meta.get("name", "")))

        return handler

    def _enqueue(self, info: ResourceInfo, obj: Obj) -> None:
        meta = obj["metadata"]
        self.controller.queue.add(_key(info, meta.get("namespace", ""), meta["name"]))

    def _enqueue_owners(self, obj: Obj) -> None:
        ns = obj["metadata"].get("namespace", "")
        for ref in _refs(obj):
            hit = self.kinds.lookup(ref.get("apiVersion", ""), ref.get("kind", ""))
            if hit is not None:
                self.controller.queue.add(_key(hit[0], ns if hit[0].namespaced else "", ref.get("name", "")))

    def _dependents(self, info: ResourceInfo, owner: Obj) -> Iterator[tuple[ResourceInfo, Obj]]:
        """Objects naming `owner` (by uid) among their owners; a namespaced owner can only
        own objects of its own namespace."""
        meta = owner["metadata"]
        uid = meta.get("uid")
        if not uid:
            return
        for dep_info, inf in self.kinds.tracked():
            for dep in inf.cache.by_index("owner", uid):
                if info.namespaced and dep["metadata"].get("namespace") != meta.get("namespace"):
                    continue
                yield dep_info, dep

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, key: str) -> Result | None:
        if not self.kinds.synced():
            return Result(requeue_after=0.2)  # a partial graph could orphan or keep the wrong objects
        api_version, kind, ns, name = key.split("|")
        hit = self.kinds.lookup(api_version, kind)
        if hit is None:
            return None
        info, inf = hit
        obj = inf.cache.get(_cache_key(ns, name))
        if obj is None:
            return None
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if ORPHAN_FINALIZER in finalizers:
                self._orphan_dependents(info, obj)
            elif FOREGROUND_FINALIZER in finalizers:
                self._delete_dependents_first(info, obj)
            return None  # otherwise it is going already; its dependents follow once it is gone
        if _refs(obj):
            self._collect_if_unowned(info, obj)
        return None

    def _orphan_dependents(self, info: ResourceInfo, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for dep_info, dep in list(self._dependents(info, owner)):
            self._set_meta(dep_info, dep, "ownerReferences", [r for r in _refs(dep) if r.get("uid") != uid])
        self._drop_finalizer(info, owner, ORPHAN_FINALIZER)

    def _delete_dependents_first(self, info: ResourceInfo, owner: Obj) -> None:
        """Each dependent decides for itself (it may have other owners that keep it);
        the owner goes once nothing blocks it."""
        uid = owner["metadata"]["uid"]
        blocking = False
        for dep_info, dep in list(self._dependents(info, owner)):
            self._enqueue(dep_info, dep)
            blocking = blocking or any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in _refs(dep))
        if not blocking:
            self._drop_finalizer(info, owner, FOREGROUND_FINALIZER)

    def _collect_if_unowned(self, info: ResourceInfo, obj: Obj) -> None:
        states: dict[str, list[Obj]] = {self.SOLID: [], self.DANGLING: [], self.WAITING: []}
        for ref in _refs(obj):
            states[self.owner_state(info, obj, ref)].append(ref)
        gone = states[self.DANGLING] + states[self.WAITING]
        if not gone:
            return
        if states[self.SOLID]:
            drop = {r.get("uid") for r in gone}
            self._set_meta(info, obj, "ownerReferences", [r for r in _refs(obj) if r.get("uid") not in drop])
            return
        self._delete(info, obj, self._propagation(info, obj, bool(states[self.WAITING])))

    def _propagation(self, info: ResourceInfo, obj: Obj, owner_waiting: bool) -> str:
        """Foreground when an owner waits on us and we have blocking dependents of our
        own (so that the wait propagates); otherwise what our own finalizers ask."""
        uid = obj["metadata"].get("uid")
        if owner_waiting and any(
            r.get("uid") == uid and r.get("blockOwnerDeletion")
            for _, d in self._dependents(info, obj)
            for r in _refs(d)
        ):
            return "Foreground"
        finalizers = obj["metadata"].get("finalizers") or []
        if ORPHAN_FINALIZER in finalizers:
            return "Orphan"
        if FOREGROUND_FINALIZER in finalizers:
            return "Foreground"
        return "Background"

    def owner_state(self, info: ResourceInfo, dependent: Obj, ref: Obj) -> str:
        """solid (exists), waiting (exists, deleting its dependents first) or dangling
        (gone, or never was). Owners that cannot be resolved count as solid: the
        dependent is kept."""
        api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
        hit = self.kinds.lookup(api_version, kind)
        if hit is not None:
            owner_info: ResourceInfo | None = hit[0]
        else:
            try:
                owner_info = self.client.resource_info(api_version, kind)
            except errors.NotFound:
                owner_info = None
        if owner_info is None:
            log.info("owner kind %s %s of %s is not served; keeping it", api_version, kind, _describe(dependent))
            return self.SOLID
        if owner_info.namespaced and not info.namespaced:
            self.recorder.event(
                dependent,
                WARNING,
                "OwnerRefInvalidNamespace",
                f"ownerRef [{api_version}/{kind}, name: {ref.get('name')}, uid: {ref.get('uid')}] is namespaced; "
                "a cluster-scoped object cannot be owned by it",
            )
            return self.SOLID
        ns = dependent["metadata"].get("namespace", "") if owner_info.namespaced else ""
        owner = hit[1].cache.get(_cache_key(ns, ref.get("name", ""))) if hit is not None else None
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            owner = self._live(owner_info, ns, ref.get("name", ""))  # the cache may lag behind
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return self.DANGLING
        meta = owner["metadata"]
        if meta.get("deletionTimestamp") and FOREGROUND_FINALIZER in (meta.get("finalizers") or []):
            return self.WAITING
        return self.SOLID

    # -- writes ---------------------------------------------------------------------------
    def _live(self, info: ResourceInfo, namespace: str, name: str) -> Obj | None:
        try:
            return self.client.get(info.api_version, info.kind, name, namespace)
        except errors.NotFound:
            return None

    def _set_meta(self, info: ResourceInfo, obj: Obj, field: str, value: list[Any]) -> None:
        """A merge patch pinned to the resourceVersion we decided on (Conflict: look again)."""
        meta = obj["metadata"]
        patch = {"metadata": {field: value or None, "resourceVersion": meta.get("resourceVersion")}}
        try:
            self.client.patch(
                info.api_version, info.kind, meta["name"], patch, meta.get("namespace", ""), field_manager=FIELD_MANAGER
            )
        except errors.NotFound:
            pass

    def _drop_finalizer(self, info: ResourceInfo, obj: Obj, finalizer: str) -> None:
        self._set_meta(info, obj, "finalizers", [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer])

    def _delete(self, info: ResourceInfo, obj: Obj, policy: str) -> None:
        meta = obj["metadata"]
        log.debug("garbage-collecting %s (%s)", _describe(obj), policy)
        try:
            self.client.delete(
                info.api_version,
                info.kind,
                meta["name"],
                meta.get("namespace", ""),
                propagation_policy=policy,
                precondition_uid=meta.get("uid"),
            )
        except errors.NotFound:
            pass
        except errors.Conflict:
            pass  # a new object took the name: not ours to collect


def _describe(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}".replace(" /", " ")


def new(ctx: ControllerContext) -> GarbageCollector:
    return GarbageCollector(ctx)
