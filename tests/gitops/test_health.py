"""Health as users see it in the app view: each kind's states from the status its
controller writes, and the app's health as the worst of its resources."""

from __future__ import annotations

from typing import Any

import pytest

from gitops.health import (
    DEGRADED,
    HEALTHY,
    MISSING,
    PROGRESSING,
    SUSPENDED,
    UNKNOWN,
    Health,
    aggregate,
    resource_health,
)

Obj = dict[str, Any]


def obj(api_version: str, kind: str, spec: Obj | None = None, status: Obj | None = None, generation: int = 1) -> Obj:
    out: Obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": spec or {},
    }
    if status is not None:
        out["status"] = status
    return out


# --------------------------------------------------------------------------- Deployment


def deployment(status: Obj, replicas: int = 3, generation: int = 2, **spec: Any) -> Obj:
    return obj("apps/v1", "Deployment", {"replicas": replicas, **spec}, {"observedGeneration": 2, **status}, generation)


ROLLED_OUT = {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}


def test_deployment_rollout_states() -> None:
    assert resource_health(deployment(ROLLED_OUT)) == Health(HEALTHY)
    # A new spec the controller has not picked up yet.
    assert resource_health(deployment(ROLLED_OUT, generation=3)) == Health(
        PROGRESSING, "Waiting for rollout to finish: observed deployment generation less than desired generation"
    )
    # Mid rollout: what `kubectl rollout status` prints at each stage.
    assert resource_health(deployment({"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3})) == Health(
        PROGRESSING, "Waiting for rollout to finish: 1 out of 3 new replicas have been updated..."
    )
    assert resource_health(deployment({"replicas": 4, "updatedReplicas": 3, "availableReplicas": 3})) == Health(
        PROGRESSING, "Waiting for rollout to finish: 1 old replicas are pending termination..."
    )
    assert resource_health(deployment({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2})) == Health(
        PROGRESSING, "Waiting for rollout to finish: 2 of 3 updated replicas are available..."
    )


def test_deployment_past_its_progress_deadline_is_degraded() -> None:
    stuck = deployment(
        {
            "replicas": 4,
            "updatedReplicas": 1,
            "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "web-7d9f" has timed out progressing.',
                },
            ],
        }
    )
    assert resource_health(stuck) == Health(DEGRADED, 'Deployment "web" exceeded its progress deadline')


def test_paused_deployment_is_suspended() -> None:
    assert resource_health(deployment(ROLLED_OUT, paused=True)).status == SUSPENDED


def test_replicaset_waits_for_available_replicas() -> None:
    rs = obj("apps/v1", "ReplicaSet", {"replicas": 3}, {"observedGeneration": 1, "availableReplicas": 1})
    assert resource_health(rs) == Health(
        PROGRESSING, "Waiting for rollout to finish: 1 out of 3 new replicas are available..."
    )
    rs["status"]["availableReplicas"] = 3
    assert resource_health(rs).status == HEALTHY


# --------------------------------------------------------------------------- StatefulSet and DaemonSet


def statefulset(status: Obj, **spec: Any) -> Obj:
    base = {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "currentRevision": "web-1", **status}
    return obj("apps/v1", "StatefulSet", {"replicas": 3, **spec}, base)


def test_statefulset_rolling_update_and_partition() -> None:
    assert resource_health(statefulset({"readyReplicas": 1})) == Health(
        PROGRESSING, "Waiting for 2 pods to be ready..."
    )
    rolling = statefulset({"updateRevision": "web-2", "updatedReplicas": 1})
    assert resource_health(rolling) == Health(
        PROGRESSING, "waiting for statefulset rolling update to complete 1 pods at revision web-2..."
    )
    done = statefulset({"updateRevision": "web-1", "currentRevision": "web-1", "updatedReplicas": 3})
    assert resource_health(done).status == HEALTHY
    # A canary: only pods at ordinal >= 2 get the new revision, and that is the goal.
    canary = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    half = statefulset({"updateRevision": "web-2", "updatedReplicas": 0}, updateStrategy=canary)
    assert resource_health(half).status == PROGRESSING
    assert "partitioned roll out" in resource_health(half).message
    full = statefulset({"updateRevision": "web-2", "updatedReplicas": 1}, updateStrategy=canary)
    assert resource_health(full).status == HEALTHY
    # OnDelete: pods change only when someone deletes them; ready pods are all we can ask.
    on_delete = statefulset({"updateRevision": "web-2", "updatedReplicas": 0}, updateStrategy={"type": "OnDelete"})
    assert resource_health(on_delete).status == HEALTHY


def test_daemonset_rollout() -> None:
    ds = obj(
        "apps/v1",
        "DaemonSet",
        {},
        {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 3},
    )
    assert resource_health(ds) == Health(
        PROGRESSING, 'Waiting for daemon set "web" rollout to finish: 2 out of 3 new pods have been updated...'
    )
    ds["status"]["updatedNumberScheduled"] = 3
    assert resource_health(ds).status == HEALTHY
    ds["status"]["updatedNumberScheduled"] = 1
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert resource_health(ds).status == HEALTHY


# --------------------------------------------------------------------------- Pods


def pod(phase: str, restart_policy: str = "Always", ready: bool = False, **container_state: Any) -> Obj:
    status: Obj = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "web", "ready": ready, "restartCount": 0, **container_state}],
    }
    return obj("v1", "Pod", {"restartPolicy": restart_policy, "containers": [{"name": "web"}]}, status)


def test_pod_states() -> None:
    assert resource_health(pod("Pending", state={"waiting": {"reason": "ContainerCreating"}})).status == PROGRESSING
    assert resource_health(pod("Running", ready=True, state={"running": {}})).status == HEALTHY
    assert resource_health(pod("Running", state={"running": {}})).status == PROGRESSING
    assert resource_health(pod("Succeeded", "Never")).status == HEALTHY
    failed = pod("Failed", "Never", state={"terminated": {"exitCode": 3, "reason": "Error"}})
    assert resource_health(failed) == Health(DEGRADED, 'container "web" failed with exit code 3')


@pytest.mark.parametrize(
    "reason", ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"]
)
def test_pod_stuck_waiting_is_degraded(reason: str) -> None:
    stuck = pod("Running", state={"waiting": {"reason": reason, "message": "back-off 40s"}})
    assert resource_health(stuck) == Health(DEGRADED, f'container "web" is waiting: {reason}: back-off 40s')


def test_crash_looping_pod_between_restarts_is_degraded() -> None:
    restarted = pod("Running", state={"running": {}}, lastState={"terminated": {"exitCode": 1}})
    assert resource_health(restarted).status == DEGRADED


def test_hook_pod_with_a_pull_error_is_not_failed_yet() -> None:
    """A PreSync hook pod may still get its image; failing the sync now would be early."""
    hook = pod("Pending", "Never", state={"waiting": {"reason": "ImagePullBackOff"}})
    assert resource_health(hook).status == PROGRESSING
    assert resource_health(pod("Running", "Never", ready=True)).status == PROGRESSING


def test_pod_being_deleted_is_progressing() -> None:
    terminating = pod("Running", ready=True)
    terminating["metadata"]["deletionTimestamp"] = "2024-05-01T10:00:00Z"
    assert resource_health(terminating) == Health(PROGRESSING, "Pending deletion")


# --------------------------------------------------------------------------- Jobs


def job(conditions: list[Obj], **spec: Any) -> Obj:
    return obj("batch/v1", "Job", spec, {"active": 0 if conditions else 1, "conditions": conditions})


def test_job_states() -> None:
    assert resource_health(job([])).status == PROGRESSING
    assert resource_health(job([{"type": "Complete", "status": "True"}])).status == HEALTHY
    failed = job(
        [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    )
    assert resource_health(failed) == Health(DEGRADED, "Job has reached the specified backoff limit")
    assert resource_health(job([], suspend=True)).status == SUSPENDED


def test_cronjob_states() -> None:
    cron = obj("batch/v1", "CronJob", {"schedule": "*/5 * * * *"}, {})
    assert resource_health(cron).status == HEALTHY
    cron["status"] = {"lastScheduleTime": "2024-05-01T10:05:00Z", "lastSuccessfulTime": "2024-05-01T10:00:30Z"}
    assert resource_health(cron) == Health(DEGRADED, "CronJob has not completed its last execution successfully")
    cron["status"]["active"] = [{"kind": "Job", "name": "web-28571"}]
    assert resource_health(cron).status == HEALTHY
    cron["status"] = {"lastScheduleTime": "2024-05-01T10:05:00Z", "lastSuccessfulTime": "2024-05-01T10:05:40Z"}
    assert resource_health(cron).status == HEALTHY
    cron["spec"]["suspend"] = True
    assert resource_health(cron).status == SUSPENDED


# --------------------------------------------------------------------------- networking, storage, cluster objects


def test_load_balancer_service_waits_for_an_address() -> None:
    lb = obj("v1", "Service", {"type": "LoadBalancer"}, {"loadBalancer": {}})
    assert resource_health(lb).status == PROGRESSING
    lb["status"]["loadBalancer"]["ingress"] = [{"ip": "172.18.0.10"}]
    assert resource_health(lb).status == HEALTHY
    assert resource_health(obj("v1", "Service", {"type": "ClusterIP"})).status == HEALTHY


def test_ingress_waits_for_an_address() -> None:
    ing = obj("networking.k8s.io/v1", "Ingress", {}, {"loadBalancer": {}})
    assert resource_health(ing).status == PROGRESSING
    ing["status"]["loadBalancer"]["ingress"] = [{"hostname": "shop.example.com"}]
    assert resource_health(ing).status == HEALTHY


@pytest.mark.parametrize(("phase", "expected"), [("Bound", HEALTHY), ("Pending", PROGRESSING), ("Lost", DEGRADED)])
def test_pvc_phases(phase: str, expected: str) -> None:
    assert resource_health(obj("v1", "PersistentVolumeClaim", {}, {"phase": phase})).status == expected


def test_hpa_that_cannot_read_metrics_is_degraded() -> None:
    hpa = obj(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        {},
        {
            "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
                {
                    "type": "ScalingActive",
                    "status": "False",
                    "reason": "FailedGetResourceMetric",
                    "message": "the HPA was unable to compute the replica count: missing request for cpu",
                },
            ]
        },
    )
    assert resource_health(hpa) == Health(
        DEGRADED, "the HPA was unable to compute the replica count: missing request for cpu"
    )
    hpa["status"]["conditions"][1].update(status="True", reason="ValidMetricFound", message="")
    assert resource_health(hpa).status == HEALTHY


def test_crd_and_namespace() -> None:
    crd = obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", {}, {"conditions": []})
    assert resource_health(crd).status == PROGRESSING
    crd["status"]["conditions"] = [
        {"type": "NamesAccepted", "status": "True"},
        {"type": "Established", "status": "True"},
    ]
    assert resource_health(crd).status == HEALTHY
    assert resource_health(obj("v1", "Namespace", {}, {"phase": "Active"})).status == HEALTHY
    assert resource_health(obj("v1", "Namespace", {}, {"phase": "Terminating"})).status == PROGRESSING


def test_child_application_reports_its_own_health() -> None:
    for group in ("gitops.dev", "argoproj.io"):
        app = obj(
            f"{group}/v1alpha1", "Application", {}, {"health": {"status": "Degraded", "message": "web: Degraded"}}
        )
        assert resource_health(app) == Health(DEGRADED, "web: Degraded")
    assert resource_health(obj("gitops.dev/v1alpha1", "Application", {}, {})).status == PROGRESSING


def test_other_kinds_healthy_unless_their_conditions_say_otherwise() -> None:
    assert resource_health(obj("v1", "ConfigMap")).status == HEALTHY
    cert = obj(
        "cert-manager.io/v1",
        "Certificate",
        {},
        {"conditions": [{"type": "Ready", "status": "False", "message": "Issuing certificate"}]},
    )
    assert resource_health(cert) == Health(PROGRESSING, "Issuing certificate")
    cert["status"]["conditions"].append({"type": "Stalled", "status": "True", "message": "issuer not found"})
    assert resource_health(cert) == Health(DEGRADED, "issuer not found")
    behind = obj("example.com/v1", "Widget", {}, {"observedGeneration": 1}, generation=2)
    assert resource_health(behind).status == PROGRESSING
    assert resource_health(None).status == MISSING


# --------------------------------------------------------------------------- the app


def test_app_health_is_its_worst_resource() -> None:
    healthy, suspended = Health(HEALTHY), Health(SUSPENDED, "CronJob is suspended")
    progressing = Health(PROGRESSING, "Waiting for rollout to finish")
    missing, degraded = Health(MISSING, "resource does not exist"), Health(DEGRADED, 'container "web" crashed')
    assert aggregate([]) == healthy
    assert aggregate([healthy, suspended]) == suspended
    assert aggregate([suspended, progressing, healthy]) == progressing
    assert aggregate([progressing, missing]) == missing
    assert aggregate([missing, degraded, progressing]) == degraded
    assert aggregate([degraded, Health(UNKNOWN, "?")]).status == UNKNOWN
    # Ties keep the first one's message.
    assert aggregate([degraded, Health(DEGRADED, "second")]) == degraded
