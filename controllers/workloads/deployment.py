"""The Deployment controller: rolls a Deployment's pod template out through ReplicaSets
named `<deployment>-<pod-template-hash>`, as kube-controller-manager's does.

One reconcile makes one step: claim the ReplicaSets the selector matches; note a pause or
resume in the Progressing condition; then either scale proportionally (paused, or the
Deployment's size changed), or advance the strategy: RollingUpdate grows the new
ReplicaSet and shrinks old ones without ever exceeding replicas + maxSurge pods or going
below replicas - maxUnavailable available pods (unhealthy old pods go first); Recreate
scales every old ReplicaSet to zero and waits for their pods to be gone before it starts
the new one. Revisions live in `deployment.kubernetes.io/revision` annotations (which is
what `kubectl rollout history/undo` read), old ReplicaSets beyond revisionHistoryLimit are
deleted, and status carries the counters `kubectl rollout status` reads and the
Progressing / Available / ReplicaFailure conditions with Kubernetes' reasons, including
ProgressDeadlineExceeded once no progress was made for progressDeadlineSeconds."""

from __future__ import annotations

import copy
import datetime as dt
import logging
from typing import Any

from controllers import errors
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Result, object_key
from controllers.workloads import rollout
from controllers.workloads.common import controller_of, controller_ref, is_controlled_by
from controllers.workloads.rollout import (
    FIELD_MANAGER,
    PROGRESSING,
    REPLICA_FAILURE,
    REVISION,
    active,
    annotations_of,
    get_condition,
    name_of,
    new_condition,
    set_condition,
    spec_replicas,
    status_count,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEPLOYMENT = "Deployment"
RS_KIND = "ReplicaSet"


class DeploymentController:
    """One Controller over Deployments, fed by Deployment, ReplicaSet and Pod events."""

    def __init__(self, ctx: ControllerContext, workers: int = 4) -> None:
        self.client = ctx.client
        self.recorder = ctx.recorder("deployment-controller")
        self.deployments = ctx.informers.informer(rollout.APPS, DEPLOYMENT)
        self.replicasets = ctx.informers.informer(rollout.APPS, RS_KIND)
        self.pods = ctx.informers.informer("v1", "Pod")
        self.replicasets.cache.add_index(rollout.ORPHAN_INDEX, rollout.index_orphans)
        self.selectors = rollout.SelectorCache()
        self.controller = Controller("deployment", self.reconcile, workers)
        self.controller.watch(self.deployments)
        self.controller.watch(self.replicasets, self._deployments_of)
        self.pods.add_handler(self._on_pod)

    def start(self) -> DeploymentController:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    # -- events ------------------------------------------------------------------------
    def _owner(self, obj: Obj) -> str | None:
        """The key of the Deployment controlling a ReplicaSet, if it is one we know."""
        ref = controller_of(obj)
        if ref is None or ref.get("kind") != DEPLOYMENT or not str(ref.get("apiVersion", "")).startswith("apps/"):
            return None
        key = f"{obj['metadata'].get('namespace', '')}/{ref.get('name', '')}"
        d = self.deployments.cache.get(key)
        return key if d is not None and d["metadata"].get("uid") == ref.get("uid") else None

    def _deployments_of(self, rs: Obj) -> list[str]:
        """The owner of a ReplicaSet; for an orphan, every Deployment that would adopt it."""
        if controller_of(rs) is not None:
            owner = self._owner(rs)
            return [owner] if owner else []
        if rs["metadata"].get("deletionTimestamp"):
            return []
        labels = rs["metadata"].get("labels") or {}
        return [
            object_key(d)
            for d in self.deployments.cache.list(rs["metadata"].get("namespace", ""))
            if self.selectors.of(d).matches(labels)
        ]

    def _on_pod(self, etype: str, pod: Obj, _old: Obj | None) -> None:
        """A Recreate rollout waits for the old pods to be gone: wake it when one goes."""
        if etype != "DELETED":
            return
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != RS_KIND:
            return
        rs = self.replicasets.cache.get(f"{pod['metadata'].get('namespace', '')}/{ref.get('name', '')}")
        key = self._owner(rs) if rs is not None else None
        d = self.deployments.cache.get(key) if key else None
        if key and d is not None and not rollout.is_rolling(d):
            self.controller.queue.add(key)

    # -- reconcile -------------------------------------------------------------------------
    def reconcile(self, key: str) -> Result | None:
        cached = self.deployments.cache.get(key)
        if cached is None:
            return None
        d = {**copy.deepcopy(cached), "apiVersion": rollout.APPS, "kind": DEPLOYMENT}
        d.setdefault("status", {})
        rss = self._claim_replica_sets(d)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = self._new_and_old(d, rss)
            self._sync_status(d, _with(old_rss, new_rs), new_rs)
            return None
        self._check_paused_conditions(d)
        if d["spec"].get("paused") or self._is_scaling_event(d, rss):
            return self._sync(d, rss)
        if rollout.is_rolling(d):
            return self._rollout_rolling(d, rss)
        return self._rollout_recreate(d, rss)

    def _claim_replica_sets(self, d: Obj) -> list[Obj]:
        """Working copies of the ReplicaSets this Deployment controls, after adoption and release."""
        namespace = d["metadata"].get("namespace", "")
        owned = self.replicasets.cache.by_index("owner", d["metadata"]["uid"])
        orphans = self.replicasets.cache.by_index(rollout.ORPHAN_INDEX, namespace)
        candidates = {rs["metadata"]["uid"]: rs for rs in owned + orphans}
        claimed = rollout.claim(self.client, d, self.selectors.of(d), candidates.values(), rollout.APPS, RS_KIND)
        return [{**copy.deepcopy(rs), "apiVersion": rollout.APPS, "kind": RS_KIND} for rs in claimed]

    # -- the new and the old ReplicaSets ---------------------------------------------------
    def _new_and_old(self, d: Obj, rss: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """(the ReplicaSet of the current template if there is one, every other one); the
        new one's annotations and the Deployment's revision are brought up to date."""
        new_rs = rollout.find_new_rs(d, rss)
        old_rss = [rs for rs in rss if rs is not new_rs]
        return (self._sync_new_rs(d, new_rs, old_rss) if new_rs is not None else None), old_rss

    def _new_created_and_old(self, d: Obj, rss: list[Obj]) -> tuple[Obj, list[Obj]]:
        """As `_new_and_old`, creating the new ReplicaSet when there is none yet."""
        new_rs, old_rss = self._new_and_old(d, rss)
        return (new_rs if new_rs is not None else self._create_new_rs(d, old_rss)), old_rss

    def _sync_new_rs(self, d: Obj, rs: Obj, old_rss: list[Obj]) -> Obj:
        updated = copy.deepcopy(rs)
        changed = rollout.set_new_rs_annotations(d, updated, rollout.max_revision(old_rss) + 1, exists=True)
        min_ready = int(d["spec"].get("minReadySeconds") or 0)
        if changed or int(rs["spec"].get("minReadySeconds") or 0) != min_ready:
            updated["spec"]["minReadySeconds"] = min_ready
            _replace(rs, self.client.update(updated, field_manager=FIELD_MANAGER))
        self._set_revision(d, annotations_of(rs).get(REVISION, ""))
        if get_condition(d["status"], PROGRESSING) is None:
            message = f'Found new replica set "{name_of(rs)}"'
            set_condition(d["status"], new_condition(PROGRESSING, "True", rollout.FOUND_NEW_RS, message))
            self._update_status(d)
        return rs

    def _create_new_rs(self, d: Obj, old_rss: list[Obj]) -> Obj:
        rs = self._new_rs_object(d)
        rs["spec"]["replicas"] = rollout.new_rs_new_replicas(d, [*old_rss, rs], rs)
        new_revision = rollout.max_revision(old_rss) + 1
        rollout.set_new_rs_annotations(d, rs, new_revision, exists=False)
        name = name_of(rs)
        already = False
        try:
            created = self.client.create(rs, field_manager=FIELD_MANAGER)
        except errors.AlreadyExists:
            created, already = self._existing_new_rs(d, name), True
        except errors.APIError as exc:
            message = f'Failed to create new replica set "{name}": {exc.message}'
            if rollout.has_progress_deadline(d):
                set_condition(d["status"], new_condition(PROGRESSING, "False", rollout.FAILED_RS_CREATE, message))
                self._update_status(d)
            self.recorder.event(d, "Warning", rollout.FAILED_RS_CREATE, message)
            raise
        created = {**created, "apiVersion": rollout.APPS, "kind": RS_KIND}
        if not already and spec_replicas(created) > 0:
            self._scaled_event(d, name, 0, spec_replicas(created))
        self._set_revision(d, str(new_revision))
        if not already and rollout.has_progress_deadline(d):
            message = f'Created new replica set "{name}"'
            set_condition(d["status"], new_condition(PROGRESSING, "True", rollout.NEW_RS_CREATED, message))
            self._update_status(d)
        return created

    def _new_rs_object(self, d: Obj) -> Obj:
        """The ReplicaSet for the Deployment's template: its hash in the name, the selector,
        the template labels and so the pods, which keeps revisions from sharing pods."""
        template = copy.deepcopy(d["spec"]["template"])
        pod_hash = rollout.template_hash(d["spec"]["template"], d["status"].get("collisionCount"))
        labels = {**((template.get("metadata") or {}).get("labels") or {}), rollout.POD_TEMPLATE_HASH: pod_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(d["spec"]["selector"])
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), rollout.POD_TEMPLATE_HASH: pod_hash}
        meta = d["metadata"]
        min_ready = int(d["spec"].get("minReadySeconds") or 0)
        return {
            "apiVersion": rollout.APPS,
            "kind": RS_KIND,
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta.get("namespace", "default"),
                "labels": dict(labels),
                "ownerReferences": [controller_ref(d)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template}
            | ({"minReadySeconds": min_ready} if min_ready else {}),
        }

    def _existing_new_rs(self, d: Obj, name: str) -> Obj:
        """The name is taken: ours (the cache is behind) or a hash collision, which bumps
        status.collisionCount so the next attempt hashes differently."""
        existing = self.replicasets.cache.get(f"{d['metadata'].get('namespace', '')}/{name}")
        if existing is None:
            raise errors.Conflict(f"replica set {name} exists but is not in the cache yet")
        if is_controlled_by(existing, d) and rollout.equal_ignore_hash(
            existing["spec"]["template"], d["spec"]["template"]
        ):
            return {**copy.deepcopy(existing), "apiVersion": rollout.APPS, "kind": RS_KIND}
        d["status"]["collisionCount"] = int(d["status"].get("collisionCount") or 0) + 1
        self._update_status(d)
        count = d["status"]["collisionCount"]
        raise errors.Conflict(f"hash collision on replica set {name}; collisionCount is now {count}")

    def _set_revision(self, d: Obj, value: str) -> None:
        """Keep the Deployment's revision annotation equal to its new ReplicaSet's."""
        if not value or annotations_of(d).get(REVISION) == value:
            return
        d["metadata"].setdefault("annotations", {})[REVISION] = value
        status = d["status"]
        _replace(d, self.client.update(d, field_manager=FIELD_MANAGER))
        d["status"] = status

    # -- scaling -------------------------------------------------------------------------
    def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        """The Deployment's size differs from the size its ReplicaSets were last scaled for."""
        new_rs, old_rss = self._new_and_old(d, rss)
        for rs in active(_with(old_rss, new_rs)):
            desired = annotations_of(rs).get(rollout.DESIRED_REPLICAS)
            if desired is not None and desired.isdigit() and int(desired) != spec_replicas(d):
                return True
        return False

    def _sync(self, d: Obj, rss: list[Obj]) -> Result | None:
        """Scale without advancing the rollout (paused, or a size change), then status."""
        new_rs, old_rss = self._new_and_old(d, rss)
        self._scale(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            self._cleanup(d, old_rss)
        self._sync_status(d, _with(old_rss, new_rs), new_rs)
        return None

    def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Give a size change to the only active ReplicaSet, or spread it over all of them in
        proportion to their sizes (leftovers to the largest)."""
        only = rollout.find_active_or_latest(new_rs, old_rss)
        if only is not None:
            self._scale_and_record(only, spec_replicas(d), d)
            return
        if rollout.is_saturated(d, new_rs):
            for rs in active(old_rss):
                self._scale_and_record(rs, 0, d)
            return
        if not rollout.is_rolling(d):
            return
        running = active(_with(old_rss, new_rs))
        allowed = spec_replicas(d) + rollout.max_surge(d) if spec_replicas(d) > 0 else 0
        to_add = allowed - rollout.spec_total(running)
        if to_add != 0:
            running = rollout.sorted_for_scaling(running, up=to_add > 0)
        added = 0
        sizes: list[int] = []
        for rs in running:
            share = rollout.proportion(rs, d, to_add, added)
            sizes.append(spec_replicas(rs) + share)
            added += share
        if running and to_add != 0:
            sizes[0] = max(sizes[0] + to_add - added, 0)
        for rs, size in zip(running, sizes, strict=True):
            self._scale_rs(rs, size, d)

    def _scale_and_record(self, rs: Obj, size: int, d: Obj) -> bool:
        return spec_replicas(rs) != size and self._scale_rs(rs, size, d)

    def _scale_rs(self, rs: Obj, size: int, d: Obj) -> bool:
        """Set a ReplicaSet's size and the Deployment size it is for; True when the size changed."""
        old_size = spec_replicas(rs)
        desired, max_replicas = spec_replicas(d), spec_replicas(d) + rollout.max_surge(d)
        if old_size == size and not rollout.replicas_annotations_need_update(rs, desired, max_replicas):
            return False
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = size
        rollout.set_replicas_annotations(updated, desired, max_replicas)
        _replace(rs, self.client.update(updated, field_manager=FIELD_MANAGER))
        if old_size != size:
            self._scaled_event(d, name_of(rs), old_size, size)
        return old_size != size

    def _scaled_event(self, d: Obj, name: str, old: int, new: int) -> None:
        way = "up" if new > old else "down"
        self.recorder.event(d, "Normal", "ScalingReplicaSet", f"Scaled {way} replica set {name} from {old} to {new}")

    # -- RollingUpdate -------------------------------------------------------------------
    def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> Result | None:
        new_rs, old_rss = self._new_created_and_old(d, rss)
        all_rss = [*old_rss, new_rs]
        if self._grow_new(all_rss, new_rs, d) or self._shrink_old(all_rss, active(old_rss), new_rs, d):
            return self._sync_rollout_status(all_rss, new_rs, d)
        if rollout.deployment_complete(d, d["status"]):
            self._cleanup(d, old_rss)
        return self._sync_rollout_status(all_rss, new_rs, d)

    def _grow_new(self, all_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        desired = spec_replicas(d)
        if spec_replicas(new_rs) == desired:
            return False
        if spec_replicas(new_rs) > desired:
            return self._scale_and_record(new_rs, desired, d)
        return self._scale_and_record(new_rs, rollout.new_rs_new_replicas(d, all_rss, new_rs), d)

    def _shrink_old(self, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        """Scale old ReplicaSets down as far as availability allows: first the pods that are
        not available anyway (they cost nothing), then available ones down to
        replicas - maxUnavailable."""
        if rollout.spec_total(old_rss) == 0:
            return False
        min_available = spec_replicas(d) - rollout.max_unavailable(d)
        new_unavailable = spec_replicas(new_rs) - status_count(new_rs, "availableReplicas")
        max_scaled_down = rollout.spec_total(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self._cleanup_unhealthy(old_rss, d, max_scaled_down)
        scaled = self._scale_down_available(old_rss, new_rs, d)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, old_rss: list[Obj], d: Obj, limit: int) -> int:
        total = 0
        for rs in rollout.by_creation(old_rss):
            if total >= limit:
                break
            size, available = spec_replicas(rs), status_count(rs, "availableReplicas")
            if size <= available:
                continue
            n = min(limit - total, size - available)
            self._scale_and_record(rs, size - n, d)
            total += n
        return total

    def _scale_down_available(self, old_rss: list[Obj], new_rs: Obj, d: Obj) -> int:
        min_available = spec_replicas(d) - rollout.max_unavailable(d)
        available = sum(rollout.available_after_scaling(rs) for rs in [*old_rss, new_rs])
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in rollout.by_creation(old_rss):
            if total >= budget:
                break
            size = spec_replicas(rs)
            if size == 0:
                continue
            n = min(size, budget - total)
            self._scale_and_record(rs, size - n, d)
            total += n
        return total

    # -- Recreate ------------------------------------------------------------------------
    def _rollout_recreate(self, d: Obj, rss: list[Obj]) -> Result | None:
        """Old pods all gone before any new one is created: the two never overlap."""
        new_rs, old_rss = self._new_and_old(d, rss)
        scaled = False
        for rs in active(old_rss):
            scaled = self._scale_and_record(rs, 0, d) or scaled
        if scaled or self._old_pods_running(old_rss):
            return self._sync_rollout_status(_with(old_rss, new_rs), new_rs, d)
        if new_rs is None:
            new_rs = self._create_new_rs(d, old_rss)
        self._scale_and_record(new_rs, spec_replicas(d), d)
        if rollout.deployment_complete(d, d["status"]):
            self._cleanup(d, old_rss)
        return self._sync_rollout_status([*old_rss, new_rs], new_rs, d)

    def _old_pods_running(self, old_rss: list[Obj]) -> bool:
        """Whether an old ReplicaSet still has a pod that is not finished (terminating ones
        count), or has not yet seen its scale-down."""
        if sum(status_count(rs, "replicas") for rs in old_rss) > 0:
            return True
        for rs in old_rss:
            if status_count(rs, "observedGeneration") < int(rs["metadata"].get("generation") or 0):
                return True
            uid = rs["metadata"]["uid"]
            for pod in self.pods.cache.by_index("owner", uid):
                if (controller_of(pod) or {}).get("uid") != uid:
                    continue
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return True
        return False

    # -- history -------------------------------------------------------------------------
    def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Delete the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None or int(limit) == 2**31 - 1:
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        excess = len(alive) - int(limit)
        for rs in rollout.by_revision(alive)[: max(excess, 0)]:
            if status_count(rs, "replicas") or spec_replicas(rs):
                continue
            if int(rs["metadata"].get("generation") or 0) > status_count(rs, "observedGeneration"):
                continue
            try:
                self.client.delete(rollout.APPS, RS_KIND, name_of(rs), rs["metadata"].get("namespace", ""))
            except errors.NotFound:
                pass

    # -- status --------------------------------------------------------------------------
    def _check_paused_conditions(self, d: Obj) -> None:
        """Progressing turns Unknown/DeploymentPaused on pause and DeploymentResumed on resume
        (which restarts the progress deadline); a timed-out rollout keeps its verdict."""
        if not rollout.has_progress_deadline(d):
            return
        cond = get_condition(d["status"], PROGRESSING)
        if cond is not None and cond.get("reason") == rollout.TIMED_OUT:
            return
        paused_shown = cond is not None and cond.get("reason") == rollout.PAUSED
        if d["spec"].get("paused") and not paused_shown:
            set_condition(d["status"], new_condition(PROGRESSING, "Unknown", rollout.PAUSED, "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_shown:
            set_condition(d["status"], new_condition(PROGRESSING, "Unknown", rollout.RESUMED, "Deployment is resumed"))
        else:
            return
        self._update_status(d)

    def _sync_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> None:
        self._write_status(d, rollout.calculate_status(d, all_rss, new_rs))

    def _sync_rollout_status(self, all_rss: list[Obj], new_rs: Obj | None, d: Obj) -> Result | None:
        """Status plus the Progressing verdict: complete, progressing (which moves the
        deadline), or timed out; requeued for when the deadline would pass."""
        status = rollout.calculate_status(d, all_rss, new_rs)
        now = dt.datetime.now(dt.UTC)
        if not rollout.has_progress_deadline(d):
            rollout.remove_condition(status, PROGRESSING)
        else:
            self._progressing(d, status, new_rs, now)
        failure = rollout.replica_failure(all_rss, new_rs)
        if failure is not None:
            set_condition(status, failure)
        else:
            rollout.remove_condition(status, REPLICA_FAILURE)
        self._write_status(d, status)
        left = rollout.progress_deadline_left(d, status, now)
        if left is None or rollout.deployment_complete(d, status):
            return None
        return Result(requeue_after=max(left, 0.0) + 0.2)

    def _progressing(self, d: Obj, status: Obj, new_rs: Obj | None, now: dt.datetime) -> None:
        current = get_condition(d["status"], PROGRESSING)
        already_complete = (
            status.get("replicas") == status.get("updatedReplicas")
            and current is not None
            and current.get("reason") == rollout.NEW_RS_AVAILABLE
        )
        if already_complete:
            return
        subject = f'ReplicaSet "{name_of(new_rs)}"' if new_rs is not None else f'Deployment "{name_of(d)}"'
        if rollout.deployment_complete(d, status):
            message = f"{subject} has successfully progressed."
            set_condition(status, new_condition(PROGRESSING, "True", rollout.NEW_RS_AVAILABLE, message))
        elif rollout.deployment_progressing(d, status):
            cond = new_condition(PROGRESSING, "True", rollout.RS_UPDATED, f"{subject} is progressing.")
            if current is not None and current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
            rollout.remove_condition(status, PROGRESSING)
            set_condition(status, cond)
        elif rollout.deployment_timed_out(d, status, now):
            message = f"{subject} has timed out progressing."
            set_condition(status, new_condition(PROGRESSING, "False", rollout.TIMED_OUT, message))

    def _write_status(self, d: Obj, status: Obj) -> None:
        status = rollout.compact_status(status)
        if status == rollout.compact_status(d["status"]):
            return
        d["status"] = status
        self._update_status(d)

    def _update_status(self, d: Obj) -> None:
        _replace(d, self.client.update_status(d, field_manager=FIELD_MANAGER))
        d.setdefault("status", {})


def _replace(target: Obj, new: Obj) -> None:
    """Swap an object's content for what the API returned, keeping the dict every list
    of this reconcile refers to."""
    api_version, kind = target.get("apiVersion"), target.get("kind")
    target.clear()
    target.update(new)
    target.setdefault("apiVersion", api_version)
    target.setdefault("kind", kind)


def _with(old_rss: list[Obj], new_rs: Obj | None) -> list[Obj]:
    return [*old_rss, new_rs] if new_rs is not None else list(old_rss)


def new(ctx: ControllerContext) -> DeploymentController:
    return DeploymentController(ctx)
