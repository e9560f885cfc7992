"""Resource health as Argo CD reports it, from the status fields the controllers write.

Sync waits for each wave to be healthy and the app's health is its worst resource, so
each rule answers "has this object reached the state its spec asks for": workloads by
the numbers `kubectl rollout status` reads, Pods by phase, readiness and waiting
reasons, Jobs and PVCs by their conditions and phases, Services and Ingresses by their
load-balancer address, child Applications by their own health.

Kinds without a rule are Healthy once they exist (Argo CD's default) unless their status
speaks kstatus' generic language: `status.observedGeneration` behind
`metadata.generation`, `Reconciling=True` or a `Ready` condition that is not True is
Progressing; `Stalled=True` is Degraded. A `Ready=False` alone is Progressing, not
Degraded, as kstatus reads it: a controller reports a failure it will not recover from
with `Stalled`, and Ready=False is also what every resource shows while it converges.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

HEALTHY, PROGRESSING, DEGRADED = "Healthy", "Progressing", "Degraded"
SUSPENDED, MISSING, UNKNOWN = "Suspended", "Missing", "Unknown"
# Best to worst: the app shows the worst of its resources.
ORDER = (HEALTHY, SUSPENDED, PROGRESSING, MISSING, DEGRADED, UNKNOWN)
_RANK = {status: i for i, status in enumerate(ORDER)}

# Waiting reasons that will not clear by themselves (the kubelet retries, but a person
# has to fix the image, the command or the config).
_FAILED_WAITING = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}
)


@dataclass(frozen=True)
class Health:
    status: str
    message: str = ""


def resource_health(obj: Obj | None) -> Health:
    """The health of one live object (None: it does not exist, so Missing)."""
    if obj is None:
        return Health(MISSING, "resource does not exist")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return Health(PROGRESSING, "Pending deletion")
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return _RULES.get((group, str(obj.get("kind", ""))), _generic)(obj)


def aggregate(healths: Iterable[Health]) -> Health:
    """The app's health: its worst resource (order `ORDER`), with that resource's
    message; Healthy when there is nothing to report on."""
    worst = Health(HEALTHY)
    for health in healths:
        if _RANK.get(health.status, _RANK[UNKNOWN]) > _RANK[worst.status]:
            worst = health
    return worst


# --------------------------------------------------------------------------- helpers


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _condition(obj: Obj, kind: str) -> Obj | None:
    for cond in _status(obj).get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def _is_true(obj: Obj, kind: str) -> bool:
    cond = _condition(obj, kind)
    return cond is not None and cond.get("status") == "True"


def _generation_observed(obj: Obj) -> bool:
    """True once the controller has seen the latest spec (an object it never observed
    has no observedGeneration)."""
    generation = (obj.get("metadata") or {}).get("generation") or 0
    return int(_status(obj).get("observedGeneration") or 0) >= int(generation)


def _count(status: Obj, field: str) -> int:
    return int(status.get(field) or 0)


def _replicas(obj: Obj) -> int:
    value = _spec(obj).get("replicas")
    return 1 if value is None else int(value)


# --------------------------------------------------------------------------- workloads


def _deployment(obj: Obj) -> Health:
    if _spec(obj).get("paused"):
        return Health(SUSPENDED, "Deployment is paused")
    if not _generation_observed(obj):
        return Health(
            PROGRESSING, "Waiting for rollout to finish: observed deployment generation less than desired generation"
        )
    progressing = _condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(DEGRADED, f'Deployment "{_name(obj)}" exceeded its progress deadline')
    status, wanted = _status(obj), _replicas(obj)
    updated, total = _count(status, "updatedReplicas"), _count(status, "replicas")
    available = _count(status, "availableReplicas")
    if updated < wanted:
        return Health(
            PROGRESSING,
            f"Waiting for rollout to finish: {updated} out of {wanted} new replicas have been updated...",
        )
    if total > updated:
        return Health(
            PROGRESSING,
            f"Waiting for rollout to finish: {total - updated} old replicas are pending termination...",
        )
    if available < updated:
        return Health(
            PROGRESSING,
            f"Waiting for rollout to finish: {available} of {updated} updated replicas are available...",
        )
    return Health(HEALTHY)


def _replicaset(obj: Obj) -> Health:
    if not _generation_observed(obj):
        return Health(
            PROGRESSING, "Waiting for rollout to finish: observed replica set generation less than desired generation"
        )
    failure = _condition(obj, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return Health(DEGRADED, str(failure.get("message", "")))
    wanted, available = _replicas(obj), _count(_status(obj), "availableReplicas")
    if available < wanted:
        return Health(
            PROGRESSING, f"Waiting for rollout to finish: {available} out of {wanted} new replicas are available..."
        )
    return Health(HEALTHY)


def _statefulset(obj: Obj) -> Health:
    status = _status(obj)
    if not status.get("observedGeneration") or not _generation_observed(obj):
        return Health(PROGRESSING, "Waiting for statefulset spec update to be observed...")
    wanted, ready = _replicas(obj), _count(status, "readyReplicas")
    if ready < wanted:
        return Health(PROGRESSING, f"Waiting for {wanted - ready} pods to be ready...")
    strategy = _spec(obj).get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return Health(HEALTHY, f"statefulset has {ready} ready pods")
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    updated = _count(status, "updatedReplicas")
    if partition:
        if updated < wanted - partition:
            return Health(
                PROGRESSING,
                f"Waiting for partitioned roll out to finish: {updated} out of {wanted - partition} "
                "new pods have been updated...",
            )
        return Health(HEALTHY, f"partitioned roll out complete: {updated} new pods have been updated...")
    revision = status.get("updateRevision", "")
    if revision != status.get("currentRevision", ""):
        return Health(
            PROGRESSING,
            f"waiting for statefulset rolling update to complete {updated} pods at revision {revision}...",
        )
    return Health(HEALTHY, f"statefulset rolling update complete {ready} pods at revision {revision}...")


def _daemonset(obj: Obj) -> Health:
    if not _generation_observed(obj):
        return Health(PROGRESSING, "Waiting for daemon set spec update to be observed...")
    status = _status(obj)
    wanted, updated = _count(status, "desiredNumberScheduled"), _count(status, "updatedNumberScheduled")
    if (_spec(obj).get("updateStrategy") or {}).get("type") == "OnDelete":
        return Health(HEALTHY, f"daemon set {updated} out of {wanted} new pods have been updated")
    name = _name(obj)
    if updated < wanted:
        return Health(
            PROGRESSING,
            f'Waiting for daemon set "{name}" rollout to finish: {updated} out of {wanted} '
            "new pods have been updated...",
        )
    available = _count(status, "numberAvailable")
    if available < wanted:
        return Health(
            PROGRESSING,
            f'Waiting for daemon set "{name}" rollout to finish: {available} of {wanted} updated pods are available...',
        )
    return Health(HEALTHY)


def _pod(obj: Obj) -> Health:
    status = _status(obj)
    restart_policy = _spec(obj).get("restartPolicy") or "Always"
    containers = [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
    message = str(status.get("message") or "")
    # Only long-running pods: a hook pod (Never/OnFailure) stuck in ImagePullBackOff
    # may still recover and run, and a sync must not count it as failed too early.
    if restart_policy == "Always":
        stuck = [_waiting_message(c) for c in containers if _waiting_reason(c) in _FAILED_WAITING]
        if stuck:
            return Health(DEGRADED, "; ".join(stuck))
    phase = status.get("phase") or "Pending"
    if phase == "Pending":
        return Health(PROGRESSING, message)
    if phase == "Succeeded":
        return Health(HEALTHY, message)
    if phase == "Failed":
        return Health(DEGRADED, message or next(filter(None, map(_terminated_message, containers)), ""))
    if phase != "Running":
        return Health(UNKNOWN, message)
    if restart_policy != "Always":
        return Health(PROGRESSING, message)  # a finite pod (a hook) is done only once it Succeeded
    if _is_true(obj, "Ready"):
        return Health(HEALTHY, message)
    if any(((c.get("lastState") or {}).get("terminated")) for c in containers):
        return Health(DEGRADED, message or "container restarted and is not ready")
    return Health(PROGRESSING, message)


def _waiting_reason(container: Obj) -> str:
    return str(((container.get("state") or {}).get("waiting") or {}).get("reason") or "")


def _waiting_message(container: Obj) -> str:
    waiting = (container.get("state") or {}).get("waiting") or {}
    text = f'container "{container.get("name", "")}" is waiting: {waiting.get("reason", "")}'
    return f"{text}: {waiting['message']}" if waiting.get("message") else text


def _terminated_message(container: Obj) -> str:
    terminated = (container.get("state") or {}).get("terminated") or {}
    if terminated.get("message"):
        return str(terminated["message"])
    if terminated.get("reason") == "OOMKilled":
        return "OOMKilled"
    if terminated.get("exitCode"):
        return f'container "{container.get("name", "")}" failed with exit code {terminated["exitCode"]}'
    return ""


def _job(obj: Obj) -> Health:
    failed = _condition(obj, "Failed")
    if failed is not None and failed.get("status") == "True":
        return Health(DEGRADED, str(failed.get("message") or failed.get("reason") or "Job failed"))
    if _is_true(obj, "Complete"):
        return Health(HEALTHY, "Job completed")
    if _spec(obj).get("suspend"):
        return Health(SUSPENDED, "Job is suspended")
    return Health(PROGRESSING, f"Job has {_count(_status(obj), 'active')} active pods")


def _cronjob(obj: Obj) -> Health:
    if _spec(obj).get("suspend"):
        return Health(SUSPENDED, "CronJob is suspended")
    status = _status(obj)
    scheduled = _parse_time(status.get("lastScheduleTime"))
    if scheduled is None:
        return Health(HEALTHY, "CronJob has not been scheduled yet")
    if status.get("active"):
        return Health(HEALTHY, "CronJob has active jobs")
    succeeded = _parse_time(status.get("lastSuccessfulTime"))
    if succeeded is None or succeeded < scheduled:
        return Health(DEGRADED, "CronJob has not completed its last execution successfully")
    return Health(HEALTHY, "CronJob has completed its last execution successfully")


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- networking and storage


def _load_balanced(obj: Obj) -> bool:
    return bool((_status(obj).get("loadBalancer") or {}).get("ingress"))


def _service(obj: Obj) -> Health:
    if _spec(obj).get("type") == "LoadBalancer" and not _load_balanced(obj):
        return Health(PROGRESSING, "Waiting for the load balancer to get an address")
    return Health(HEALTHY)


def _ingress(obj: Obj) -> Health:
    if not _load_balanced(obj):
        return Health(PROGRESSING, "Waiting for the ingress to get an address")
    return Health(HEALTHY)


def _pvc(obj: Obj) -> Health:
    phase = _status(obj).get("phase")
    if phase == "Bound":
        return Health(HEALTHY)
    if phase == "Pending":
        return Health(PROGRESSING, "Waiting for the claim to be bound")
    if phase == "Lost":
        return Health(DEGRADED, "The claim lost its volume")
    return Health(UNKNOWN, f"Unknown phase {phase!r}" if phase else "")


# --------------------------------------------------------------------------- cluster objects


def _hpa(obj: Obj) -> Health:
    conditions = [c for c in _status(obj).get("conditions") or () if isinstance(c, dict)]
    for cond in conditions:
        if cond.get("type") in ("AbleToScale", "ScalingActive") and cond.get("status") == "False":
            if cond.get("reason") == "ScalingDisabled":  # the target was scaled to zero on purpose
                return Health(SUSPENDED, str(cond.get("message", "")))
            return Health(DEGRADED, str(cond.get("message") or cond.get("reason") or ""))
    if not conditions:
        return Health(PROGRESSING, "Waiting to Autoscale")
    return Health(HEALTHY)


def _available_condition(kind: str) -> Callable[[Obj], Health]:
    """Objects that are usable once one condition is True (APIService: Available)."""

    def rule(obj: Obj) -> Health:
        cond = _condition(obj, kind)
        if cond is not None and cond.get("status") == "True":
            return Health(HEALTHY)
        message = str((cond or {}).get("message") or f"Waiting for condition {kind}")
        return Health(PROGRESSING, message)

    return rule


def _crd(obj: Obj) -> Health:
    names = _condition(obj, "NamesAccepted")
    if names is not None and names.get("status") == "False":
        return Health(DEGRADED, str(names.get("message", "")))
    return _available_condition("Established")(obj)


def _namespace(obj: Obj) -> Health:
    phase = _status(obj).get("phase") or "Active"
    if phase == "Active":
        return Health(HEALTHY)
    return Health(PROGRESSING, f"Namespace is {phase}")


def _application(obj: Obj) -> Health:
    """A child Application (app of apps): its own reported health."""
    health = _status(obj).get("health") or {}
    if not health.get("status"):
        return Health(PROGRESSING, "Waiting for the application to report its health")
    return Health(str(health["status"]), str(health.get("message") or ""))


def _generic(obj: Obj) -> Health:
    """kstatus' reading of standard conditions, for kinds without a rule of their own."""
    if not _generation_observed(obj) and "observedGeneration" in _status(obj):
        return Health(PROGRESSING, "Waiting for the controller to observe the latest generation")
    stalled = _condition(obj, "Stalled")
    if stalled is not None and stalled.get("status") == "True":
        return Health(DEGRADED, str(stalled.get("message") or stalled.get("reason") or "Stalled"))
    reconciling = _condition(obj, "Reconciling")
    if reconciling is not None and reconciling.get("status") == "True":
        return Health(PROGRESSING, str(reconciling.get("message") or "Reconciling"))
    ready = _condition(obj, "Ready")
    if ready is not None and ready.get("status") != "True":
        return Health(PROGRESSING, str(ready.get("message") or ready.get("reason") or "Not ready"))
    return Health(HEALTHY)


_RULES: dict[tuple[str, str], Callable[[Obj], Health]] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replicaset,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("", "Pod"): _pod,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cronjob,
    ("", "Service"): _service,
    ("networking.k8s.io", "Ingress"): _ingress,
    ("", "PersistentVolumeClaim"): _pvc,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa,
    ("apiregistration.k8s.io", "APIService"): _available_condition("Available"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("", "Namespace"): _namespace,
    ("gitops.dev", "Application"): _application,
    ("argoproj.io", "Application"): _application,
}
