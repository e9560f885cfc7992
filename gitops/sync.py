"""The sync operation: phases, waves, hooks and prune, one step per reconcile.

A sync is a plan of tasks ordered by (phase, wave, kind, name). Each call to `step`
advances it as far as it can without waiting: it applies the next group of tasks, or
notices that the group applied last is healthy and moves on, or finishes with prune and
hook clean-up. Progress lives in the Application's `status.operationState`, so a sync
survives a restart of the engine and reads like Argo CD's."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from controllers import errors
from controllers.client import Client
from controllers.patch import clone
from gitops.health import HEALTHY, Health
from gitops.resources import (
    PHASES,
    POST_SYNC,
    PRE_SYNC,
    SYNC,
    SYNC_FAIL,
    Obj,
    ResourceKey,
    hook_delete_policies,
    hook_types,
    kind_rank,
    resource_options,
    sync_wave,
)

log = logging.getLogger(__name__)

FIELD_MANAGER = "gitops"
RUNNING, SUCCEEDED, FAILED, ERROR = "Running", "Succeeded", "Failed", "Error"
_PHASE_INDEX = {PRE_SYNC: 0, SYNC: 1, POST_SYNC: 2, SYNC_FAIL: 3}


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Task:
    """One thing a sync does to one object: apply a resource, run a hook, or prune."""

    obj: Obj
    phase: str
    wave: int
    hook: str = ""  # the hook type, "" for a resource
    prune: bool = False

    @property
    def key(self) -> ResourceKey:
        return ResourceKey.of(self.obj)

    def order(self) -> tuple[int, int, int, str, str]:
        rank = kind_rank(self.obj.get("kind", ""))
        if self.prune:  # prune in reverse: dependants first
            return (_PHASE_INDEX[self.phase], -self.wave, -rank, self.key.namespace, self.key.name)
        meta = self.obj.get("metadata") or {}
        return (_PHASE_INDEX[self.phase], self.wave, rank, self.key.namespace, meta.get("name") or "")


@dataclass
class Plan:
    """The ordered groups of a sync; group i must be applied and healthy before i+1."""

    groups: list[tuple[str, int, list[Task]]]
    prune: list[Task]
    prune_last: list[Task]
    sync_fail_hooks: list[Task]


def make_plan(desired: list[Obj], extraneous: list[Obj], prune_enabled: bool, prune_last: bool) -> Plan:
    """Order resources and hooks into (phase, wave) groups; extraneous objects become prune
    tasks when pruning is on (unless annotated Prune=false)."""
    tasks: list[Task] = []
    fail_hooks: list[Task] = []
    for obj in desired:
        hooks = hook_types(obj)
        if "Skip" in hooks:
            continue
        if not hooks:
            tasks.append(Task(obj, SYNC, sync_wave(obj)))
            continue
        for h in hooks:
            task = Task(obj, h, sync_wave(obj), hook=h)
            (fail_hooks if h == SYNC_FAIL else tasks).append(task)
    tasks.sort(key=Task.order)
    groups: list[tuple[str, int, list[Task]]] = []
    for task in tasks:
        if groups and groups[-1][0] == task.phase and groups[-1][1] == task.wave:
            groups[-1][2].append(task)
        else:
            groups.append((task.phase, task.wave, [task]))
    prune: list[Task] = []
    last: list[Task] = []
    if prune_enabled:
        for obj in extraneous:
            opts = resource_options(obj)
            if opts.get("Prune", "").lower() == "false":
                continue
            task = Task(obj, SYNC, sync_wave(obj), prune=True)
            (last if prune_last or opts.get("PruneLast", "").lower() == "true" else prune).append(task)
        prune.sort(key=Task.order)
        last.sort(key=Task.order)
    return Plan(groups, prune, last, fail_hooks)


@dataclass
class SyncContext:
    """What a step needs from the engine: a client, live state, health, and options."""

    client: Client
    live: Callable[[ResourceKey], Obj | None]  # from the informer caches
    health: Callable[[Obj], Health]
    dry_run: bool = False
    server_side: bool = True
    replace: bool = False
    create_namespace: str = ""
    events: list[str] = field(default_factory=list)
    # Told of each server-side apply that was not a dry run: (the object as planned, the
    # object the server returned), so the engine can skip a dry run that would say the same.
    applied: Callable[[Obj, Obj], None] | None = None


@dataclass
class StepResult:
    done: bool
    requeue_after: float | None = None


def start_operation(revision: str, source: Obj, initiated_by: Obj, options: Obj) -> Obj:
    return {
        "operation": {"sync": {"revision": revision, **options}, "initiatedBy": initiated_by},
        "phase": RUNNING,
        "message": "running",
        "startedAt": now_rfc3339(),
        "syncResult": {"revision": revision, "source": source, "resources": []},
        "step": 0,
    }


def step(ctx: SyncContext, plan: Plan, state: Obj) -> StepResult:
    """Advance the operation in `state` (mutated) as far as possible without waiting."""
    results: list[Obj] = state["syncResult"]["resources"]
    while state["phase"] == RUNNING:
        index = int(state.get("step", 0))
        if index < len(plan.groups):
            phase, wave, tasks = plan.groups[index]
            applied = {
                (r.get("syncPhase"), r.get("group"), r.get("kind"), r.get("namespace"), r.get("origName"))
                for r in results
            }
            pending = [t for t in tasks if (t.phase, *_ident(t)) not in applied]
            if pending:
                if not _apply_group(ctx, pending, results, state):
                    return _fail(ctx, plan, state)
                state["message"] = f"waiting for healthy state of wave {wave} of phase {phase}"
                if ctx.dry_run:
                    state["step"] = index + 1
                    continue
                return StepResult(False, 0.5)
            waiting = _unhealthy(ctx, tasks, results)
            if waiting is None:
                return _fail(ctx, plan, state)
            if waiting and not ctx.dry_run:
                state["message"] = f"waiting for healthy state of {waiting}"
                return StepResult(False, 1.0)
            state["step"] = index + 1
            continue
        _prune(ctx, plan.prune + plan.prune_last, results)
        _delete_hooks(ctx, results, "HookSucceeded")
        failed = [r for r in results if r.get("status") == "SyncFailed"]
        if failed:
            state["message"] = "; ".join(str(r.get("message")) for r in failed)
            return _fail(ctx, plan, state)
        state["phase"] = SUCCEEDED
        state["message"] = "successfully synced (all tasks run)"
        state["finishedAt"] = now_rfc3339()
    return StepResult(True)


def _ident(task: Task) -> tuple[str, str, str, str]:
    key = task.key
    meta = task.obj.get("metadata") or {}
    return (key.group, key.kind, key.namespace, meta.get("name") or meta.get("generateName") or "")


def _result(task: Task, status: str, message: str, name: str = "") -> Obj:
    key = task.key
    group, kind, namespace, orig = _ident(task)
    entry: Obj = {
        "group": group,
        "version": str(task.obj.get("apiVersion", "")).rpartition("/")[2],
        "kind": kind,
        "namespace": namespace,
        "name": name or key.name or orig,
        "origName": orig,
        "status": status,
        "message": message,
        "syncPhase": task.phase,
    }
    if task.hook:
        entry["hookType"] = task.hook
        entry["hookPhase"] = "Running"
    return entry


def _apply_group(ctx: SyncContext, tasks: list[Task], results: list[Obj], state: Obj) -> bool:
    ok = True
    for task in tasks:
        try:
            name, message = _apply(ctx, task)
            results.append(_result(task, "Synced", message, name))
        except errors.APIError as exc:
            ok = False
            results.append(_result(task, "SyncFailed", exc.message))
            state["message"] = f"one or more objects failed to apply, reason: {exc.message}"
    return ok


def _apply(ctx: SyncContext, task: Task) -> tuple[str, str]:
    """Apply one object; returns (its name, a message as Argo CD words it)."""
    obj = clone(task.obj)
    meta = obj.setdefault("metadata", {})
    if task.hook:
        if "BeforeHookCreation" in hook_delete_policies(obj) and meta.get("name"):
            _delete_quietly(ctx, obj, "Background")
        if not meta.get("name"):  # generateName hooks are created, never applied
            created = ctx.client.create(obj, dry_run=ctx.dry_run, field_manager=FIELD_MANAGER)
            return created["metadata"]["name"], "created"
    if ctx.replace or resource_options(obj).get("Replace") == "true":
        live = ctx.live(task.key)
        if live is None:
            ctx.client.create(obj, dry_run=ctx.dry_run, field_manager=FIELD_MANAGER)
            return meta["name"], "created"
        meta["resourceVersion"] = live["metadata"]["resourceVersion"]
        ctx.client.update(obj, dry_run=ctx.dry_run, field_manager=FIELD_MANAGER)
        return meta["name"], "replaced"
    existed = ctx.live(task.key) is not None
    result = ctx.client.apply(obj, field_manager=FIELD_MANAGER, force=True, dry_run=ctx.dry_run)
    if ctx.applied is not None and not ctx.dry_run:
        ctx.applied(task.obj, result)
    verb = "configured" if existed else "created"
    return meta["name"], f"{obj.get('kind', '').lower()}/{meta['name']} {verb}"


def _unhealthy(ctx: SyncContext, tasks: list[Task], results: list[Obj]) -> str | None:
    """The first object of a group still on its way ("" when all are healthy); None when
    a hook failed (the sync fails)."""
    by_ident = {
        (r.get("syncPhase"), r.get("group"), r.get("kind"), r.get("namespace"), r.get("origName")): r for r in results
    }
    for task in tasks:
        res = by_ident.get((task.phase, *_ident(task)))
        if res is None or res.get("status") != "Synced":
            continue
        key = ResourceKey(res["group"], res["kind"], res["namespace"], res["name"])
        live = ctx.live(key)
        if live is None:
            if task.hook and res.get("hookPhase") == "Succeeded":
                continue
            return str(key)
        health = ctx.health(live)
        if task.hook:
            if health.status == "Degraded":
                res["hookPhase"] = "Failed"
                res["message"] = health.message or "hook failed"
                return None
            if health.status != HEALTHY:
                return str(key)
            res["hookPhase"] = "Succeeded"
            continue
        if health.status not in (HEALTHY, "Suspended"):
            return str(key)
    return ""


def _prune(ctx: SyncContext, tasks: list[Task], results: list[Obj]) -> None:
    for task in tasks:
        try:
            if not ctx.dry_run:
                ctx.client.delete(
                    task.obj["apiVersion"],
                    task.obj["kind"],
                    task.key.name,
                    task.key.namespace,
                    propagation_policy="Foreground",
                )
            results.append(_result(task, "Pruned", "pruned"))
        except errors.NotFound:
            results.append(_result(task, "Pruned", "already gone"))
        except errors.APIError as exc:
            results.append(_result(task, "SyncFailed", f"prune failed: {exc.message}"))


def _delete_hooks(ctx: SyncContext, results: list[Obj], policy: str) -> None:
    """Hooks whose delete policy matches how they ended are removed (hook-delete-policy)."""
    if ctx.dry_run:
        return
    for res in results:
        if not res.get("hookType"):
            continue
        key = ResourceKey(res["group"], res["kind"], res["namespace"], res["name"])
        live = ctx.live(key)
        if live is not None and policy in hook_delete_policies(live):
            _delete_quietly(ctx, live, "Background")


def _delete_quietly(ctx: SyncContext, obj: Obj, propagation: str) -> None:
    meta = obj.get("metadata") or {}
    try:
        ctx.client.delete(
            obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace", ""), propagation_policy=propagation
        )
    except errors.NotFound:
        pass


def _fail(ctx: SyncContext, plan: Plan, state: Obj) -> StepResult:
    """End the operation as Failed: run the SyncFail hooks and apply HookFailed deletes."""
    results: list[Obj] = state["syncResult"]["resources"]
    if not ctx.dry_run:
        for task in plan.sync_fail_hooks:
            try:
                name, message = _apply(ctx, task)
                results.append(_result(task, "Synced", message, name))
            except errors.APIError as exc:
                results.append(_result(task, "SyncFailed", exc.message))
        _delete_hooks(ctx, results, "HookFailed")
    state["phase"] = FAILED
    state["finishedAt"] = now_rfc3339()
    if not state.get("message") or state["message"].startswith("waiting"):
        failed = [r for r in results if r.get("status") == "SyncFailed" or r.get("hookPhase") == "Failed"]
        state["message"] = "; ".join(f"{r['kind']}/{r['name']}: {r.get('message')}" for r in failed) or "failed"
    return StepResult(True)


__all__ = ["PHASES", "Plan", "SyncContext", "Task", "make_plan", "start_operation", "step"]
