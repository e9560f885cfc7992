"""The DaemonSet controller: one pod on every node that should run it.

A node should run the daemon when it matches the template's nodeName, nodeSelector and
required node affinity, and every NoSchedule/NoExecute taint on it is tolerated, counting
the tolerations every daemon pod gets (not-ready, unreachable, the pressure taints,
unschedulable; network-unavailable for hostNetwork pods). A node that gains a NoSchedule
taint keeps its pod; one that stops matching, or gains an untolerated NoExecute taint,
loses it. Each pod is pinned to
its node the way Kubernetes does it, with a required node affinity on `metadata.name`, and
the scheduler binds it. Updates roll node by node within maxUnavailable (or maxSurge, new
pod first); OnDelete waits for the user to delete old pods. Template revisions are
ControllerRevisions; pods carry the revision hash in `controller-revision-hash`."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from controllers import errors
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Result, object_key
from controllers.selectors import DOES_NOT_EXIST, EXISTS, GT, IN, LT, NOT_IN, Requirement
from controllers.workloads.common import (
    controller_of,
    is_controlled_by,
    is_pod_available,
    is_pod_ready,
    is_pod_terminating,
    pod_from_template,
)
from controllers.workloads.history import (
    REVISION_HASH_LABEL,
    History,
    PendingWrites,
    revision_hash,
    seconds_until_available,
)
from controllers.workloads.rollout import scaled_value

Obj = dict[str, Any]

MANAGER = "daemonset-controller"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
_NODE_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST, "Gt": GT, "Lt": LT}
_FAILED_POD_BACKOFF = (1.0, 900.0)  # first and longest wait before replacing a failed daemon pod again


def daemon_tolerations(host_network: bool) -> list[Obj]:
    """What the DaemonSet controller adds to every daemon pod, so node trouble that would
    evict or block ordinary pods does not take the node's daemons away."""
    out = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    ]
    if host_network:
        out.append({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"})
    return out


def tolerates(toleration: Obj, taint: Obj) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    if toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def _term_matches(term: Obj, node: Obj) -> bool:
    """A node selector term: every expression on labels and every field requirement hold;
    a term with neither matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    node_fields = {"metadata.name": node["metadata"]["name"]}
    for reqs, subject in ((exprs, labels), (fields, node_fields)):
        for req in reqs:
            op = _NODE_OPERATORS.get(req.get("operator", ""))
            if op is None or not Requirement(req.get("key", ""), op, tuple(req.get("values") or ())).matches(subject):
                return False
    return True


def node_selected(pod_spec: Obj, node: Obj) -> bool:
    """nodeName, nodeSelector and required node affinity, as the scheduler reads them."""
    if pod_spec.get("nodeName") and pod_spec["nodeName"] != node["metadata"]["name"]:
        return False
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def node_should_run(pod_spec: Obj, node: Obj) -> tuple[bool, bool]:
    """(should a daemon pod be placed here, may an existing one keep running here)."""
    if not node_selected(pod_spec, node):
        return False, False
    tolerations = pod_spec.get("tolerations") or []
    untolerated = [
        t
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute") and not any(tolerates(tol, t) for tol in tolerations)
    ]
    if not untolerated:
        return True, True
    return False, not any(t.get("effect") == "NoExecute" for t in untolerated)


def daemon_pod_spec(template_spec: Obj, node_name: str | None = None) -> Obj:
    """The template's pod spec with the daemon tolerations, pinned to `node_name` if given."""
    spec = copy.deepcopy(template_spec)
    tolerations = list(spec.get("tolerations") or [])
    for tol in daemon_tolerations(bool(spec.get("hostNetwork"))):
        if not any(t.get("key") == tol["key"] and t.get("effect") == tol["effect"] for t in tolerations):
            tolerations.append(tol)
    spec["tolerations"] = tolerations
    if node_name is not None:
        pin = {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]
        }
        affinity = spec.setdefault("affinity", {})
        affinity.setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = pin
    return spec


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod is on, or is pinned to while the scheduler has not bound it."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and len(req.get("values") or []) == 1:
                return str(req["values"][0])
    return None


def _surges(ds: Obj) -> bool:
    """Whether a RollingUpdate with maxSurge lets an old and a new pod share a node."""
    strategy = ds["spec"].get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return False
    return scaled_value((strategy.get("rollingUpdate") or {}).get("maxSurge"), 1, round_up=True) > 0


def _created(pod: Obj) -> str:
    return str(pod["metadata"].get("creationTimestamp") or "")


def _hash_of(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL, "")


@dataclass
class _Plan:
    """The writes one reconcile decides on, carried out together at the end."""

    create: list[str] = field(default_factory=list)  # node names
    delete: list[Obj] = field(default_factory=list)
    requeue_after: float | None = None

    def wait_for(self, seconds: float | None) -> None:
        if seconds is not None:
            self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


@dataclass
class _NodeState:
    node: Obj
    should_run: bool
    should_continue: bool
    pods: list[Obj]  # the daemon pods here that are not terminating, oldest first


class DaemonSetController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.sets = ctx.informers.informer("apps/v1", "DaemonSet")
        self.pods = ctx.informers.informer("v1", "Pod")
        self.nodes = ctx.informers.informer("v1", "Node")
        self.history = History(ctx.client, ctx.informers.informer("apps/v1", "ControllerRevision"), MANAGER)
        self.recorder = ctx.recorder(MANAGER)
        self.pending = PendingWrites()
        self._backoff_lock = threading.Lock()
        self._failed_backoff: dict[tuple[str, str], tuple[float, float]] = {}  # (ds uid, node) -> (delay, until)
        self.controller = Controller("daemonset", self.reconcile, workers=2)
        self.controller.watch(self.sets)
        self.controller.watch(self.pods, _owning_set)
        self.nodes.add_handler(self._node_changed)

    def start(self) -> DaemonSetController:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def _node_changed(self, etype: str, node: Obj, old: Obj | None) -> None:
        """Heartbeats rewrite nodes all the time; only what placement reads matters here."""
        if etype == "MODIFIED" and old is not None:
            before, after = old.get("metadata", {}), node.get("metadata", {})
            if before.get("labels") == after.get("labels") and (old.get("spec") or {}) == (node.get("spec") or {}):
                return
        for ds in self.sets.cache.list():
            self.controller.queue.add(object_key(ds))

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, key: str) -> Result | None:
        ds = self.sets.cache.get(key)
        if ds is None:
            self.pending.forget(key)
            return None
        if ds["metadata"].get("deletionTimestamp"):
            return None
        revisions = self.history.sync(ds)
        update_hash = revision_hash(revisions.update)
        owned = [p for p in self.pods.cache.by_index("owner", ds["metadata"]["uid"]) if is_controlled_by(p, ds)]
        pods = self.pending.view(key, owned, self.pods)
        states, stray = self._node_states(ds, pods)
        plan = _Plan()
        for state in states:
            self._plan_node(ds, state, update_hash, plan)
        plan.delete.extend(stray)
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            self._plan_rolling_update(ds, states, update_hash, plan)
        self._execute(key, ds, update_hash, plan)
        live = {f"{ds['metadata']['name']}-{_hash_of(p)}" for p in pods}
        self.history.truncate(ds, revisions, live)
        self._write_status(ds, states, update_hash, plan)
        return Result(plan.requeue_after) if plan.requeue_after is not None else None

    def _node_states(self, ds: Obj, pods: list[Obj]) -> tuple[list[_NodeState], list[Obj]]:
        """Every node with what it should run and the active daemon pods on it, and the
        unbound pods pinned to nodes that no longer exist (bound ones are the pod garbage
        collector's)."""
        by_node: dict[str, list[Obj]] = {}
        for pod in pods:
            node_name = target_node(pod)
            if node_name is not None and not is_pod_terminating(pod):
                by_node.setdefault(node_name, []).append(pod)
        spec = daemon_pod_spec(ds["spec"]["template"].get("spec") or {})
        states = []
        for node in sorted(self.nodes.cache.list(), key=lambda n: n["metadata"]["name"]):
            should_run, should_continue = node_should_run(spec, node)
            here = sorted(by_node.pop(node["metadata"]["name"], []), key=_created)
            states.append(_NodeState(node, should_run, should_continue, here))
        stray = [p for ps in by_node.values() for p in ps if not (p.get("spec") or {}).get("nodeName")]
        return states, stray

    def _plan_node(self, ds: Obj, state: _NodeState, update_hash: str, plan: _Plan) -> None:
        node_name = state.node["metadata"]["name"]
        finished = [p for p in state.pods if (p.get("status") or {}).get("phase") in ("Failed", "Succeeded")]
        running = [p for p in state.pods if p not in finished]
        if not state.should_continue:
            plan.delete.extend(state.pods)
            return
        if not state.should_run:
            return
        if finished:
            wait = self._failed_pod_wait(ds, node_name)
            if wait > 0:
                plan.wait_for(wait)
                return
            for pod in finished:
                self.recorder.event(
                    ds,
                    "Warning",
                    "FailedDaemonPod",
                    f"Found failed daemon pod {pod['metadata']['namespace']}/{pod['metadata']['name']} "
                    f"on node {node_name}, will try to kill it",
                )
            plan.delete.extend(finished)
        if not running:
            plan.create.append(node_name)
        elif _surges(ds):  # an old and a new pod may share the node while the new one starts
            new = [p for p in running if _hash_of(p) == update_hash]
            old = [p for p in running if _hash_of(p) != update_hash]
            running = new[:1] + old[:1]
        else:
            running = running[:1]
        plan.delete.extend(p for p in state.pods if p not in running and p not in finished)
        state.pods = running

    def _failed_pod_wait(self, ds: Obj, node_name: str) -> float:
        """Seconds to hold off replacing another failed pod on this node (1 s doubling to 15 min),
        so a pod that cannot run there is not recreated in a hot loop."""
        key = (ds["metadata"]["uid"], node_name)
        now = time.monotonic()
        with self._backoff_lock:
            delay, until = self._failed_backoff.get(key, (0.0, 0.0))
            if now < until:
                return until - now
            if now - until > 2 * delay:
                delay = 0.0  # the last failure is long past: start over
            delay = min(max(delay * 2, _FAILED_POD_BACKOFF[0]), _FAILED_POD_BACKOFF[1])
            self._failed_backoff[key] = (delay, now + delay)
            return 0.0

    def _plan_rolling_update(self, ds: Obj, states: list[_NodeState], update_hash: str, plan: _Plan) -> None:
        """Replace old pods node by node: without surge, delete up to maxUnavailable of them
        (the unavailable ones first, they cost nothing); with maxSurge, start the new pod
        next to the old one and delete the old one once the new one is available."""
        spec = ds["spec"]
        rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        desired = [s for s in states if s.should_run]
        max_surge = scaled_value(rolling.get("maxSurge"), len(desired), round_up=True)
        max_unavailable = scaled_value(rolling.get("maxUnavailable", 1), len(desired), round_up=True)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        doomed = {object_key(p) for p in plan.delete}

        def available(pod: Obj) -> bool:
            return object_key(pod) not in doomed and is_pod_available(pod, min_ready)

        if max_surge == 0:
            unavailable = sum(1 for s in desired if not any(available(p) for p in s.pods))
            old = [p for s in desired for p in s.pods if _hash_of(p) != update_hash and object_key(p) not in doomed]
            for pod in sorted(old, key=available):
                if not available(pod):
                    plan.delete.append(pod)
                elif unavailable < max_unavailable:
                    plan.delete.append(pod)
                    unavailable += 1
            for pod in (p for s in desired for p in s.pods):
                plan.wait_for(seconds_until_available(pod, min_ready))
            return
        surging = sum(
            1
            for s in desired
            if any(_hash_of(p) != update_hash for p in s.pods)
            and any(_hash_of(p) == update_hash and not available(p) for p in s.pods)
        )
        budget = max_surge - surging
        for state in desired:
            old = [p for p in state.pods if _hash_of(p) != update_hash and object_key(p) not in doomed]
            new = [p for p in state.pods if _hash_of(p) == update_hash]
            if not old:
                continue
            if new:
                if available(new[0]):
                    plan.delete.extend(old)
                continue
            if not available(old[0]):
                plan.create.append(state.node["metadata"]["name"])
            elif budget > 0:
                plan.create.append(state.node["metadata"]["name"])
                budget -= 1
        for pod in (p for s in desired for p in s.pods):
            plan.wait_for(seconds_until_available(pod, min_ready))

    # ------------------------------------------------------------------ writes
    def _execute(self, key: str, ds: Obj, update_hash: str, plan: _Plan) -> None:
        seen: set[str] = set()
        for pod in plan.delete:
            pkey = object_key(pod)
            if pkey in seen:
                continue
            seen.add(pkey)
            meta = pod["metadata"]
            try:
                gone = self.client.delete(
                    "v1", "Pod", meta["name"], meta["namespace"], precondition_uid=meta.get("uid")
                )
            except (errors.NotFound, errors.Conflict):
                continue
            self.pending.deleted(key, gone)
            self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
        for node_name in dict.fromkeys(plan.create):
            pod = self._new_pod(ds, update_hash, node_name)
            try:
                created = self.client.create(pod, field_manager=MANAGER)
            except errors.APIError as exc:
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {exc}")
                raise
            self.pending.wrote(key, created)
            self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    def _new_pod(self, ds: Obj, update_hash: str, node_name: str) -> Obj:
        template = copy.deepcopy(ds["spec"]["template"])
        template["spec"] = daemon_pod_spec(template.get("spec") or {}, node_name)
        labels = {REVISION_HASH_LABEL: update_hash, TEMPLATE_GENERATION_LABEL: str(ds["metadata"].get("generation", 1))}
        return pod_from_template(template, ds, generate_name=f"{ds['metadata']['name']}-", extra_labels=labels)

    def _write_status(self, ds: Obj, states: list[_NodeState], update_hash: str, plan: _Plan) -> None:
        """The counts `kubectl get ds` and `kubectl rollout status ds` read, one pod per node
        (the oldest, as Kubernetes counts), as the caches show them now."""
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        desired = [s for s in states if s.should_run]
        scheduled = [s for s in desired if s.pods]
        ready = [s for s in scheduled if is_pod_ready(s.pods[0])]
        available = sum(1 for s in ready if is_pod_available(s.pods[0], min_ready))
        status: Obj = {
            **(ds.get("status") or {}),
            "observedGeneration": ds["metadata"].get("generation", 1),
            "desiredNumberScheduled": len(desired),
            "currentNumberScheduled": len(scheduled),
            "numberMisscheduled": sum(1 for s in states if not s.should_run and s.pods),
            "numberReady": len(ready),
            "updatedNumberScheduled": sum(1 for s in scheduled if any(_hash_of(p) == update_hash for p in s.pods)),
            "numberAvailable": available,
            "numberUnavailable": len(desired) - available,
        }
        if status == ds.get("status"):
            return
        updated = copy.deepcopy(ds)
        updated["status"] = status
        self.client.update_status(updated, field_manager=MANAGER)


def _owning_set(pod: Obj) -> list[str]:
    ref = controller_of(pod)
    if ref is None or ref.get("kind") != "DaemonSet":
        return []
    return [object_key({"metadata": {"namespace": pod["metadata"].get("namespace"), "name": ref["name"]}})]


def new(ctx: ControllerContext) -> DaemonSetController:
    return DaemonSetController(ctx)
