"""What an Application's status means for the outside world: the commit status of the
commit it deploys, and the triggers that fire (named as Argo CD's notification catalog
names them). Pure functions of the Application object (Argo CD's status shape)."""

from __future__ import annotations

from typing import Any, NamedTuple

Obj = dict[str, Any]

TRIGGERS = ("on-sync-running", "on-sync-succeeded", "on-sync-failed", "on-health-degraded", "on-deployed")


class CommitState(NamedTuple):
    sha: str
    state: str  # pending | running | success | failed (GitLab's names)
    description: str


def _status(app: Obj) -> tuple[Obj, Obj, str, str]:
    st = app.get("status") or {}
    op = st.get("operationState") or {}
    return st, op, str(op.get("phase") or ""), str((st.get("health") or {}).get("status") or "")


def _op_revision(op: Obj) -> str:
    return str(
        (op.get("syncResult") or {}).get("revision")
        or ((op.get("operation") or {}).get("sync") or {}).get("revision")
        or ""
    )


def commit_state(app: Obj) -> CommitState | None:
    """pending when a sync starts, running while it applies and waits for health, success
    when Synced and Healthy, failed on a sync error or Degraded health; None otherwise."""
    st, op, phase, health = _status(app)
    synced_rev = str((st.get("sync") or {}).get("revision") or "")
    in_sync = (st.get("sync") or {}).get("status") == "Synced"
    if phase == "Running":
        started = bool((op.get("syncResult") or {}).get("resources"))
        return CommitState(_op_revision(op), "running" if started else "pending", str(op.get("message") or "syncing"))
    if phase in ("Failed", "Error") and _op_revision(op):
        return CommitState(_op_revision(op), "failed", str(op.get("message") or "sync failed")[:255])
    if not synced_rev:
        return None
    if health == "Degraded":
        message = str((st.get("health") or {}).get("message") or "health degraded")
        return CommitState(synced_rev, "failed", message)
    if in_sync and health == "Healthy":
        return CommitState(synced_rev, "success", "Synced and Healthy")
    if in_sync and health == "Progressing" and phase == "Succeeded":
        return CommitState(synced_rev, "running", "waiting for healthy")
    return None


def fired_triggers(app: Obj) -> list[tuple[str, str]]:
    """(trigger, revision) for every trigger whose condition holds now; the caller sends
    each once per revision."""
    st, op, phase, health = _status(app)
    op_rev = _op_revision(op)
    synced_rev = str((st.get("sync") or {}).get("revision") or "")
    out = []
    if phase == "Running" and op_rev:
        out.append(("on-sync-running", op_rev))
    if phase == "Succeeded" and op_rev:
        out.append(("on-sync-succeeded", op_rev))
        if health == "Healthy":
            out.append(("on-deployed", op_rev))
    if phase in ("Failed", "Error") and op_rev:
        out.append(("on-sync-failed", op_rev))
    if health == "Degraded" and synced_rev:
        out.append(("on-health-degraded", synced_rev))
    return out


def event(app: Obj, trigger: str, revision: str, dashboard_url: str = "") -> Obj:
    """The generic webhook's body."""
    st, op, phase, health = _status(app)
    meta = app.get("metadata") or {}
    return {
        "trigger": trigger,
        "app": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "revision": revision,
        "sync": {"status": (st.get("sync") or {}).get("status"), "phase": phase, "message": op.get("message")},
        "health": health,
        "url": dashboard_url,
    }
