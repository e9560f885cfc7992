"""The CronJob controller: schedules read as Kubernetes reads them, a Job at the scheduled
minute on the whole simulated stack, concurrency policies, the starting deadline,
suspension and history limits.

Only one test waits for a real minute boundary. The others replay what a controller sees
after being away: a CronJob whose status says it last ran two hours ago has missed runs,
and (as in Kubernetes) the most recent one starts at once."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import pytest

from controllers import errors
from controllers.cluster import EmbeddedCluster
from controllers.workloads.common import controller_ref
from controllers.workloads.cronjob import SCHEDULED_TIMESTAMP, Schedule, ScheduleError
from tests.conftest import eventually
from tests.controllers.test_statefulset import STACK, apply, needs, stack

Obj = dict[str, Any]

CRONJOBS = [*STACK, "job", "cronjob"]
needs_stack = needs(*CRONJOBS)
RULES = """\
rules:
- name: never-ends
  match: {image: "*:forever"}
  start: {seconds: 0.05}
"""
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def stamp(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- schedules
def test_schedules_read_as_kubernetes_reads_them() -> None:
    wednesday_noon = at("2024-05-01T12:34:56+00:00")
    assert Schedule("0 0 * * 0", "UTC").next_after(wednesday_noon) == at("2024-05-05T00:00:00+00:00"), "0 is Sunday"
    assert Schedule("0 0 * * 7", "UTC").next_after(wednesday_noon) == at("2024-05-05T00:00:00+00:00"), "so is 7"
    assert Schedule("0 0 * * MON-FRI", "UTC").next_after(wednesday_noon) == at("2024-05-02T00:00:00+00:00")
    assert Schedule("@hourly", "UTC").next_after(wednesday_noon) == at("2024-05-01T13:00:00+00:00")
    assert Schedule("@weekly", "UTC").next_after(wednesday_noon) == at("2024-05-05T00:00:00+00:00")
    assert Schedule("*/15 * * * *", "UTC").next_after(at("2024-05-01T12:45:00+00:00")) == at(
        "2024-05-01T13:00:00+00:00"
    ), "strictly after"
    # Both day fields restricted: either may match (the 13th, or any Friday).
    assert Schedule("0 0 13 * 5", "UTC").next_after(wednesday_noon) == at("2024-05-03T00:00:00+00:00")
    paris = at("2024-05-02T09:30:00+02:00")
    assert Schedule("30 9 * * 1-5", "Europe/Paris").next_after(wednesday_noon) == paris
    assert Schedule("CRON_TZ=Europe/Paris 30 9 * * 1-5").next_after(wednesday_noon) == paris
    long_ago = wednesday_noon - dt.timedelta(days=400)
    assert Schedule("* * * * *", "UTC").last_between(long_ago, wednesday_noon) == at("2024-05-01T12:34:00+00:00")
    assert Schedule("0 0 1 1 *", "UTC").last_between(long_ago, wednesday_noon) == at("2024-01-01T00:00:00+00:00")
    assert Schedule("0 0 1 1 *", "UTC").last_between(wednesday_noon - dt.timedelta(days=30), wednesday_noon) is None
    for bad in ("* * * *", "61 * * * *", "* * * * 8", "@reboot"):
        with pytest.raises(ScheduleError):
            Schedule(bad, "UTC")
    with pytest.raises(ScheduleError, match="time zone"):
        Schedule("* * * * *", "Mars/Olympus_Mons")


# ---------------------------------------------------------------------------- the stack
def cronjob(name: str, schedule: str, image: str = "busybox:1.36", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"cron": name}},
                "spec": {
                    "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": image}]}}
                },
            },
            **spec,
        },
    }


def get(cluster: EmbeddedCluster, name: str) -> Obj:
    return cluster.client.get("batch/v1", "CronJob", name, "default")


def jobs_of(cluster: EmbeddedCluster, name: str) -> dict[str, Obj]:
    items = cluster.client.list("batch/v1", "Job", "default", label_selector=f"cron={name}")["items"]
    return {j["metadata"]["name"]: j for j in items}


def set_status(cluster: EmbeddedCluster, name: str, status: Obj) -> None:
    """Write a CronJob's status as the controller would have before it went away."""
    while True:
        cj = get(cluster, name)
        cj["status"] = status
        try:
            cluster.client.update_status(cj)
            return
        except errors.Conflict:
            continue


def minutes(t: dt.datetime) -> int:
    return int(t.timestamp()) // 60


def an_hourly_run_ten_minutes_ago() -> tuple[str, dt.datetime]:
    """An hourly schedule whose last run was due 10 minutes ago: no run falls due while
    the test runs, and one is missed for a CronJob away for longer."""
    due = (dt.datetime.now(UTC) - dt.timedelta(minutes=10)).replace(second=0, microsecond=0)
    return f"{due.minute} * * * *", due


@needs_stack
def test_a_job_starts_at_the_scheduled_minute(tmp_path: Path) -> None:
    with stack(tmp_path, CRONJOBS) as (cluster, kubectl):
        created = dt.datetime.now(UTC)
        apply(kubectl, cronjob("tick", "* * * * *"))
        found = eventually(lambda: jobs_of(cluster, "tick"), timeout=90, what="a Job at the next minute")
        seen = dt.datetime.now(UTC)
        [(name, job)] = found.items()
        scheduled = at(job["metadata"]["annotations"][SCHEDULED_TIMESTAMP])
        assert scheduled.second == 0 and created < scheduled <= seen
        assert (seen - scheduled).total_seconds() < 10, "started when due, not at some later poll"
        assert name == f"tick-{minutes(scheduled)}"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        eventually(lambda: get(cluster, "tick").get("status", {}).get("lastSuccessfulTime"), what="the run succeeded")
        status = get(cluster, "tick")["status"]
        assert status["lastScheduleTime"] == stamp(scheduled)
        header, line = kubectl("get", "cronjob", "tick").splitlines()
        row = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", line.strip()), strict=True))
        assert (row["SCHEDULE"], row["SUSPEND"], row["ACTIVE"]) == ("* * * * *", "False", "0")
        assert row["LAST SCHEDULE"] != "<none>"
        events = kubectl("get", "events", "--field-selector", "involvedObject.kind=CronJob", "-o", "name")
        assert events, "SuccessfulCreate and SawCompletedJob are recorded"


def seed_active_run(cluster: EmbeddedCluster, name: str) -> str:
    """A CronJob that ran two hours ago, whose run is still going."""
    cj = get(cluster, name)
    two_hours_ago = (dt.datetime.now(UTC) - dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    template = cj["spec"]["jobTemplate"]
    run = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{name}-{minutes(two_hours_ago)}",
            "namespace": "default",
            "labels": template["metadata"]["labels"],
            "ownerReferences": [controller_ref(cj)],
        },
        "spec": template["spec"],
    }
    job = cluster.client.create(run)
    ref = {"kind": "Job", "namespace": "default", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
    set_status(cluster, name, {"active": [{**ref, "apiVersion": "batch/v1"}], "lastScheduleTime": stamp(two_hours_ago)})
    return str(job["metadata"]["name"])


@needs_stack
@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_concurrency_policy_while_a_run_is_active(tmp_path: Path, policy: str) -> None:
    schedule, due = an_hourly_run_ten_minutes_ago()
    with stack(tmp_path, CRONJOBS, rules=RULES) as (cluster, kubectl):
        apply(kubectl, cronjob("sync", schedule, "worker:forever", concurrencyPolicy=policy))
        old = seed_active_run(cluster, "sync")
        new = f"sync-{minutes(due)}"

        def active() -> list[str]:
            return sorted(ref["name"] for ref in get(cluster, "sync").get("status", {}).get("active") or [])

        if policy == "Allow":
            eventually(lambda: active() == sorted([old, new]), what="both runs active")
            assert set(jobs_of(cluster, "sync")) == {old, new}
        elif policy == "Replace":
            eventually(lambda: active() == [new], what="the new run replacing the old")
            eventually(lambda: set(jobs_of(cluster, "sync")) == {new}, what="the old run deleted")
        else:
            eventually(
                lambda: "JobAlreadyActive" in kubectl("get", "events", "-o", "jsonpath={.items[*].reason}"),
                what="the skipped run reported",
            )
            assert set(jobs_of(cluster, "sync")) == {old} and active() == [old]
            kubectl("delete", "job", old)
            eventually(lambda: active() == [new], what="the skipped run started once the old one ended")
        assert get(cluster, "sync")["status"]["lastScheduleTime"] == stamp(due)


@needs_stack
def test_starting_deadline_and_suspend_skip_missed_runs(tmp_path: Path) -> None:
    schedule, due = an_hourly_run_ten_minutes_ago()
    with stack(tmp_path, CRONJOBS) as (cluster, kubectl):
        apply(
            kubectl,
            cronjob("patient", schedule, startingDeadlineSeconds=3600),
            cronjob("strict", schedule, startingDeadlineSeconds=60),
            cronjob("paused", schedule, suspend=True),
        )
        long_ago = stamp(dt.datetime.now(UTC) - dt.timedelta(hours=2))
        for name in ("strict", "paused", "patient"):
            set_status(cluster, name, {"lastScheduleTime": long_ago})
        eventually(lambda: jobs_of(cluster, "patient"), what="the run 10 minutes late, within an hour's deadline")
        time.sleep(1)  # the other two were reconciled as long: they must not have started anything
        assert not jobs_of(cluster, "strict"), "10 minutes late is past a 60 s starting deadline"
        assert not jobs_of(cluster, "paused")
        assert get(cluster, "strict")["status"]["lastScheduleTime"] == long_ago
        kubectl("patch", "cronjob", "paused", "-p", '{"spec":{"suspend":false}}')
        eventually(lambda: set(jobs_of(cluster, "paused")) == {f"paused-{minutes(due)}"}, what="resumed and run")


def test_history_limits_keep_the_newest_finished_jobs(tmp_path: Path) -> None:
    """Only the CronJob controller runs: the test finishes the Jobs, as the Job controller would."""
    with stack(tmp_path, ["cronjob"], nodes=[]) as (cluster, kubectl):
        apply(kubectl, cronjob("report", "0 0 1 1 *", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1))
        cj = get(cluster, "report")
        start = dt.datetime.now(UTC) - dt.timedelta(hours=5)
        outcomes = ["Complete", "Failed", "Complete", "Failed", "Complete"]
        for hour, outcome in enumerate(outcomes):
            began = start + dt.timedelta(hours=hour)
            job = cluster.client.create(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {
                        "name": f"report-{minutes(began)}",
                        "namespace": "default",
                        "labels": {"cron": "report"},
                        "ownerReferences": [controller_ref(cj)],
                    },
                    "spec": {"suspend": True, "template": cj["spec"]["jobTemplate"]["spec"]["template"]},
                }
            )
            ended = began + dt.timedelta(minutes=1)
            job["status"] = {
                "startTime": stamp(began),
                "conditions": [{"type": outcome, "status": "True", "lastTransitionTime": stamp(ended)}],
                **({"completionTime": stamp(ended)} if outcome == "Complete" else {}),
            }
            cluster.client.update_status(job)
        newest_complete = f"report-{minutes(start + dt.timedelta(hours=4))}"
        newest_failed = f"report-{minutes(start + dt.timedelta(hours=3))}"
        eventually(
            lambda: set(jobs_of(cluster, "report")) == {newest_complete, newest_failed},
            what="the older finished jobs deleted",
        )
        last = start + dt.timedelta(hours=4, minutes=1)
        eventually(lambda: get(cluster, "report").get("status", {}).get("lastSuccessfulTime") == stamp(last))
        assert "Deleted job" in kubectl("get", "events", "-o", "jsonpath={.items[*].message}")
