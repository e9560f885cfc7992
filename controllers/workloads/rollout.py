"""What the ReplicaSet and Deployment controllers share: claiming children through
controller ownerReferences, and the Deployment's rollout arithmetic (surge and
unavailability bounds, pod-template hashes, revisions, proportional scaling, status and
conditions), written as pure functions over the API's JSON objects so each rule can be
checked on its own.

The rules follow Kubernetes' deployment utilities; where this module is stricter it says
so (the rolling-update bounds count pods a ReplicaSet has not yet removed)."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from collections.abc import Iterable
from typing import Any

import orjson

from controllers import errors
from controllers.client import Client
from controllers.clock import now_rfc3339
from controllers.selectors import LabelSelector, label_selector_from_dict
from controllers.workloads.common import controller_of, controller_ref, parse_time

Obj = dict[str, Any]

FIELD_MANAGER = "kube-controller-manager"
APPS = "apps/v1"

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Deployment annotations that describe the Deployment itself, never copied to its ReplicaSets
# (kubectl's `rollout undo` skips the same set when it copies them back).
NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
REVISION_HISTORY_MAX_CHARS = 2000  # how long revision-history may grow, as in Kubernetes

# Deployment condition types and reasons, as Kubernetes names them.
PROGRESSING, AVAILABLE, REPLICA_FAILURE = "Progressing", "Available", "ReplicaFailure"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

# Index of objects without a controller, by namespace: the candidates for adoption.
ORPHAN_INDEX = "workloads/orphans"

# The alphabet Kubernetes encodes pod-template hashes with (no vowels: no words by accident).
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193


# ---------------------------------------------------------------------------- small readers
def spec_replicas(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_count(obj: Obj | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def name_of(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def annotations_of(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def index_orphans(obj: Obj) -> list[str]:
    """ORPHAN_INDEX: live objects with no controller, keyed by namespace."""
    meta = obj.get("metadata") or {}
    if controller_of(obj) is not None or meta.get("deletionTimestamp"):
        return []
    return [meta.get("namespace", "")]


class SelectorCache:
    """Parsed `spec.selector`s by uid: apps/v1 selectors are immutable, and parsing one for
    every pod event would dominate a busy controller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, LabelSelector] = {}

    def of(self, obj: Obj) -> LabelSelector:
        uid = obj["metadata"].get("uid", "")
        with self._lock:
            sel = self._items.get(uid)
        if sel is None:
            sel = label_selector_from_dict((obj.get("spec") or {}).get("selector"))
            with self._lock:
                if len(self._items) > 10_000:
                    self._items.clear()
                self._items[uid] = sel
        return sel


# ---------------------------------------------------------------------------- ownership
def claim(
    client: Client, owner: Obj, selector: LabelSelector, candidates: Iterable[Obj], api_version: str, kind: str
) -> list[Obj]:
    """The children `owner` controls after adopting matching orphans and releasing owned
    objects whose labels no longer match (controller-runtime's ControllerRefManager).

    A failed adoption or release raises Conflict after the others are done, so the caller
    looks again instead of acting on a partial claim."""
    meta = owner["metadata"]
    deleting = bool(meta.get("deletionTimestamp"))
    claimed: list[Obj] = []
    failed: list[str] = []
    for obj in candidates:
        ref = controller_of(obj)
        labels = obj["metadata"].get("labels") or {}
        if ref is not None:
            if ref.get("uid") != meta["uid"]:
                continue
            if selector.matches(labels):
                claimed.append(obj)
            elif not deleting and _patch_refs(client, obj, _release_ops(obj, meta["uid"]), api_version, kind) is None:
                failed.append(name_of(obj))
            continue
        if deleting or obj["metadata"].get("deletionTimestamp") or not selector.matches(labels):
            continue
        adopted = _patch_refs(client, obj, _adopt_ops(obj, owner), api_version, kind)
        if adopted is None:
            failed.append(name_of(obj))
        elif adopted:
            claimed.append(adopted)
    if failed:
        raise errors.Conflict(f"could not claim {', '.join(sorted(failed))} for {meta['name']}; retrying")
    return claimed


def _adopt_ops(obj: Obj, owner: Obj) -> list[Obj]:
    """A JSON patch adding owner's controller reference, only to the object we looked at."""
    ref = controller_ref(owner)
    ops: list[Obj] = [{"op": "test", "path": "/metadata/uid", "value": obj["metadata"]["uid"]}]
    refs = obj["metadata"].get("ownerReferences")
    if refs:
        ops.append({"op": "test", "path": "/metadata/ownerReferences", "value": refs})
        ops.append({"op": "add", "path": "/metadata/ownerReferences/-", "value": ref})
    else:
        ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": [ref]})
    return ops


def _release_ops(obj: Obj, owner_uid: str) -> list[Obj]:
    refs = obj["metadata"].get("ownerReferences") or []
    i = next(i for i, r in enumerate(refs) if r.get("uid") == owner_uid)
    return [
        {"op": "test", "path": "/metadata/uid", "value": obj["metadata"]["uid"]},
        {"op": "test", "path": f"/metadata/ownerReferences/{i}/uid", "value": owner_uid},
        {"op": "remove", "path": f"/metadata/ownerReferences/{i}"},
    ]


def _patch_refs(client: Client, obj: Obj, ops: list[Obj], api_version: str, kind: str) -> Obj | None:
    """The patched object; {} when it is gone (nothing to claim); None when the patch failed."""
    meta = obj["metadata"]
    try:
        return client.patch(api_version, kind, meta["name"], ops, meta.get("namespace", ""), "json", FIELD_MANAGER)
    except errors.NotFound:
        return {}
    except errors.APIError:
        return None


# ---------------------------------------------------------------------------- surge and unavailability
def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An IntOrString of a rolling update (`3` or `"25%"`) as a number of pods."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        return int(text)
    numerator = int(text[:-1]) * total
    return -(-numerator // 100) if round_up else numerator // 100


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods: surge rounds up, unavailability down, and both
    zero would deadlock a rollout, so unavailability becomes 1."""
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = spec_replicas(d)
    surge = scaled_value(rolling.get("maxSurge", "25%"), desired, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    desired = spec_replicas(d)
    if not is_rolling(d) or desired == 0:
        return 0
    return min(fenceposts(d)[1], desired)


# ---------------------------------------------------------------------------- templates and revisions
def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """The `pod-template-hash` of a pod template: FNV-1a of its canonical JSON (plus the
    collision count once a clash was seen), its decimal digits spelled in Kubernetes' safe
    alphabet, so the same template always names the same ReplicaSet."""
    h = _fnv1a(_FNV_OFFSET, orjson.dumps(semantic(template), option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = _fnv1a(h, int(collision_count).to_bytes(8, "little", signed=False))
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in str(h).encode())


def _fnv1a(h: int, data: bytes) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    """Two pod templates are the same revision when they differ at most in pod-template-hash
    (and in how they spell nothing: `kubectl rollout undo` sends `creationTimestamp: null`)."""
    return semantic(_without_hash(a)) == semantic(_without_hash(b))


def semantic(value: Any) -> Any:
    """JSON as Kubernetes' typed objects compare it: a null, empty map or empty list is the
    same as a missing field."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = semantic(v)
            if v is not None and v != {} and v != []:
                out[k] = v
        return out
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def _without_hash(template: Obj) -> Obj:
    labels = (template.get("metadata") or {}).get("labels") or {}
    if POD_TEMPLATE_HASH not in labels:
        return template
    out = dict(template)
    out["metadata"] = {**template["metadata"], "labels": {k: v for k, v in labels.items() if k != POD_TEMPLATE_HASH}}
    return out


def revision(obj: Obj) -> int:
    try:
        return int(annotations_of(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    """Record on a ReplicaSet the Deployment size it was scaled for (proportional scaling
    reads it back); True when that changed anything."""
    ann = rs["metadata"].setdefault("annotations", {})
    wanted = {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(max_replicas)}
    if all(ann.get(k) == v for k, v in wanted.items()):
        return False
    ann.update(wanted)
    return True


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = annotations_of(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Bring the new ReplicaSet's annotations up to date: the Deployment's own annotations,
    the revision (a ReplicaSet brought back by a rollback gets the newest number and keeps
    its old ones in revision-history), and for a fresh one the replica annotations."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in annotations_of(d).items():
        if k not in NOT_COPIED and ann.get(k) != v:
            ann[k] = v
            changed = True
    old = ann.get(REVISION, "")
    try:
        old_revision = int(old) if old else 0
    except ValueError:
        return changed
    if old_revision < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old:
            ann[REVISION_HISTORY] = _append_history(ann.get(REVISION_HISTORY, ""), old)
    if not exists:
        changed = set_replicas_annotations(rs, spec_replicas(d), spec_replicas(d) + max_surge(d)) or changed
    return changed


def _append_history(history: str, old: str) -> str:
    """Append a revision to the comma-separated history, dropping the oldest past the limit."""
    revisions = [r for r in history.split(",") if r] + [old]
    while len(",".join(revisions)) > REVISION_HISTORY_MAX_CHARS and len(revisions) > 1:
        revisions.pop(0)
    return ",".join(revisions)


# ---------------------------------------------------------------------------- ReplicaSet sets
def creation_key(rs: Obj) -> tuple[str, str]:
    """Oldest first, ties by name (RFC 3339 strings of one format sort as times)."""
    return (rs["metadata"].get("creationTimestamp", ""), name_of(rs))


def by_creation(rss: Iterable[Obj]) -> list[Obj]:
    return sorted(rss, key=creation_key)


def by_revision(rss: Iterable[Obj]) -> list[Obj]:
    return sorted(rss, key=lambda rs: (revision(rs), *creation_key(rs)))


def active(rss: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and spec_replicas(rs) > 0]


def find_new_rs(d: Obj, rss: Iterable[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's (oldest: a hash collision
    may have made a second one)."""
    template = d["spec"]["template"]
    for rs in by_creation(rss):
        if equal_ignore_hash(rs["spec"]["template"], template):
            return rs
    return None


def spec_total(rss: Iterable[Obj]) -> int:
    return sum(spec_replicas(rs) for rs in rss)


def pods_upper_bound(rs: Obj) -> int:
    """Pods a ReplicaSet has or is about to have: its spec, or its last counted pods while it
    has not yet removed a surplus. Kubernetes counts only the spec; counting both keeps the
    surge bound true at every moment rather than once the ReplicaSet controller catches up."""
    return max(spec_replicas(rs), status_count(rs, "replicas"))


def available_after_scaling(rs: Obj) -> int:
    """Available pods a ReplicaSet keeps once it has applied its spec (it removes not-ready
    pods first): the unavailability bound holds even before its status catches up."""
    return min(status_count(rs, "availableReplicas"), spec_replicas(rs))


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now: Recreate jumps to the full size; a rolling
    update grows it only while the total stays within replicas + maxSurge."""
    desired = spec_replicas(d)
    if not is_rolling(d):
        return desired
    current = sum(pods_upper_bound(rs) for rs in all_rss)
    max_total = desired + max_surge(d)
    if current >= max_total:
        return spec_replicas(new_rs)
    return spec_replicas(new_rs) + min(max_total - current, desired - spec_replicas(new_rs))


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The only ReplicaSet with pods (or the newest when none has any); None when several have."""
    newest_first = sorted(old_rss, key=creation_key, reverse=True)
    running = active([*newest_first, new_rs])
    if len(running) == 1:
        return running[0]
    if running:
        return None
    return new_rs if new_rs is not None else (newest_first[0] if newest_first else None)


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The new ReplicaSet is full-size and fully available for the Deployment's size."""
    if rs is None:
        return False
    desired = spec_replicas(d)
    return (
        annotations_of(rs).get(DESIRED_REPLICAS) == str(desired)
        and spec_replicas(rs) == desired
        and status_count(rs, "availableReplicas") == desired
    )


def proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    """This ReplicaSet's share of a change of the Deployment's size, in proportion to its
    size for the size it was last scaled for (the max-replicas annotation)."""
    size = spec_replicas(rs)
    if size == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _fraction(rs: Obj, d: Obj) -> int:
    size = spec_replicas(rs)
    if spec_replicas(d) == 0:
        return -size
    max_now = spec_replicas(d) + max_surge(d)
    try:
        max_before = int(annotations_of(rs).get(MAX_REPLICAS, "0"))
    except ValueError:
        max_before = 0
    if max_before == 0:
        max_before = status_count(d, "replicas")
        if max_before == 0:
            return 0
    return int(size * max_now / max_before + 0.5) - size


def sorted_for_scaling(rss: list[Obj], up: bool) -> list[Obj]:
    """Largest first; among equals the newest first when growing, the oldest when shrinking."""
    ordered = by_creation(rss)
    if up:
        ordered.reverse()
    return sorted(ordered, key=spec_replicas, reverse=True)


# ---------------------------------------------------------------------------- conditions
def new_condition(ctype: str, status: str, reason: str, message: str, now: str | None = None) -> Obj:
    now = now or now_rfc3339()
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def get_condition(status: Obj | None, ctype: str) -> Obj | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def set_condition(status: Obj, cond: Obj) -> None:
    """Kubernetes' condition rule: the same status and reason change nothing (the times
    stay); the same status with a new reason keeps lastTransitionTime."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"]:
        if current.get("reason") == cond.get("reason"):
            return
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime", cond.get("lastTransitionTime"))}
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: Obj, ctype: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


# ---------------------------------------------------------------------------- Deployment status
def has_progress_deadline(d: Obj) -> bool:
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and int(deadline) != 2**31 - 1


def calculate_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> Obj:
    """The Deployment status its ReplicaSets add up to (conditions other than Available are
    carried over for the caller to adjust)."""
    available = sum(status_count(rs, "availableReplicas") for rs in all_rss)
    status: Obj = {
        "observedGeneration": int(d["metadata"].get("generation") or 0),
        "replicas": sum(status_count(rs, "replicas") for rs in all_rss),
        "updatedReplicas": status_count(new_rs, "replicas"),
        "readyReplicas": sum(status_count(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(spec_total(all_rss) - available, 0),
    }
    old = d.get("status") or {}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if available >= spec_replicas(d) - max_unavailable(d):
        cond = new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.")
    else:
        cond = new_condition(AVAILABLE, "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.")
    set_condition(status, cond)
    return status


def compact_status(status: Obj) -> Obj:
    """Drop zero counters, as the API's omitempty JSON does (what `kubectl get -o yaml` shows)."""
    return {k: v for k, v in status.items() if not (isinstance(v, int) and v == 0 and k != "collisionCount")}


def deployment_complete(d: Obj, status: Obj) -> bool:
    desired = spec_replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == desired
        and int(status.get("replicas") or 0) == desired
        and int(status.get("availableReplicas") or 0) == desired
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0)
    )


def deployment_progressing(d: Obj, new: Obj) -> bool:
    """More updated, ready or available pods, or fewer old ones, than the last status said."""
    old = d.get("status") or {}

    def n(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)

    return (
        n(new, "updatedReplicas") > n(old, "updatedReplicas")
        or n(new, "replicas") - n(new, "updatedReplicas") < n(old, "replicas") - n(old, "updatedReplicas")
        or n(new, "readyReplicas") > n(old, "readyReplicas")
        or n(new, "availableReplicas") > n(old, "availableReplicas")
    )


def progress_deadline_left(d: Obj, status: Obj, now: dt.datetime) -> float | None:
    """Seconds until the rollout times out (<= 0: it has); None when no deadline is running."""
    if not has_progress_deadline(d):
        return None
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.get("reason") in (NEW_RS_AVAILABLE, TIMED_OUT):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    deadline = int(d["spec"]["progressDeadlineSeconds"])
    return (since - now).total_seconds() + deadline


def deployment_timed_out(d: Obj, status: Obj, now: dt.datetime) -> bool:
    cond = get_condition(status, PROGRESSING)
    if cond is not None and cond.get("reason") == TIMED_OUT:
        return True
    left = progress_deadline_left(d, status, now)
    return left is not None and left < 0


def replica_failure(all_rss: list[Obj], new_rs: Obj | None) -> Obj | None:
    """The ReplicaFailure a Deployment shows: the new ReplicaSet's first, else an old one's."""
    for rs in ([new_rs] if new_rs is not None else []) + all_rss:
        cond = get_condition(rs.get("status"), REPLICA_FAILURE)
        if cond is not None:
            return {
                "type": REPLICA_FAILURE,
                "status": cond.get("status", "True"),
                "lastUpdateTime": cond.get("lastTransitionTime"),
                "lastTransitionTime": cond.get("lastTransitionTime"),
                "reason": cond.get("reason", ""),
                "message": cond.get("message", ""),
            }
    return None
