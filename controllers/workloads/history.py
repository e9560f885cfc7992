"""What the StatefulSet, DaemonSet and Job controllers share beyond `common`: the history of
a pod template as ControllerRevisions, the record of a controller's own recent writes, and
when a ready pod becomes available.

ControllerRevisions are how StatefulSets and DaemonSets remember the templates they rolled
between: each holds the template as a patch (`{"spec": {"template": {..., "$patch":
"replace"}}}`, as Kubernetes stores it) and a revision number; pods carry the revision's
hash in the `controller-revision-hash` label; `kubectl rollout history|undo` read them.

`PendingWrites` exists because informer caches lag: a controller that counts its pods from
a cache that has not yet shown its own creates would create a second pod for the same slot
(client-go calls the remedy "expectations")."""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any

from controllers import errors
from controllers.client import Client
from controllers.runtime import Informer, object_key
from controllers.workloads.common import controller_ref, is_controlled_by, is_pod_available, parse_time, pod_condition
from controllers.workloads.rollout import semantic, template_hash

Obj = dict[str, Any]

REVISION_HASH_LABEL = "controller-revision-hash"  # on pods
HASH_LABEL = "controller.kubernetes.io/hash"  # on ControllerRevisions
_MAX_COLLISIONS = 16


def seconds_until_available(pod: Obj, min_ready_seconds: int) -> float | None:
    """How long until a ready pod has been ready for minReadySeconds, or None when it is
    not ready or already available. Nothing announces that moment: controllers that wait
    for it ask to be requeued then."""
    ready = pod_condition(pod, "Ready")
    if min_ready_seconds <= 0 or ready is None or ready.get("status") != "True":
        return None
    if is_pod_available(pod, min_ready_seconds):
        return None
    since = parse_time(ready.get("lastTransitionTime")) or dt.datetime.now(dt.UTC)
    return max(0.05, min_ready_seconds - (dt.datetime.now(dt.UTC) - since).total_seconds())


def template_patch(owner: Obj) -> Obj:
    """The revision data of `owner`: its pod template, as a replacing patch."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def revision_hash(revision: Obj) -> str:
    """The hash a revision was stored under (its label, else the suffix of its name)."""
    labels = revision.get("metadata", {}).get("labels") or {}
    return labels.get(HASH_LABEL) or revision["metadata"]["name"].rpartition("-")[2]


@dataclass(frozen=True)
class Revisions:
    """The revisions of one owner: the one its pods roll from, the one they roll to, all."""

    current: Obj
    update: Obj
    collision_count: int
    all: list[Obj]


class History:
    """Finds, creates and prunes the ControllerRevisions of StatefulSets and DaemonSets."""

    def __init__(self, client: Client, revisions: Informer, manager: str) -> None:
        self.client = client
        self.informer = revisions
        self.manager = manager

    def owned(self, owner: Obj) -> list[Obj]:
        """The owner's revisions, oldest revision number first."""
        revs = [
            r for r in self.informer.cache.by_index("owner", owner["metadata"]["uid"]) if is_controlled_by(r, owner)
        ]
        return sorted(revs, key=lambda r: int(r.get("revision") or 0))

    def sync(self, owner: Obj) -> Revisions:
        """Make sure a revision of the owner's current template exists and is the newest;
        a template rolled back to an older revision renumbers that revision rather than
        storing a duplicate."""
        revs = self.owned(owner)
        data = template_patch(owner)
        next_number = (int(revs[-1].get("revision") or 0) + 1) if revs else 1
        status = owner.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        equal = [r for r in revs if semantic(r.get("data")) == semantic(data)]
        if equal and equal[-1] is revs[-1]:
            update = equal[-1]
        elif equal:
            bumped = copy.deepcopy(equal[-1])
            bumped["revision"] = next_number
            update = self.client.update(bumped, field_manager=self.manager)
            revs = [update if r is equal[-1] else r for r in revs]
        else:
            update, collisions = self._create(owner, data, next_number, collisions)
            revs.append(update)
        current_name = status.get("currentRevision")
        current = next((r for r in revs if r["metadata"]["name"] == current_name), update)
        return Revisions(current, update, collisions, revs)

    def _create(self, owner: Obj, data: Obj, number: int, collisions: int) -> tuple[Obj, int]:
        meta = owner["metadata"]
        template_labels = ((owner.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        for _ in range(_MAX_COLLISIONS):
            digest = template_hash(data, collisions)
            name = f"{meta['name']}-{digest}"
            revision: Obj = {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": name,
                    "namespace": meta.get("namespace", "default"),
                    "labels": {**template_labels, HASH_LABEL: digest},
                    "ownerReferences": [controller_ref(owner)],
                },
                "data": data,
                "revision": number,
            }
            try:
                return self.client.create(revision, field_manager=self.manager), collisions
            except errors.AlreadyExists:
                existing = self.client.get("apps/v1", "ControllerRevision", name, meta["namespace"])
                if semantic(existing.get("data")) == semantic(data) and is_controlled_by(existing, owner):
                    return existing, collisions  # our own create, not yet in the cache
                collisions += 1
        raise errors.Conflict(f"{meta['name']}: no free ControllerRevision name after {collisions} hash collisions")

    def truncate(self, owner: Obj, revisions: Revisions, live: set[str]) -> None:
        """Delete the oldest revisions beyond revisionHistoryLimit that are neither current,
        nor the update, nor named in `live` (the revisions pods still run)."""
        limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
        keep = {revisions.current["metadata"]["name"], revisions.update["metadata"]["name"], *live}
        history = [r for r in revisions.all if r["metadata"]["name"] not in keep]
        for rev in history[: max(0, len(history) - limit)]:
            try:
                self.client.delete(
                    "apps/v1", "ControllerRevision", rev["metadata"]["name"], rev["metadata"]["namespace"]
                )
            except errors.NotFound:
                pass


def _rv(obj: Obj | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class PendingWrites:
    """A controller's own writes that its informer cache has not shown yet, per owner.

    Record the object each create, update or delete returned; `view` lays those over the
    cached list until the cache has caught up with them (the embedded store's
    resourceVersion is one global counter, so "caught up" is a comparison), or until `ttl`
    seconds have passed, so a lost event cannot wedge a controller."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        # owner key -> object key -> (object as written, deleted outright, expiry)
        self._writes: dict[str, dict[str, tuple[Obj, bool, float]]] = {}

    def wrote(self, owner: str, obj: Obj) -> None:
        """Record a create or update (or a delete that left the object terminating)."""
        self._put(owner, obj, gone=False)

    def deleted(self, owner: str, obj: Obj) -> None:
        """Record a delete; `obj` is what the API answered (terminating, or gone)."""
        self._put(owner, obj, gone=not obj.get("metadata", {}).get("deletionTimestamp"))

    def removed(self, owner: str, obj: Obj) -> None:
        """Record a write that removed the object (the last finalizer of a deleted one)."""
        self._put(owner, obj, gone=True)

    def _put(self, owner: str, obj: Obj, gone: bool) -> None:
        with self._lock:
            self._writes.setdefault(owner, {})[object_key(obj)] = (obj, gone, time.monotonic() + self.ttl)

    def forget(self, owner: str) -> None:
        with self._lock:
            self._writes.pop(owner, None)

    def view(self, owner: str, cached: list[Obj], informer: Informer) -> list[Obj]:
        """`cached` (objects from `informer`) as they will look once the cache catches up."""
        now = time.monotonic()
        seen_rv = _rv({"metadata": {"resourceVersion": informer.last_rv}})
        with self._lock:
            writes = self._writes.get(owner)
            if not writes:
                return cached
            out = {object_key(o): o for o in cached}
            for key, (obj, gone, expiry) in list(writes.items()):
                if now > expiry or _caught_up(informer.cache.get(key), obj, gone, seen_rv):
                    del writes[key]
                elif gone:
                    out.pop(key, None)
                else:
                    out[key] = obj
            if not writes:
                del self._writes[owner]
            return list(out.values())


def _caught_up(seen: Obj | None, written: Obj, gone: bool, informer_rv: int) -> bool:
    uid = written.get("metadata", {}).get("uid")
    if gone:
        return seen is None or seen.get("metadata", {}).get("uid") != uid
    if informer_rv >= _rv(written):
        return True
    return seen is not None and (seen.get("metadata", {}).get("uid") != uid or _rv(seen) >= _rv(written))
