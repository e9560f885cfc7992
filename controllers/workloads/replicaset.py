"""The ReplicaSet controller: keeps `spec.replicas` live pods matching a ReplicaSet's
selector, as kube-controller-manager's does.

It adopts matching orphan pods and releases owned pods whose labels stop matching;
creates missing pods from the template in slow-start batches (1, 2, 4, ...) so a template
that cannot be created fails once rather than hundreds of times; deletes surplus pods in
Kubernetes' order (unscheduled, pending, not-ready, cheap, doubled-up, recently ready,
restarting, young first); and remembers what it asked for (expectations) so a burst of
creations is not issued twice while the informer catches up. Status carries replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas (ready for minReadySeconds, with a
requeue when the next pod gets there), observedGeneration and the ReplicaFailure
condition."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from controllers import errors
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Result, object_key
from controllers.workloads import rollout
from controllers.workloads.common import (
    controller_of,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    parse_time,
    pod_condition,
    pod_from_template,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

RS_API, RS_KIND = rollout.APPS, "ReplicaSet"
BURST_REPLICAS = 500  # most pods created or deleted in one sync, as Kubernetes
EXPECTATIONS_TTL = 300.0  # an expectation never met (a lost event) stops blocking after this
# Pod events wake their ReplicaSet this much later, so a storm of pod updates (1,000 pods
# starting) costs one sync per batch instead of one per event.
POD_EVENT_BATCH = 0.05
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


# ---------------------------------------------------------------------------- expectations
@dataclass
class _Pending:
    adds: int
    deletes: set[str]
    since: float


class Expectations:
    """Pod creations and deletions an owner asked for and has not yet seen in its cache
    (client-go's UIDTrackingControllerExpectations). While any is outstanding the cache is
    behind: acting on it would create or delete the same pods twice."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[str, _Pending] = {}

    def expect_creations(self, key: str, count: int) -> None:
        with self._lock:
            self._items[key] = _Pending(count, set(), time.monotonic())

    def expect_deletions(self, key: str, pod_keys: set[str]) -> None:
        with self._lock:
            self._items[key] = _Pending(0, set(pod_keys), time.monotonic())

    def creation_observed(self, key: str, count: int = 1) -> None:
        """A pod of `key` appeared (or `count` creations were never issued)."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                item.adds -= count

    def deletion_observed(self, key: str, pod_key: str) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                item.deletes.discard(pod_key)

    def satisfied(self, key: str) -> bool:
        with self._lock:
            item = self._items.get(key)
            if item is None or (item.adds <= 0 and not item.deletes):
                return True
            if time.monotonic() - item.since > self.ttl:
                del self._items[key]
                return True
            return False

    def pending_deletions(self, key: str) -> set[str]:
        with self._lock:
            item = self._items.get(key)
            return set(item.deletes) if item is not None else set()

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


# ---------------------------------------------------------------------------- which pods go first
@dataclass(frozen=True)
class _Candidate:
    """What Kubernetes' ActivePodsWithRanks compares, read once per pod."""

    pod: Obj
    assigned: bool
    phase: int
    ready: bool
    cost: int
    colocated: int
    ready_since: float | None
    restarts: tuple[int, int]
    created: float | None
    uid: str


def pods_to_delete(pods: list[Obj], related: list[Obj], count: int, now: dt.datetime | None = None) -> list[Obj]:
    """The `count` pods to remove first: unassigned before assigned, Pending before Unknown
    before Running, not ready before ready, lower pod-deletion-cost first, more pods of the
    same workload on the node first, ready more recently first, more restarts first, newer
    first (times compared in log2 buckets of age, as LogarithmicScaleDown does)."""
    if count >= len(pods):
        return list(pods)
    on_node = Counter((p.get("spec") or {}).get("nodeName", "") for p in related if is_pod_active(p))
    now_s = (now or dt.datetime.now(dt.UTC)).timestamp()
    candidates = [_candidate(p, on_node[(p.get("spec") or {}).get("nodeName", "")]) for p in pods]
    candidates.sort(key=functools.cmp_to_key(lambda a, b: _compare(a, b, now_s)))
    return [c.pod for c in candidates[:count]]


def _candidate(pod: Obj, colocated: int) -> _Candidate:
    status = pod.get("status") or {}
    ready = is_pod_ready(pod)
    ready_cond = pod_condition(pod, "Ready") if ready else None
    try:
        cost = int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
    except ValueError:
        cost = 0
    return _Candidate(
        pod=pod,
        assigned=bool((pod.get("spec") or {}).get("nodeName")),
        phase=_PHASE_ORDER.get(status.get("phase", ""), 0),
        ready=ready,
        cost=cost,
        colocated=colocated,
        ready_since=_epoch(ready_cond.get("lastTransitionTime") if ready_cond else None),
        restarts=_max_restarts(pod),
        created=_epoch(pod["metadata"].get("creationTimestamp")),
        uid=pod["metadata"].get("uid", ""),
    )


def _epoch(value: str | None) -> float | None:
    t = parse_time(value)
    return t.timestamp() if t is not None else None


def _max_restarts(pod: Obj) -> tuple[int, int]:
    """(most restarts of a regular container, of a sidecar init container)."""
    status = pod.get("status") or {}
    regular = max((int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []), default=0)
    sidecars = {
        c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or [] if c.get("restartPolicy") == "Always"
    }
    init = [c for c in status.get("initContainerStatuses") or [] if c.get("name") in sidecars]
    sidecar = max((int(c.get("restartCount") or 0) for c in init), default=0)
    return regular, sidecar


def _compare(a: _Candidate, b: _Candidate, now: float) -> int:
    """Negative when `a` should be deleted before `b`."""
    if a.assigned != b.assigned:
        return -1 if not a.assigned else 1
    if a.phase != b.phase:
        return -1 if a.phase < b.phase else 1
    if a.ready != b.ready:
        return -1 if not a.ready else 1
    if a.cost != b.cost:
        return -1 if a.cost < b.cost else 1
    if a.colocated != b.colocated:
        return -1 if a.colocated > b.colocated else 1
    if a.ready and b.ready and a.ready_since != b.ready_since:
        return _newer_first(a.ready_since, b.ready_since, a.uid, b.uid, now)
    if a.restarts != b.restarts:
        return -1 if a.restarts > b.restarts else 1
    if a.created != b.created:
        return _newer_first(a.created, b.created, a.uid, b.uid, now)
    return 0


def _newer_first(ta: float | None, tb: float | None, ua: str, ub: str, now: float) -> int:
    """Missing time first, then the younger age bucket; one bucket is ordered by uid."""
    if ta is None or tb is None:
        return -1 if ta is None else 1
    diff = _age_bucket(ta, now) - _age_bucket(tb, now)
    if diff == 0:
        return (ua > ub) - (ua < ub)
    return -1 if diff < 0 else 1


def _age_bucket(t: float, now: float) -> int:
    age_ns = (now - t) * 1e9
    return -1 if age_ns <= 0 else int(math.log2(age_ns))


# ---------------------------------------------------------------------------- status
def calculate_status(rs: Obj, pods: list[Obj], failure: errors.APIError | None, creating: bool) -> Obj:
    """The status `pods` (the claimed live pods) give, with ReplicaFailure set while
    creating or deleting fails and cleared once it works again."""
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    now = dt.datetime.now(dt.UTC)
    ready = [p for p in pods if is_pod_ready(p)]
    status: Obj = {
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(
            1 for p in pods if template_labels.items() <= (p["metadata"].get("labels") or {}).items()
        ),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready)
        if min_ready <= 0
        else sum(1 for p in ready if is_pod_available(p, min_ready, now)),
        "observedGeneration": int(rs["metadata"].get("generation") or 0),
    }
    old = rs.get("status") or {}
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if failure is not None:
        reason = "FailedCreate" if creating else "FailedDelete"
        now_s = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        cond = {
            "type": rollout.REPLICA_FAILURE,
            "status": "True",
            "lastTransitionTime": now_s,
            "reason": reason,
            "message": failure.message,
        }
        rollout.set_condition(status, cond)
    else:
        rollout.remove_condition(status, rollout.REPLICA_FAILURE)
    out = {k: v for k, v in status.items() if v or k == "replicas"}
    return out


def next_available_in(rs: Obj, pods: list[Obj]) -> float | None:
    """Seconds until the next ready pod has been ready for minReadySeconds, if one is waiting."""
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    if min_ready <= 0:
        return None
    now = time.time()
    waits = []
    for pod in pods:
        cond = pod_condition(pod, "Ready")
        since = _epoch(cond.get("lastTransitionTime")) if cond and cond.get("status") == "True" else None
        if since is not None and now - since < min_ready:
            waits.append(since + min_ready - now)
    return min(waits) + 0.1 if waits else None


# ---------------------------------------------------------------------------- the controller
class ReplicaSetController:
    """One Controller over ReplicaSets, fed by ReplicaSet and Pod events."""

    def __init__(self, ctx: ControllerContext, workers: int = 4) -> None:
        self.client = ctx.client
        self.recorder = ctx.recorder("replicaset-controller")
        self.replicasets = ctx.informers.informer(RS_API, RS_KIND)
        self.pods = ctx.informers.informer("v1", "Pod")
        self.pods.cache.add_index(rollout.ORPHAN_INDEX, rollout.index_orphans)
        self.expectations = Expectations()
        self.selectors = rollout.SelectorCache()
        self._lock = threading.Lock()
        self._waking: set[str] = set()  # keys with a batched pod-event sync pending
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="replicaset-create")
        self.controller = Controller("replicaset", self.reconcile, workers)
        self.replicasets.add_handler(self._on_replicaset)
        self.pods.add_handler(self._on_pod)

    def start(self) -> ReplicaSetController:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- events ------------------------------------------------------------------------
    def _owner_key(self, pod: Obj) -> str | None:
        """The key of the ReplicaSet controlling `pod`, if that is a ReplicaSet we know."""
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != RS_KIND or not str(ref.get("apiVersion", "")).startswith("apps/"):
            return None
        key = f"{pod['metadata'].get('namespace', '')}/{ref.get('name', '')}"
        rs = self.replicasets.cache.get(key)
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _selecting(self, pod: Obj) -> list[str]:
        """ReplicaSets that would adopt this orphan pod."""
        labels = pod["metadata"].get("labels") or {}
        namespace = pod["metadata"].get("namespace", "")
        return [
            object_key(rs)
            for rs in self.replicasets.cache.list(namespace)
            if self.selectors.of(rs).matches(labels) and not rs["metadata"].get("deletionTimestamp")
        ]

    def _on_replicaset(self, etype: str, rs: Obj, old: Obj | None) -> None:
        """A spec change syncs at once; a status or metadata write (mostly our own) rides
        with the batched pod events."""
        key = object_key(rs)
        if (
            etype == "MODIFIED"
            and old is not None
            and old["metadata"].get("generation") == rs["metadata"].get("generation")
        ):
            self._wake(key)
        else:
            self.controller.queue.add(key)

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        """Count observed creations and deletions against expectations, and wake the
        ReplicaSets that own the pod, owned it, or could adopt it."""
        owner = self._owner_key(pod)
        if owner is not None:
            if etype == "DELETED" or (_terminating(pod) and not _terminating(old)):
                self.expectations.deletion_observed(owner, object_key(pod))
            elif etype == "ADDED":
                self.expectations.creation_observed(owner)
        keys = {owner} if owner is not None else set()
        changed = _claim_changed(pod, old)
        if changed and etype != "DELETED" and controller_of(pod) is None and not _terminating(pod):
            keys.update(self._selecting(pod))
        if old is not None and changed:
            old_owner = self._owner_key(old)
            if old_owner is not None:
                keys.add(old_owner)
        for key in keys:
            self._wake(key)

    def _wake(self, key: str) -> None:
        """Sync `key` soon; pod events arriving meanwhile ride along with this sync."""
        with self._lock:
            if key in self._waking:
                return
            self._waking.add(key)
        self.controller.queue.add_after(key, POD_EVENT_BATCH)

    # -- reconcile -------------------------------------------------------------------------
    def reconcile(self, key: str) -> Result | None:
        with self._lock:
            self._waking.discard(key)
        cached = self.replicasets.cache.get(key)
        if cached is None:
            self.expectations.forget(key)
            return None
        rs = {**cached, "apiVersion": RS_API, "kind": RS_KIND}
        needs_sync = self.expectations.satisfied(key)
        pods = self._claim_pods(rs)
        failure: errors.APIError | None = None
        creating = len(pods) < rollout.spec_replicas(rs)
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            failure = self._manage(key, rs, pods)
        pending = self.expectations.pending_deletions(key)
        counted = [p for p in pods if object_key(p) not in pending] if pending else pods
        status = calculate_status(rs, counted, failure, creating)
        if status != (cached.get("status") or {}):
            self._write_status(cached, status)
        if failure is not None:
            raise failure
        wait = next_available_in(rs, counted)
        return Result(requeue_after=wait) if wait is not None else None

    def _claim_pods(self, rs: Obj) -> list[Obj]:
        """Live pods this ReplicaSet controls once orphans are adopted and strays released."""
        namespace = rs["metadata"].get("namespace", "")
        owned = self.pods.cache.by_index("owner", rs["metadata"]["uid"])
        orphans = self.pods.cache.by_index(rollout.ORPHAN_INDEX, namespace)
        candidates = {p["metadata"]["uid"]: p for p in owned + orphans if is_pod_active(p)}
        return rollout.claim(self.client, rs, self.selectors.of(rs), candidates.values(), "v1", "Pod")

    def _manage(self, key: str, rs: Obj, pods: list[Obj]) -> errors.APIError | None:
        diff = len(pods) - rollout.spec_replicas(rs)
        if diff < 0:
            return self._create(key, rs, min(-diff, BURST_REPLICAS))
        if diff > 0:
            return self._delete(key, rs, pods, min(diff, BURST_REPLICAS))
        return None

    def _create(self, key: str, rs: Obj, count: int) -> errors.APIError | None:
        self.expectations.expect_creations(key, count)
        created, failure = slow_start_batch(count, lambda: self._create_pod(key, rs), self._pool)
        if created < count:
            self.expectations.creation_observed(key, count - created)
        return failure

    def _create_pod(self, key: str, rs: Obj) -> None:
        pod = pod_from_template(rs["spec"]["template"], rs, generate_name=f"{rollout.name_of(rs)}-")
        try:
            created = self.client.create(pod, field_manager=rollout.FIELD_MANAGER)
        except errors.Forbidden as exc:
            if exc.kind == "namespaces":  # the namespace is terminating: nothing to report
                self.expectations.creation_observed(key)
                return
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            raise
        except errors.APIError as exc:
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    def _delete(self, key: str, rs: Obj, pods: list[Obj], count: int) -> errors.APIError | None:
        victims = pods_to_delete(pods, self._related_pods(rs), count)
        self.expectations.expect_deletions(key, {object_key(p) for p in victims})
        failure: errors.APIError | None = None
        for pod in victims:
            meta = pod["metadata"]
            try:
                self.client.delete("v1", "Pod", meta["name"], meta.get("namespace", ""))
            except errors.NotFound:
                self.expectations.deletion_observed(key, object_key(pod))
                continue
            except errors.APIError as exc:
                self.expectations.deletion_observed(key, object_key(pod))
                self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
                failure = failure or exc
                continue
            self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
        return failure

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Live pods of every ReplicaSet under the same controller (a Deployment's revisions),
        so scale-down spreads the workload's pods across nodes."""
        ref = controller_of(rs)
        if ref is None:
            return []
        pods: list[Obj] = []
        for sibling in self.replicasets.cache.by_index("owner", str(ref.get("uid"))):
            sibling_ref = controller_of(sibling)
            if sibling_ref is None or sibling_ref.get("uid") != ref.get("uid"):
                continue
            uid = sibling["metadata"]["uid"]
            pods.extend(
                p
                for p in self.pods.cache.by_index("owner", uid)
                if is_pod_active(p) and (controller_of(p) or {}).get("uid") == uid
            )
        return pods

    def _write_status(self, cached: Obj, status: Obj) -> None:
        """An unconditional status update (ReplicaSets allow it): this controller is the only
        writer of the status, one sync at a time, each from a cache at least as new as the
        last, so a resourceVersion check would only fail when the cache lags our own write."""
        meta = {k: v for k, v in cached["metadata"].items() if k != "resourceVersion"}
        obj = {**cached, "apiVersion": RS_API, "kind": RS_KIND, "metadata": meta, "status": status}
        try:
            self.client.update_status(obj, field_manager=rollout.FIELD_MANAGER)
        except errors.NotFound:
            pass


def _terminating(pod: Obj | None) -> bool:
    return pod is not None and bool(pod["metadata"].get("deletionTimestamp"))


def _claim_changed(pod: Obj, old: Obj | None) -> bool:
    """Whether a change can move the pod between owners: labels or its controller."""
    if old is None:
        return True
    return (pod["metadata"].get("labels") or {}) != (old["metadata"].get("labels") or {}) or controller_of(
        pod
    ) != controller_of(old)


def slow_start_batch(
    count: int, fn: Callable[[], None], pool: ThreadPoolExecutor, initial: int = 1
) -> tuple[int, errors.APIError | None]:
    """Call `fn` `count` times in concurrent batches of 1, 2, 4, ...; stop after the first
    batch with a failure. Returns (successes, first failure)."""
    done = 0
    size = min(count, initial)
    while done < count:
        futures = [pool.submit(fn) for _ in range(size)]
        failure: errors.APIError | None = None
        for fut in futures:
            try:
                fut.result()
                done += 1
            except errors.APIError as exc:
                failure = failure or exc
        if failure is not None:
            return done, failure
        size = min(2 * size, count - done)
    return done, None


def new(ctx: ControllerContext) -> ReplicaSetController:
    return ReplicaSetController(ctx)
