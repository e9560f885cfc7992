"""What every workload controller needs about pods and owners, defined once."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from controllers.clock import now_rfc3339

Obj = dict[str, Any]


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None


def controller_ref(owner: Obj, block_owner_deletion: bool = True) -> Obj:
    """The ownerReference a controller puts on what it creates (controller=true)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with controller=true, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def pod_from_template(
    template: Obj, owner: Obj, *, name: str = "", generate_name: str = "", extra_labels: dict[str, str] | None = None
) -> Obj:
    """A Pod built from a pod template, owned by `owner` (as the controllers do it)."""
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update(extra_labels or {})
    meta: Obj = {
        "namespace": owner["metadata"].get("namespace", "default"),
        "labels": labels,
        "ownerReferences": [controller_ref(owner)],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


def pod_condition(pod: Obj, ctype: str) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def is_pod_ready(pod: Obj) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: dt.datetime | None = None) -> bool:
    """Ready for at least minReadySeconds, as the Deployment and ReplicaSet controllers count it."""
    cond = pod_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(cond.get("lastTransitionTime"))
    now = now or dt.datetime.now(dt.UTC)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


def is_pod_active(pod: Obj) -> bool:
    """Not finished and not being deleted: counts toward a controller's replicas."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod.get("metadata", {}).get("deletionTimestamp")


def is_pod_terminating(pod: Obj) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def set_condition(conditions: list[Obj], new: Obj, now: str | None = None) -> list[Obj]:
    """Upsert a status condition by type; lastTransitionTime moves only when status does."""
    now = now or now_rfc3339()
    out = []
    found = False
    for cond in conditions:
        if cond.get("type") == new["type"]:
            found = True
            merged = {**cond, **new}
            if cond.get("status") != new.get("status"):
                merged["lastTransitionTime"] = new.get("lastTransitionTime", now)
            else:
                merged["lastTransitionTime"] = cond.get("lastTransitionTime", now)
            if "lastUpdateTime" in cond or "lastUpdateTime" in new:
                merged["lastUpdateTime"] = new.get("lastUpdateTime", now)
            out.append(merged)
        else:
            out.append(cond)
    if not found:
        out.append({"lastTransitionTime": now, **new})
    return out
