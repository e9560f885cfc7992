"""The Job controller: run pods to completion, retry failures, and say how it ended.

A Job keeps up to `parallelism` pods running until `completions` of them have succeeded
(NonIndexed), until every index 0..completions-1 has a succeeded pod (Indexed: each pod
gets its index in the `batch.kubernetes.io/job-completion-index` annotation and label, in
JOB_COMPLETION_INDEX and in its hostname `<job>-<index>`), or, with no completions, until
one pod has succeeded and the rest have stopped. Failed pods are replaced after an
exponential back-off (10 s doubling, at most 6 min) until more than `backoffLimit` pods
have failed; `activeDeadlineSeconds` bounds the whole run; `suspend` stops the pods.

Pods are counted as current Kubernetes counts them, with the
`batch.kubernetes.io/job-tracking` finalizer: a terminated pod's uid goes to
status.uncountedTerminatedPods first, then its finalizer is removed, then it moves into
succeeded/failed, so no pod is counted twice or lost when pods are deleted. The end is a
FailureTarget or SuccessCriteriaMet condition first, and Failed or Complete once no pod is
left terminating. A finished Job with `ttlSecondsAfterFinished` is deleted that long after
it finished (the TTL-after-finished controller's job, done here)."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from controllers import errors
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Result, object_key
from controllers.workloads.common import (
    controller_of,
    is_pod_active,
    is_pod_ready,
    is_pod_terminating,
    parse_time,
    pod_from_template,
    set_condition,
)
from controllers.workloads.history import PendingWrites

Obj = dict[str, Any]

MANAGER = "job-controller"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_OWNER_INDEX = "job-controller/owner"  # pods informer index: `namespace/job name` of the controlling Job
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Backoff:
    """How long to wait before replacing a failed pod: `base` seconds after the first
    failure since the last success, doubling per failure, at most `cap` (10 s and 6 min in
    Kubernetes; tests pass shorter ones)."""

    base: float = 10.0
    cap: float = 360.0

    def delay(self, failures: int) -> float:
        return 0.0 if failures <= 0 else min(self.cap, self.base * 2 ** (failures - 1))


# ---------------------------------------------------------------------- small pure helpers
def parse_indexes(text: str | None) -> set[int]:
    """`1,3-5` (status.completedIndexes) as {1, 3, 4, 5}."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def format_indexes(indexes: set[int]) -> str:
    """{1, 3, 4, 5} as `1,3-5`."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def completion_index(pod: Obj) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    return int(value) if value is not None and value.isdigit() else None


def condition_true(job: Obj, ctype: str) -> Obj | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and cond.get("status") == "True":
            return dict(cond)
    return None


def is_finished(job: Obj) -> bool:
    return condition_true(job, "Complete") is not None or condition_true(job, "Failed") is not None


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _tracked(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def _finished_at(pod: Obj, default: dt.datetime) -> dt.datetime:
    """When a pod's last container stopped (its failure time, for the back-off)."""
    times = [
        parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else default


def _job_owner_index(pod: Obj) -> list[str]:
    ref = controller_of(pod)
    if ref is None or ref.get("kind") != "Job":
        return []
    return [object_key({"metadata": {"namespace": pod["metadata"].get("namespace"), "name": ref["name"]}})]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(t: dt.datetime) -> str:
    return t.strftime(_RFC3339)


# ---------------------------------------------------------------------- the controller
class JobController:
    def __init__(self, ctx: ControllerContext, backoff: Backoff | None = None) -> None:
        self.client = ctx.client
        self.backoff = backoff or Backoff()
        self.jobs = ctx.informers.informer("batch/v1", "Job")
        self.pods = ctx.informers.informer("v1", "Pod")
        self.pods.cache.add_index(JOB_OWNER_INDEX, _job_owner_index)
        self.recorder = ctx.recorder(MANAGER)
        self.pending_pods = PendingWrites()
        self.pending_jobs = PendingWrites()
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, dt.datetime]] = {}  # job uid -> (failures since success, last)
        self.controller = Controller("job", self.reconcile, workers=2)
        self.controller.watch(self.jobs)
        self.controller.watch(self.pods, _job_owner_index)

    def start(self) -> JobController:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, key: str) -> Result | None:
        cached = self.jobs.cache.get(key)
        if cached is None:
            self._release(key, self._pods(key, None))  # pods of a deleted Job must not stay pinned
            self.pending_pods.forget(key)
            self.pending_jobs.forget(key)
            return None
        job = self.pending_jobs.view(key, [cached], self.jobs)[0]
        pods = self._pods(key, job)
        if job["metadata"].get("deletionTimestamp") or is_finished(job):
            self._release(key, pods)
            return None if job["metadata"].get("deletionTimestamp") else self._expire(job)
        job, status = self._account(key, job, pods)
        return self._sync(key, job, status, self._pods(key, job))

    def _pods(self, key: str, job: Obj | None) -> list[Obj]:
        """The Job's pods as they will be once the cache shows this controller's writes;
        with no Job, every pod a Job of that name controlled."""
        cached = self.pods.cache.by_index(JOB_OWNER_INDEX, key)
        pods = self.pending_pods.view(key, cached, self.pods)
        if job is None:
            return pods
        uid = job["metadata"]["uid"]
        mine = [p for p in pods if (controller_of(p) or {}).get("uid") == uid]
        strays = [p for p in pods if (controller_of(p) or {}).get("uid") != uid]
        self._release(key, strays)  # left by an earlier Job of the same name
        return mine

    def _write_status(self, key: str, job: Obj, status: Obj) -> Obj:
        if status == job.get("status"):
            return job
        updated = copy.deepcopy(job)
        updated["status"] = status
        written = self.client.update_status(updated, field_manager=MANAGER)
        self.pending_jobs.wrote(key, written)
        return written

    # ------------------------------------------------------------------ counting
    def _account(self, key: str, job: Obj, pods: list[Obj]) -> tuple[Obj, Obj]:
        """Count terminated pods: their uids go to uncountedTerminatedPods (succeeded indexes
        to completedIndexes) and are written, their finalizers come off, and the status
        returned has them in succeeded/failed, for the step's own write."""
        spec, status = job["spec"], dict(job.get("status") or {})
        indexed = spec.get("completionMode") == "Indexed"
        uncounted = status.get("uncountedTerminatedPods") or {}
        succeeded_uids = list(uncounted.get("succeeded") or [])
        failed_uids = list(uncounted.get("failed") or [])
        completed = parse_indexes(status.get("completedIndexes"))
        replace_terminating = spec.get("podReplacementPolicy", "TerminatingOrFailed") == "TerminatingOrFailed"
        finished: list[Obj] = []
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if not _tracked(pod) or uid in succeeded_uids or uid in failed_uids:
                continue
            phase = _phase(pod)
            if phase == "Succeeded":
                index = completion_index(pod)
                if not indexed:
                    succeeded_uids.append(uid)
                elif index is not None and index < int(spec.get("completions") or 0):
                    completed.add(index)
                finished.append(pod)
            elif phase == "Failed" or (is_pod_terminating(pod) and replace_terminating):
                failed_uids.append(uid)
                finished.append(pod)
        if not (finished or succeeded_uids or failed_uids):
            return job, status
        pending = {"succeeded": succeeded_uids, "failed": failed_uids}
        if indexed:
            status["completedIndexes"] = format_indexes(completed)
        if finished:
            job = self._write_status(key, job, {**status, "uncountedTerminatedPods": pending})
        counted = set(succeeded_uids) | set(failed_uids)
        self._release(key, [p for p in pods if p["metadata"]["uid"] in counted or p in finished])
        status = dict(job.get("status") or {})
        status["succeeded"] = len(completed) if indexed else int(status.get("succeeded") or 0) + len(succeeded_uids)
        status["failed"] = int(status.get("failed") or 0) + len(failed_uids)
        status["uncountedTerminatedPods"] = {}
        self._remember_failures(job, finished)
        return job, status

    def _remember_failures(self, job: Obj, finished: list[Obj]) -> None:
        """Failures since the last success (in the order the pods finished), and when the
        last one was counted: the back-off runs from then (containers' finishedAt has
        whole seconds only, too coarse for short back-offs)."""
        uid = job["metadata"]["uid"]
        now = _now()
        with self._lock:
            count, last = self._failures.get(uid, (0, now))
            for pod in sorted(finished, key=lambda p: _finished_at(p, now)):
                if _phase(pod) == "Succeeded":
                    count = 0
                else:
                    count, last = count + 1, now
            self._failures[uid] = (count, last)

    def _backoff_left(self, job: Obj) -> float:
        with self._lock:
            count, last = self._failures.get(job["metadata"]["uid"], (0, _now()))
        return (last - _now()).total_seconds() + self.backoff.delay(count)

    def _release(self, key: str, pods: list[Obj]) -> None:
        """Take the tracking finalizer off pods that are counted (or no longer counted)."""
        for pod in pods:
            if not _tracked(pod):
                continue
            meta = pod["metadata"]
            patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}
            try:
                released = self.client.patch(
                    "v1", "Pod", meta["name"], patch, meta["namespace"], "strategic", field_manager=MANAGER
                )
            except errors.NotFound:
                continue
            rmeta = released["metadata"]
            if rmeta.get("deletionTimestamp") and set(rmeta.get("finalizers") or []) <= {TRACKING_FINALIZER}:
                self.pending_pods.removed(key, released)  # it was only waiting for this finalizer
            else:
                self.pending_pods.wrote(key, released)

    # ------------------------------------------------------------------ the step
    def _sync(self, key: str, job: Obj, status: Obj, pods: list[Obj]) -> Result | None:
        spec = job["spec"]
        now = _now()
        active = [p for p in pods if is_pod_active(p)]
        terminating = _terminating(pods)
        waits: list[float] = []
        status = self._suspension(job, status, now)
        finishing = condition_true(job, "FailureTarget") or condition_true(job, "SuccessCriteriaMet")
        if finishing is None:
            finishing = self._finish_reason(job, status, active, now)
            if finishing is not None:
                status["conditions"] = set_condition(status.get("conditions") or [], finishing, _stamp(now))
        if finishing is not None or spec.get("suspend"):
            self._delete_pods(key, job, active)
            active = []
        else:
            active, wait = self._manage(key, job, status, active, len(terminating))
            if wait is not None:
                waits.append(wait)
            deadline = spec.get("activeDeadlineSeconds")
            started = parse_time(status.get("startTime"))
            if deadline is not None and started is not None:
                waits.append(int(deadline) - (now - started).total_seconds())
        terminating = _terminating(self._pods(key, job))  # with the pods this step deleted
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        status["terminating"] = len(terminating)
        if finishing is not None and not active and not terminating:
            status = self._finish(job, status, finishing, now)
        job = self._write_status(key, job, _omit_zeros(status))
        if is_finished(job):
            return self._expire(job)
        return Result(max(0.05, min(waits))) if waits else None

    def _suspension(self, job: Obj, status: Obj, now: dt.datetime) -> Obj:
        """The Suspended condition; resuming (or starting) sets startTime, which restarts
        the activeDeadlineSeconds clock."""
        suspend = bool(job["spec"].get("suspend"))
        was_suspended = condition_true(job, "Suspended") is not None
        if suspend and not was_suspended and not is_finished(job):
            cond = {"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended"}
            status["conditions"] = set_condition(status.get("conditions") or [], cond, _stamp(now))
            self.recorder.event(job, "Normal", "Suspended", "Job suspended")
        elif not suspend and was_suspended:
            cond = {"type": "Suspended", "status": "False", "reason": "JobResumed", "message": "Job resumed"}
            status["conditions"] = set_condition(status.get("conditions") or [], cond, _stamp(now))
            status["startTime"] = _stamp(now)
            self.recorder.event(job, "Normal", "Resumed", "Job resumed")
        elif not suspend and not status.get("startTime"):
            status["startTime"] = _stamp(now)
        return status

    def _finish_reason(self, job: Obj, status: Obj, active: list[Obj], now: dt.datetime) -> Obj | None:
        """The FailureTarget or SuccessCriteriaMet condition this step reaches, if any."""
        spec = job["spec"]
        failed = int(status.get("failed") or 0)
        limit = int(spec.get("backoffLimit", 6))
        if failed > limit or _past_backoff_limit_on_failure(job, active):
            return _condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        deadline = None if spec.get("suspend") else spec.get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime"))
        if deadline is not None and started is not None and (now - started).total_seconds() >= int(deadline):
            return _condition("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline")
        succeeded = int(status.get("succeeded") or 0)
        completions = spec.get("completions")
        if completions is None:
            done = succeeded > 0 and not active
        elif spec.get("completionMode") == "Indexed":
            done = len(parse_indexes(status.get("completedIndexes"))) >= int(completions)
        else:
            done = succeeded >= int(completions)
        if done:
            return _condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods")
        return None

    def _finish(self, job: Obj, status: Obj, target: Obj, now: dt.datetime) -> Obj:
        """Once no pod is left running or terminating, the terminal condition."""
        success = target["type"] == "SuccessCriteriaMet"
        terminal = {**target, "type": "Complete" if success else "Failed"}
        terminal.pop("lastTransitionTime", None)
        terminal.pop("lastProbeTime", None)
        status["conditions"] = set_condition(status.get("conditions") or [], terminal, _stamp(now))
        if success:
            status["completionTime"] = _stamp(now)
            self.recorder.event(job, "Normal", "Completed", "Job completed")
        else:
            self.recorder.event(job, "Warning", target["reason"], target["message"])
        with self._lock:
            self._failures.pop(job["metadata"]["uid"], None)
        return status

    def _manage(
        self, key: str, job: Obj, status: Obj, active: list[Obj], terminating: int
    ) -> tuple[list[Obj], float | None]:
        """Create or delete pods toward the number that should be running; returns the
        active pods after that and, while a back-off holds creation, how long it lasts.
        With podReplacementPolicy Failed, a terminating pod holds its slot until it fails."""
        spec = job["spec"]
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        succeeded = int(status.get("succeeded") or 0)
        indexed = spec.get("completionMode") == "Indexed"
        if completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, int(completions) - succeeded))
        surplus = self._surplus(job, status, active) if indexed else []
        keep = [p for p in active if p not in surplus]
        if len(keep) > want:
            surplus += _removal_order(keep)[: len(keep) - want]
            keep = [p for p in keep if p not in surplus]
        self._delete_pods(key, job, surplus)
        missing = want - len(keep)
        if spec.get("podReplacementPolicy") == "Failed":
            missing -= terminating
        if missing <= 0:
            return keep, None
        left = self._backoff_left(job)
        if left > 0:
            return keep, left
        if indexed:
            held = {completion_index(p) for p in keep}
            done = parse_indexes(status.get("completedIndexes"))
            free = [i for i in range(int(completions or 0)) if i not in held and i not in done]
            slots: list[int | None] = list(free[:missing])
        else:
            slots = [None] * missing
        created = [self._create_pod(key, job, index) for index in slots]
        return keep + created, None

    def _surplus(self, job: Obj, status: Obj, active: list[Obj]) -> list[Obj]:
        """Indexed pods with no index to work on: out of range, already completed, or a
        second pod for an index (the older one stays)."""
        completions = int(job["spec"].get("completions") or 0)
        done = parse_indexes(status.get("completedIndexes"))
        seen: set[int] = set()
        out = []
        for pod in sorted(active, key=lambda p: str(p["metadata"].get("creationTimestamp") or "")):
            index = completion_index(pod)
            if index is None or index >= completions or index in done or index in seen:
                out.append(pod)
            else:
                seen.add(index)
        return out

    def _create_pod(self, key: str, job: Obj, index: int | None) -> Obj:
        name = job["metadata"]["name"]
        template = copy.deepcopy(job["spec"]["template"])
        labels: dict[str, str] = {}
        generate_name = f"{name}-"
        if index is not None:
            labels[COMPLETION_INDEX] = str(index)
            generate_name = f"{name}-{index}-"
            tmeta = template.setdefault("metadata", {})
            tmeta["annotations"] = {**(tmeta.get("annotations") or {}), COMPLETION_INDEX: str(index)}
            pod_spec = template.setdefault("spec", {})
            pod_spec.setdefault("hostname", f"{name}-{index}")
            env_var = {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
            }
            for group in ("initContainers", "containers"):
                for container in pod_spec.get(group) or []:
                    env = [e for e in container.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
                    container["env"] = [*env, env_var]
        pod = pod_from_template(template, job, generate_name=generate_name, extra_labels=labels)
        pod["metadata"]["finalizers"] = [*(pod["metadata"].get("finalizers") or []), TRACKING_FINALIZER]
        try:
            created = self.client.create(pod, field_manager=MANAGER)
        except errors.APIError as exc:
            self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {exc}")
            raise
        self.pending_pods.wrote(key, created)
        self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        return created

    def _delete_pods(self, key: str, job: Obj, pods: list[Obj]) -> None:
        for pod in pods:
            meta = pod["metadata"]
            try:
                deleted = self.client.delete("v1", "Pod", meta["name"], meta["namespace"], precondition_uid=meta["uid"])
            except (errors.NotFound, errors.Conflict):
                continue
            self.pending_pods.deleted(key, deleted)
            self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")

    # ------------------------------------------------------------------ after the end
    def _expire(self, job: Obj) -> Result | None:
        """ttlSecondsAfterFinished: delete the Job (and, in the foreground, its pods)."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        status = job.get("status") or {}
        terminal = condition_true(job, "Complete") or condition_true(job, "Failed") or {}
        finished = parse_time(status.get("completionTime") or terminal.get("lastTransitionTime"))
        if finished is None:
            return None
        left = (finished - _now()).total_seconds() + int(ttl)
        if left > 0:
            return Result(left)
        meta = job["metadata"]
        try:
            self.client.delete(
                "batch/v1", "Job", meta["name"], meta["namespace"], "Foreground", precondition_uid=meta["uid"]
            )
        except (errors.NotFound, errors.Conflict):
            pass
        return None


def _terminating(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if is_pod_terminating(p) and _phase(p) not in ("Succeeded", "Failed")]


def _condition(ctype: str, reason: str, message: str) -> Obj:
    return {"type": ctype, "status": "True", "reason": reason, "message": message, "lastProbeTime": None}


def _past_backoff_limit_on_failure(job: Obj, active: list[Obj]) -> bool:
    """restartPolicy OnFailure restarts containers in place: their restarts are the retries."""
    template_spec = (job["spec"].get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(
        int(s.get("restartCount") or 0)
        for p in active
        for group in ("initContainerStatuses", "containerStatuses")
        for s in (p.get("status") or {}).get(group) or []
    )
    limit = int(job["spec"].get("backoffLimit", 6))
    return restarts > 0 if limit == 0 else restarts >= limit


def _removal_order(pods: list[Obj]) -> list[Obj]:
    """Which active pods go first when there are too many: unscheduled, then not ready,
    then the newest."""
    newest_first = sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""), reverse=True)
    return sorted(newest_first, key=lambda p: (bool((p.get("spec") or {}).get("nodeName")), is_pod_ready(p)))


def _omit_zeros(status: Obj) -> Obj:
    """Counts of zero are left out, as the API's omitempty fields are (ready and
    terminating are pointers there, so a zero is shown)."""
    return {k: v for k, v in status.items() if not (k in ("active", "succeeded", "failed") and v == 0)}


def new(ctx: ControllerContext) -> JobController:
    return JobController(ctx)
