"""The StatefulSet controller: pods with stable names, hostnames and volumes.

Pod `<set>-<ordinal>` keeps its name, its hostname (and subdomain, the set's serviceName),
and its PersistentVolumeClaims `<claim>-<set>-<ordinal>` across restarts. With the default
OrderedReady policy pods are created one at a time in ordinal order, each Running and Ready
(and available for minReadySeconds) before the next, and removed from the highest ordinal
down; Parallel creates and removes them all at once. A RollingUpdate replaces pods from the
highest ordinal down to `partition`, one at a time, each healthy before the next; OnDelete
leaves replacement to the user. Template revisions are ControllerRevisions, and the status
carries currentRevision/updateRevision so that `kubectl rollout status` can follow.

Claims are created, never bound here: without a provisioner a claim stays Pending, as in a
cluster with no default StorageClass."""

from __future__ import annotations

import copy
import logging
from typing import Any

from controllers import errors
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Result, object_key
from controllers.selectors import label_selector_from_dict
from controllers.workloads.common import (
    controller_of,
    controller_ref,
    is_controlled_by,
    is_pod_available,
    is_pod_ready,
    is_pod_terminating,
    pod_from_template,
)
from controllers.workloads.history import REVISION_HASH_LABEL, History, Revisions, seconds_until_available

log = logging.getLogger(__name__)

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
MANAGER = "statefulset-controller"


def pod_ordinal(set_name: str, pod: Obj) -> int | None:
    """The ordinal in `<set>-<ordinal>`, or None for a name the set would not give."""
    prefix, _, suffix = pod["metadata"]["name"].rpartition("-")
    if prefix != set_name or not suffix.isdigit() or (suffix != "0" and suffix.startswith("0")):
        return None
    return int(suffix)


def claim_name(claim_template: Obj, set_name: str, ordinal: int) -> str:
    return f"{claim_template['metadata']['name']}-{set_name}-{ordinal}"


def _is_running_and_available(pod: Obj, min_ready_seconds: int) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_available(pod, min_ready_seconds)


def _is_finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _revision_of(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL, "")


class _Step:
    """The outcome of one pass over the pods: whether to look again soon."""

    def __init__(self) -> None:
        self.requeue_after: float | None = None

    def wait_for(self, seconds: float | None) -> None:
        if seconds is not None:
            self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


class StatefulSetController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.sets = ctx.informers.informer("apps/v1", "StatefulSet")
        self.pods = ctx.informers.informer("v1", "Pod")
        self.claims = ctx.informers.informer("v1", "PersistentVolumeClaim")
        self.history = History(ctx.client, ctx.informers.informer("apps/v1", "ControllerRevision"), MANAGER)
        self.recorder = ctx.recorder(MANAGER)
        self.controller = Controller("statefulset", self.reconcile, workers=2)
        self.controller.watch(self.sets)
        self.controller.watch(self.pods, _owning_set)

    def start(self) -> StatefulSetController:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, key: str) -> Result | None:
        sts = self.sets.cache.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None  # the garbage collector removes what the set owned
        revisions = self.history.sync(sts)
        pods = self._pods(sts)
        step = _Step()
        self._sync_pods(sts, revisions, pods, step)
        self._delete_scaled_down_claims(sts, pods)
        self.history.truncate(sts, revisions, {_revision_of(p) for p in pods.values()})
        self._write_status(sts, revisions, list(pods.values()), step)
        return Result(step.requeue_after) if step.requeue_after is not None else None

    def _pods(self, sts: Obj) -> dict[int, Obj]:
        """The set's pods by ordinal (pods with a name the set would not give are ignored)."""
        name = sts["metadata"]["name"]
        out: dict[int, Obj] = {}
        for pod in self.pods.cache.by_index("owner", sts["metadata"]["uid"]):
            ordinal = pod_ordinal(name, pod)
            if ordinal is not None and is_controlled_by(pod, sts):
                out[ordinal] = pod
        return out

    def _range(self, sts: Obj) -> range:
        spec = sts["spec"]
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        return range(start, start + int(spec.get("replicas", 1)))

    def _sync_pods(self, sts: Obj, revisions: Revisions, pods: dict[int, Obj], step: _Step) -> None:
        """One pass of the ordering rules; returns early wherever OrderedReady must wait."""
        spec = sts["spec"]
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int(spec.get("minReadySeconds") or 0)
        wanted = self._range(sts)
        for ordinal in wanted:
            pod = pods.get(ordinal)
            if pod is not None and _is_finished(pod) and not is_pod_terminating(pod):
                self._delete_pod(sts, pod)  # a finished pod is replaced under the same name
                if monotonic:
                    return
                continue
            if pod is None:
                pod = self._orphan(sts, ordinal)
                if pod is None:
                    self._create_pod(sts, revisions, ordinal)
                if monotonic:
                    return
                continue
            if is_pod_terminating(pod):
                if monotonic:
                    return
                continue
            if not _is_running_and_available(pod, min_ready):
                step.wait_for(seconds_until_available(pod, min_ready))
                if monotonic:
                    return
        condemned = sorted((o for o in pods if o not in wanted), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if not is_pod_terminating(pod):
                self._delete_pod(sts, pod)
            if monotonic:
                return
        if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
            self._rolling_update(sts, revisions, pods, step)

    def _rolling_update(self, sts: Obj, revisions: Revisions, pods: dict[int, Obj], step: _Step) -> None:
        """Replace the highest out-of-date ordinal at or above the partition, one at a time."""
        spec = sts["spec"]
        min_ready = int(spec.get("minReadySeconds") or 0)
        wanted = self._range(sts)
        partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition") or 0)
        update = revisions.update["metadata"]["name"]
        for ordinal in reversed(wanted[partition:]):
            pod = pods.get(ordinal)
            if pod is None:
                continue
            if _revision_of(pod) != update and not is_pod_terminating(pod):
                self._delete_pod(sts, pod)
                return
            if not _is_running_and_available(pod, min_ready):
                step.wait_for(seconds_until_available(pod, min_ready))
                return

    # ------------------------------------------------------------------ pods and claims
    def _orphan(self, sts: Obj, ordinal: int) -> Obj | None:
        """A pod with the name of this ordinal and no controller, adopted if it matches."""
        meta = sts["metadata"]
        pod = self.pods.cache.get(f"{meta['namespace']}/{meta['name']}-{ordinal}")
        if pod is None:
            return None
        if controller_of(pod) is not None:
            return pod  # someone else's: wait rather than fight over the name
        if not label_selector_from_dict(sts["spec"].get("selector")).matches(pod["metadata"].get("labels")):
            return pod
        refs = [*(pod["metadata"].get("ownerReferences") or []), controller_ref(sts)]
        patch = {"metadata": {"ownerReferences": refs, "resourceVersion": pod["metadata"]["resourceVersion"]}}
        try:
            return self.client.patch(
                "v1", "Pod", pod["metadata"]["name"], patch, meta["namespace"], field_manager=MANAGER
            )
        except errors.NotFound:
            return None

    def _new_pod(self, sts: Obj, revisions: Revisions, ordinal: int) -> Obj:
        """Pod `ordinal` at the revision it belongs to: below the partition the current
        revision, so a deleted pod there comes back unchanged; otherwise the update one."""
        spec = sts["spec"]
        strategy = spec.get("updateStrategy") or {}
        partition = (strategy.get("rollingUpdate") or {}).get("partition")
        position = ordinal - self._range(sts).start
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        revision = revisions.current if rolling and partition is not None and position < partition else revisions.update
        template = copy.deepcopy(revision["data"]["spec"]["template"])
        template.pop("$patch", None)
        name = f"{sts['metadata']['name']}-{ordinal}"
        labels = {
            POD_NAME_LABEL: name,
            POD_INDEX_LABEL: str(ordinal),
            REVISION_HASH_LABEL: revision["metadata"]["name"],
        }
        pod = pod_from_template(template, sts, name=name, extra_labels=labels)
        pod_spec = pod["spec"]
        pod_spec["hostname"] = name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        volumes = list(pod_spec.get("volumes") or [])
        for claim in spec.get("volumeClaimTemplates") or []:
            vol_name = claim["metadata"]["name"]
            volumes = [v for v in volumes if v.get("name") != vol_name]
            source = {"claimName": claim_name(claim, sts["metadata"]["name"], ordinal)}
            volumes.append({"name": vol_name, "persistentVolumeClaim": source})
        if volumes:
            pod_spec["volumes"] = volumes
        return pod

    def _create_pod(self, sts: Obj, revisions: Revisions, ordinal: int) -> None:
        pod = self._new_pod(sts, revisions, ordinal)
        name, set_name = pod["metadata"]["name"], sts["metadata"]["name"]
        try:
            self._create_claims(sts, ordinal, name)
            self.client.create(pod, field_manager=MANAGER)
        except errors.AlreadyExists:
            return  # created by an earlier pass the cache has not shown yet
        except errors.APIError as exc:
            self.recorder.event(
                sts, "Warning", "FailedCreate", f"create Pod {name} in StatefulSet {set_name} failed error: {exc}"
            )
            raise
        self.recorder.event(
            sts, "Normal", "SuccessfulCreate", f"create Pod {name} in StatefulSet {set_name} successful"
        )

    def _create_claims(self, sts: Obj, ordinal: int, pod_name: str) -> None:
        meta, spec = sts["metadata"], sts["spec"]
        selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        delete_with_set = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete"
        for template in spec.get("volumeClaimTemplates") or []:
            name = claim_name(template, meta["name"], ordinal)
            if self.claims.cache.get(f"{meta['namespace']}/{name}") is not None:
                continue
            tmeta = template.get("metadata") or {}
            claim_meta: Obj = {
                "name": name,
                "namespace": meta["namespace"],
                "labels": {**(tmeta.get("labels") or {}), **selector_labels},
            }
            if tmeta.get("annotations"):
                claim_meta["annotations"] = dict(tmeta["annotations"])
            if delete_with_set:
                claim_meta["ownerReferences"] = [controller_ref(sts)]
            claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": claim_meta}
            claim["spec"] = copy.deepcopy(template.get("spec") or {})
            try:
                self.client.create(claim, field_manager=MANAGER)
            except errors.AlreadyExists:
                continue
            self.recorder.event(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Claim {name} Pod {pod_name} in StatefulSet {meta['name']} success",
            )

    def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        try:
            self.client.delete("v1", "Pod", name, pod["metadata"]["namespace"], precondition_uid=pod["metadata"]["uid"])
        except (errors.NotFound, errors.Conflict):
            return  # already gone, or already replaced
        self.recorder.event(
            sts, "Normal", "SuccessfulDelete", f"delete Pod {name} in StatefulSet {sts['metadata']['name']} successful"
        )

    def _delete_scaled_down_claims(self, sts: Obj, pods: dict[int, Obj]) -> None:
        """persistentVolumeClaimRetentionPolicy.whenScaled=Delete: a claim goes once its pod
        has gone for good (the default, Retain, keeps every claim)."""
        spec, meta = sts["spec"], sts["metadata"]
        if (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") != "Delete":
            return
        wanted = self._range(sts)
        templates = spec.get("volumeClaimTemplates") or []
        for claim in self.claims.cache.list(meta["namespace"]):
            cname = claim["metadata"]["name"]
            for template in templates:
                prefix = f"{template['metadata']['name']}-{meta['name']}-"
                suffix = cname[len(prefix) :]
                if not cname.startswith(prefix) or not suffix.isdigit():
                    continue
                ordinal = int(suffix)
                if ordinal not in wanted and ordinal not in pods and not claim["metadata"].get("deletionTimestamp"):
                    try:
                        self.client.delete("v1", "PersistentVolumeClaim", cname, meta["namespace"])
                    except errors.NotFound:
                        pass

    # ------------------------------------------------------------------ status
    def _write_status(self, sts: Obj, revisions: Revisions, pods: list[Obj], step: _Step) -> None:
        spec = sts["spec"]
        min_ready = int(spec.get("minReadySeconds") or 0)
        live = [p for p in pods if not is_pod_terminating(p)]
        current, update = revisions.current["metadata"]["name"], revisions.update["metadata"]["name"]
        running_ready = [p for p in live if (p.get("status") or {}).get("phase") == "Running" and is_pod_ready(p)]
        status: Obj = {
            **(sts.get("status") or {}),
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": len(running_ready),
            "availableReplicas": sum(1 for p in running_ready if is_pod_available(p, min_ready)),
            "currentReplicas": sum(1 for p in live if _revision_of(p) == current),
            "updatedReplicas": sum(1 for p in live if _revision_of(p) == update),
            "currentRevision": current,
            "updateRevision": update,
            "collisionCount": revisions.collision_count,
        }
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        if rolling and status["updatedReplicas"] == status["replicas"] == status["readyReplicas"]:
            status["currentRevision"] = update  # the roll is complete: the update is current
            status["currentReplicas"] = status["updatedReplicas"]
        if status["availableReplicas"] < status["readyReplicas"]:
            for pod in running_ready:
                step.wait_for(seconds_until_available(pod, min_ready))
        if status == sts.get("status"):
            return
        updated = copy.deepcopy(sts)
        updated["status"] = status
        self.client.update_status(updated, field_manager=MANAGER)


def _owning_set(pod: Obj) -> list[str]:
    ref = controller_of(pod)
    if ref is None or ref.get("kind") != "StatefulSet":
        return []
    return [object_key({"metadata": {"namespace": pod["metadata"].get("namespace"), "name": ref["name"]}})]


def new(ctx: ControllerContext) -> StatefulSetController:
    return StatefulSetController(ctx)
