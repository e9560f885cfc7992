"""The CronJob controller: a Job at each scheduled time.

At each time of `schedule` (five cron fields or a macro such as `@hourly`, in `timeZone`,
a `CRON_TZ=`/`TZ=` prefix, or else the controller's local zone) the controller creates
Job `<cronjob>-<scheduled time in minutes since the epoch>`, annotated with
`batch.kubernetes.io/cronjob-scheduled-timestamp`. Only the most recent missed time is
run, and not at all once it is more than `startingDeadlineSeconds` late. While a run is
active, concurrencyPolicy Allow starts the next one anyway, Forbid skips it (it starts
late when the active one ends, if still within the deadline) and Replace deletes the
active one first. Finished Jobs beyond successfulJobsHistoryLimit/failedJobsHistoryLimit
are deleted, oldest first. Nothing sleeps: each reconcile asks to run again at the next
scheduled time."""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from controllers import errors
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Result, object_key
from controllers.workloads.common import controller_of, controller_ref, is_controlled_by, parse_time
from controllers.workloads.history import PendingWrites
from controllers.workloads.job import condition_true, is_finished

Obj = dict[str, Any]

MANAGER = "cronjob-controller"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron numbers days from Sunday = 0
_SEARCH_WINDOW = dt.timedelta(hours=1)
_WAKE_AFTER = 0.1  # seconds past a scheduled time, so the clock has surely reached it


class ScheduleError(ValueError):
    """A schedule or time zone the controller cannot use; the message says which part."""


def _is_star(field: str) -> bool:
    return field in ("*", "?", "*/1")


def _day_of_week(field: str) -> str:
    """A cron day-of-week field in APScheduler's terms: APScheduler numbers days from
    Monday = 0, cron from Sunday = 0 (7 is Sunday too), so numbers become day names."""
    if _is_star(field):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            first, last = 0, 6
        else:
            lo, _, hi = span.partition("-")
            first = _day_number(lo)
            last = _day_number(hi) if hi else (6 if step_text else first)
        if step < 1 or first > last:
            raise ScheduleError(f"invalid day-of-week range {item!r}")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def _day_number(text: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text[:3] in _CRON_DAYS and len(text) == 3:
        return _CRON_DAYS.index(text)
    raise ScheduleError(f"invalid day of week {text!r}")


def _format_time(t: dt.datetime) -> str:
    """RFC 3339 as Go prints it: `Z` for UTC, else the offset."""
    text = t.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class Schedule:
    """A Kubernetes cron schedule: five fields (minute hour day-of-month month day-of-week)
    or a macro, where a day matches when either day field does if both are restricted,
    as in Vixie cron."""

    def __init__(self, expr: str, time_zone: str | None = None) -> None:
        text = expr.strip()
        if text.startswith(("CRON_TZ=", "TZ=")):
            prefix, _, text = text.partition(" ")
            time_zone = prefix.partition("=")[2]
        try:
            self.tz: dt.tzinfo | None = zoneinfo.ZoneInfo(time_zone) if time_zone else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {time_zone!r}") from None
        text = _MACROS.get(text.lower(), text).lower()
        fields = text.split()
        if len(fields) != 5:
            raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {expr!r}")
        minute, hour, day, month, weekday = fields
        dow = _day_of_week(weekday)
        days = [(day, "*"), ("*", dow)] if not _is_star(day) and dow != "*" else [(day, dow)]
        try:
            self.triggers = [
                CronTrigger(minute=minute, hour=hour, day=d, month=month, day_of_week=w, timezone=self.tz)
                for d, w in days
            ]
        except ValueError as exc:
            raise ScheduleError(f"{expr!r}: {exc}") from None

    def next_after(self, t: dt.datetime) -> dt.datetime | None:
        """The first scheduled time strictly after `t` (None: never again)."""
        after = t + dt.timedelta(microseconds=1)
        times = [x for x in (trig.get_next_fire_time(None, after) for trig in self.triggers) if x is not None]
        return min(times) if times else None

    def last_between(self, earliest: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        """The most recent scheduled time in (earliest, now]. Searches back from `now` in
        growing windows, so a schedule not run for months costs a few steps, not one step
        per missed minute."""
        window = _SEARCH_WINDOW
        while True:
            start = max(earliest, now - window)
            last = None
            t = self.next_after(start)
            while t is not None and t <= now:
                last, t = t, self.next_after(t)
            if last is not None or start == earliest:
                return last
            window *= 24


def job_name(cronjob: Obj, scheduled: dt.datetime) -> str:
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def _job_ref(job: Obj) -> Obj:
    meta = job["metadata"]
    return {
        "kind": "Job",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "apiVersion": "batch/v1",
        "resourceVersion": meta.get("resourceVersion", ""),
    }


def _started(job: Obj) -> str:
    return str((job.get("status") or {}).get("startTime") or job["metadata"].get("creationTimestamp") or "")


class CronJobController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.cronjobs = ctx.informers.informer("batch/v1", "CronJob")
        self.jobs = ctx.informers.informer("batch/v1", "Job")
        self.recorder = ctx.recorder(MANAGER)
        self.pending_jobs = PendingWrites()
        self.pending_cronjobs = PendingWrites()
        self.controller = Controller("cronjob", self.reconcile, workers=2)
        self.controller.watch(self.cronjobs)
        self.controller.watch(self.jobs, _owning_cronjob)

    def start(self) -> CronJobController:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def reconcile(self, key: str) -> Result | None:
        cached = self.cronjobs.cache.get(key)
        if cached is None:
            self.pending_jobs.forget(key)
            self.pending_cronjobs.forget(key)
            return None
        cj = self.pending_cronjobs.view(key, [cached], self.cronjobs)[0]
        if cj["metadata"].get("deletionTimestamp"):
            return None
        owned = [j for j in self.jobs.cache.by_index("owner", cj["metadata"]["uid"]) if is_controlled_by(j, cj)]
        jobs = self.pending_jobs.view(key, owned, self.jobs)
        status = self._track_jobs(cj, jobs)
        self._clean_history(key, cj, jobs)
        now = dt.datetime.now(dt.UTC)
        requeue: float | None = None
        if not cj["spec"].get("suspend"):
            try:
                schedule = Schedule(cj["spec"]["schedule"], cj["spec"].get("timeZone"))
            except ScheduleError as exc:
                self.recorder.event(cj, "Warning", "UnparseableSchedule", f"unparseable schedule: {exc}")
            else:
                self._run_due(key, cj, jobs, status, schedule, now)
                upcoming = schedule.next_after(now)
                if upcoming is not None:
                    requeue = (upcoming - now).total_seconds() + _WAKE_AFTER
        self._write_status(key, cj, status)
        return Result(requeue) if requeue is not None else None

    def _track_jobs(self, cj: Obj, jobs: list[Obj]) -> Obj:
        """status.active without the Jobs that finished or vanished; lastSuccessfulTime.
        Active Jobs the cache has not shown yet are fetched and added to `jobs`."""
        status = copy.deepcopy(cj.get("status") or {})
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        active = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            if job is None:
                # The Job informer may lag the CronJob's: ask the API before calling it gone.
                job = self._fetch_job(ref)
                if job is None:
                    self.recorder.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}")
                    continue
                jobs.append(job)  # so a Replace deletes it too
            if is_finished(job):
                state = "Complete" if condition_true(job, "Complete") else "Failed"
                self.recorder.event(
                    cj, "Normal", "SawCompletedJob", f"Saw completed job: {ref['name']}, status: {state}"
                )
                continue
            active.append(ref)
        listed = {ref.get("uid") for ref in active}
        for job in jobs:
            if not is_finished(job) and job["metadata"]["uid"] not in listed:
                self.recorder.event(
                    cj,
                    "Warning",
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {job['metadata']['name']}",
                )
        status["active"] = active
        completed = [j for j in jobs if condition_true(j, "Complete")]
        done = [t for t in (parse_time((j.get("status") or {}).get("completionTime")) for j in completed) if t]
        last = parse_time(status.get("lastSuccessfulTime"))
        if done and (last is None or max(done) > last):
            status["lastSuccessfulTime"] = _format_time(max(done).astimezone(dt.UTC))
        return status

    def _fetch_job(self, ref: Obj) -> Obj | None:
        """The Job `ref` names, straight from the API; None when it is gone or replaced."""
        try:
            job = self.client.get("batch/v1", "Job", ref.get("name", ""), ref.get("namespace", ""))
        except errors.NotFound:
            return None
        return job if job["metadata"].get("uid") == ref.get("uid") else None

    def _clean_history(self, key: str, cj: Obj, jobs: list[Obj]) -> None:
        """Delete the oldest finished Jobs beyond the history limits."""
        spec = cj["spec"]
        for ctype, limit_field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(limit_field)
            if limit is None:
                continue
            done = sorted((j for j in jobs if condition_true(j, ctype)), key=_started)
            for job in done[: max(0, len(done) - int(limit))]:
                self._delete_job(key, cj, job)

    def _run_due(self, key: str, cj: Obj, jobs: list[Obj], status: Obj, schedule: Schedule, now: dt.datetime) -> None:
        """Start the run of the most recent scheduled time not yet run, if it is due."""
        spec = cj["spec"]
        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cj["metadata"].get("creationTimestamp"))
        deadline = spec.get("startingDeadlineSeconds")
        if earliest is None:
            earliest = now
        if deadline is not None:
            earliest = max(earliest, now - dt.timedelta(seconds=int(deadline)))
        scheduled = schedule.last_between(earliest, now)
        if scheduled is None:
            return
        policy = spec.get("concurrencyPolicy", "Allow")
        if status["active"] and policy == "Forbid":
            self.recorder.event(
                cj,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return
        if status["active"] and policy == "Replace":
            by_uid = {j["metadata"]["uid"]: j for j in jobs}
            for ref in status["active"]:
                if ref["uid"] in by_uid:
                    self._delete_job(key, cj, by_uid[ref["uid"]])
            status["active"] = []
        job = self._create_job(key, cj, scheduled)
        listed = {ref.get("uid") for ref in status["active"]}
        if job is not None and not is_finished(job) and job["metadata"]["uid"] not in listed:
            status["active"].append(_job_ref(job))
        status["lastScheduleTime"] = _format_time(scheduled.astimezone(dt.UTC))

    def _create_job(self, key: str, cj: Obj, scheduled: dt.datetime) -> Obj | None:
        """The Job of one scheduled time (the one already there if an earlier pass made it)."""
        template = cj["spec"].get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        meta = cj["metadata"]
        name = job_name(cj, scheduled)
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": {**(tmeta.get("annotations") or {}), SCHEDULED_TIMESTAMP: _format_time(scheduled)},
                "ownerReferences": [controller_ref(cj)],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        try:
            created = self.client.create(job, field_manager=MANAGER)
        except errors.AlreadyExists:
            existing = self.jobs.cache.get(f"{meta['namespace']}/{name}") or self.client.get(
                "batch/v1", "Job", name, meta["namespace"]
            )
            return existing if is_controlled_by(existing, cj) else None
        except errors.APIError as exc:
            self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {exc}")
            raise
        self.pending_jobs.wrote(key, created)
        self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        return created

    def _delete_job(self, key: str, cj: Obj, job: Obj) -> None:
        meta = job["metadata"]
        try:
            gone = self.client.delete("batch/v1", "Job", meta["name"], meta["namespace"], "Background")
        except errors.NotFound:
            return
        self.pending_jobs.deleted(key, gone)
        self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {meta['name']}")

    def _write_status(self, key: str, cj: Obj, status: Obj) -> None:
        if not status.get("active"):
            status.pop("active", None)
        if status == (cj.get("status") or {}):
            return
        updated = copy.deepcopy(cj)
        updated["status"] = status
        self.pending_cronjobs.wrote(key, self.client.update_status(updated, field_manager=MANAGER))


def _owning_cronjob(job: Obj) -> list[str]:
    ref = controller_of(job)
    if ref is None or ref.get("kind") != "CronJob":
        return []
    return [object_key({"metadata": {"namespace": job["metadata"].get("namespace"), "name": ref["name"]}})]


def new(ctx: ControllerContext) -> CronJobController:
    return CronJobController(ctx)
