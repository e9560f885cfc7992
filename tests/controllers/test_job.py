"""The Job controller with the real kubectl on the whole simulated stack: retries with
back-off up to backoffLimit, completions with bounded parallelism, Indexed Jobs,
activeDeadlineSeconds, suspend and resume, pods counted once through the tracking
finalizer, and ttlSecondsAfterFinished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers.cluster import EmbeddedCluster
from controllers.workloads.job import Backoff, JobController, format_indexes, parse_indexes
from tests.conftest import Kubectl, eventually
from tests.controllers.test_statefulset import STACK, PodLog, apply, needs, stack

Obj = dict[str, Any]

needs_stack = needs(*STACK, "job")
RULES = """\
rules:
- name: crashes
  match: {image: "*:fail"}
  run: {crashAfterSeconds: 0.1, exitCode: 1}
- name: never-ends
  match: {image: "*:forever"}
  start: {seconds: 0.05}
"""
FAST = Backoff(base=0.5, cap=2.0)


def job(name: str, image: str = "busybox:1.36", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": image}]}},
            **spec,
        },
    }


def job_stack(tmp_path: Path) -> Any:
    """The stack with a Job controller whose back-off is short enough for a test."""
    return stack(tmp_path, STACK, rules=RULES, extra={"job": lambda ctx: JobController(ctx, FAST)})


def status(cluster: EmbeddedCluster, name: str) -> Obj:
    return cluster.client.get("batch/v1", "Job", name, "default").get("status") or {}


def conditions(cluster: EmbeddedCluster, name: str) -> list[tuple[str, str]]:
    return [(c["type"], c.get("reason", "")) for c in status(cluster, name).get("conditions") or []]


def job_row(kubectl: Kubectl, name: str) -> list[str]:
    """NAME STATUS COMPLETIONS DURATION AGE, as `kubectl get job` prints them."""
    return kubectl("get", "job", name, "--no-headers").split()


def job_pods(cluster: EmbeddedCluster, name: str) -> list[Obj]:
    return cluster.client.list("v1", "Pod", "default", label_selector=f"batch.kubernetes.io/job-name={name}")["items"]


def test_completed_indexes_round_trip() -> None:
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert parse_indexes("") == set() and format_indexes(set()) == ""
    assert [Backoff().delay(n) for n in (0, 1, 2, 3, 7, 8)] == [0, 10, 20, 40, 360, 360]


@needs_stack
def test_failed_pods_are_retried_with_back_off_until_the_limit(tmp_path: Path) -> None:
    with job_stack(tmp_path) as (cluster, kubectl):
        log = PodLog(cluster)
        apply(kubectl, job("flaky", "busybox:fail", backoffLimit=2))
        eventually(lambda: job_row(kubectl, "flaky")[1] == "Failed", what="the Job Failed")
        assert conditions(cluster, "flaky") == [
            ("FailureTarget", "BackoffLimitExceeded"),
            ("Failed", "BackoffLimitExceeded"),
        ]
        assert status(cluster, "flaky")["failed"] == 3, "the first try and backoffLimit=2 retries"
        pods = log.order(lambda e: e.type == "ADDED")
        assert len(pods) == 3 and len(job_pods(cluster, "flaky")) == 3, "failed pods are kept for their logs"
        failed_at = [log.first(p, lambda e: e.phase == "Failed") for p in pods]
        created_at = [log.first(p, lambda e: e.type == "ADDED") for p in pods]
        assert created_at[1] - failed_at[0] >= FAST.delay(1) - 0.1
        assert created_at[2] - failed_at[1] >= FAST.delay(2) - 0.1, "the back-off doubles"
        described = kubectl("describe", "job", "flaky")
        assert "BackoffLimitExceeded" in described and "Job has reached the specified backoff limit" in described
        log.stop()


@needs_stack
def test_completions_never_run_more_than_parallelism_pods(tmp_path: Path) -> None:
    with job_stack(tmp_path) as (cluster, kubectl):
        log = PodLog(cluster)
        apply(kubectl, job("batch", completions=3, parallelism=2))
        kubectl("wait", "--for=condition=complete", "job/batch", "--timeout=60s", timeout=90)
        row = job_row(kubectl, "batch")
        assert row[1:3] == ["Complete", "3/3"]
        assert [c for c, _ in conditions(cluster, "batch")] == ["SuccessCriteriaMet", "Complete"]
        final = status(cluster, "batch")
        assert final["succeeded"] == 3 and "completionTime" in final and final["uncountedTerminatedPods"] == {}
        log.stop()
        running: dict[str, bool] = {}
        most = 0
        for e in log.events:
            running[e.name] = e.type != "DELETED" and not e.deleting and e.phase not in ("Succeeded", "Failed")
            most = max(most, sum(running.values()))
        assert most == 2
        pods = job_pods(cluster, "batch")
        assert len(pods) == 3 and all(not p["metadata"].get("finalizers") for p in pods)

        kubectl("delete", "pods", "-l", "batch.kubernetes.io/job-name=batch")
        eventually(lambda: not job_pods(cluster, "batch"))
        assert status(cluster, "batch")["succeeded"] == 3, "counted pods stay counted when they are deleted"
        assert job_row(kubectl, "batch")[1:3] == ["Complete", "3/3"]


@needs_stack
def test_indexed_job_runs_each_index_once(tmp_path: Path) -> None:
    with job_stack(tmp_path) as (cluster, kubectl):
        apply(kubectl, job("shards", completions=3, parallelism=3, completionMode="Indexed"))
        kubectl("wait", "--for=condition=complete", "job/shards", "--timeout=60s", timeout=90)
        assert status(cluster, "shards")["completedIndexes"] == "0-2"
        pods = sorted(job_pods(cluster, "shards"), key=lambda p: p["metadata"]["name"])
        assert len(pods) == 3
        for index, pod in enumerate(pods):
            meta = pod["metadata"]
            assert meta["name"].startswith(f"shards-{index}-")
            assert meta["annotations"]["batch.kubernetes.io/job-completion-index"] == str(index)
            assert meta["labels"]["batch.kubernetes.io/job-completion-index"] == str(index)
            assert pod["spec"]["hostname"] == f"shards-{index}"
            env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
            ref = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
            assert ref == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        assert "Completed Indexes:  0-2" in kubectl("describe", "job", "shards")


@needs_stack
def test_active_deadline_fails_the_job_and_stops_its_pods(tmp_path: Path) -> None:
    with job_stack(tmp_path) as (cluster, kubectl):
        apply(kubectl, job("slow", "worker:forever", activeDeadlineSeconds=2, parallelism=2, completions=4))
        eventually(lambda: status(cluster, "slow").get("ready") == 2, what="two running pods")
        eventually(lambda: job_row(kubectl, "slow")[1] == "Failed", what="the Job Failed")
        assert conditions(cluster, "slow") == [("FailureTarget", "DeadlineExceeded"), ("Failed", "DeadlineExceeded")]
        final = status(cluster, "slow")
        assert final["failed"] == 2 and "active" not in final and "completionTime" not in final
        eventually(lambda: not job_pods(cluster, "slow"), what="the pods stopped")


@needs_stack
def test_a_suspended_job_runs_nothing_until_resumed(tmp_path: Path) -> None:
    with job_stack(tmp_path) as (cluster, kubectl):
        apply(kubectl, job("later", suspend=True))
        eventually(lambda: ("Suspended", "JobSuspended") in conditions(cluster, "later"))
        assert job_row(kubectl, "later")[1] == "Suspended"
        assert not job_pods(cluster, "later") and "startTime" not in status(cluster, "later")
        kubectl("patch", "job", "later", "-p", '{"spec":{"suspend":false}}')
        kubectl("wait", "--for=condition=complete", "job/later", "--timeout=60s", timeout=90)
        assert ("Suspended", "JobResumed") in conditions(cluster, "later")


@needs_stack
def test_finished_job_is_deleted_after_its_ttl(tmp_path: Path) -> None:
    with job_stack(tmp_path) as (cluster, kubectl):
        apply(kubectl, job("brief", ttlSecondsAfterFinished=1))
        kubectl("wait", "--for=condition=complete", "job/brief", "--timeout=60s", timeout=90)
        eventually(lambda: not kubectl("get", "jobs", "-o", "name"), what="the Job deleted")
        eventually(lambda: not job_pods(cluster, "brief"), what="its pods deleted with it")
