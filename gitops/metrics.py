"""The engine's Prometheus metrics, named after Argo CD's where they mean the same thing.

Counters and histograms are process-wide (module level, in prometheus_client's default
registry) because the code that observes them (the controller, the git cache, webhook
handlers) has no server at hand. What describes the current state of the apps or the
queue is read at scrape time from the caches (`StateCollector`), so a deleted app
disappears from `gitops_app_info` instead of lingering."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gitops.source.git import GitRequest, scrub

Obj = dict[str, Any]
T = TypeVar("T")

APP_SYNC = Counter(
    "gitops_app_sync", "Sync operations finished, by app and phase (Succeeded, Failed, Error).",
    ["namespace", "name", "phase"],
)  # fmt: skip
APP_RECONCILE = Histogram(
    "gitops_app_reconcile_seconds",
    "Time of one reconcile of one app (fetch, render, compare, sync step, status write).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GIT_REQUEST = Histogram(
    "gitops_git_request_seconds",
    "Time of git network operations, by operation (fetch).",
    ["request_type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GIT_FETCH_FAIL = Counter("gitops_git_fetch_fail", "git fetches that failed, by repository.", ["repo"])
WEBHOOK_REQUESTS = Counter(
    "gitops_webhook_requests",
    "Webhook requests received, by provider (gitlab, github, gitea, bitbucket, generic) and outcome "
    "(accepted, ignored, duplicate, unauthorized, bad_request, too_large).",
    ["provider", "outcome"],
)
TERMINAL_PHASES = ("Succeeded", "Failed", "Error")


def observe_git_request(req: GitRequest) -> None:
    """RepoCache's `on_request` hook."""
    GIT_REQUEST.labels(req.operation).observe(req.seconds)
    if not req.ok and req.operation == "fetch":
        GIT_FETCH_FAIL.labels(req.url).inc()


def timed(fn: Callable[[str], T]) -> Callable[[str], T]:
    """`fn(key)` observed in gitops_app_reconcile_seconds."""

    def run(key: str) -> T:
        start = time.perf_counter()
        try:
            return fn(key)
        finally:
            APP_RECONCILE.observe(time.perf_counter() - start)

    return run


def sync_finished(app: Obj, old_status: Obj, new_status: Obj) -> None:
    """Count an operation when the status written moves it into a terminal phase."""
    new = (new_status.get("operationState") or {}).get("phase")
    old = (old_status.get("operationState") or {}).get("phase")
    started = (new_status.get("operationState") or {}).get("startedAt")
    old_started = (old_status.get("operationState") or {}).get("startedAt")
    if new in TERMINAL_PHASES and (new != old or started != old_started):
        meta = app.get("metadata") or {}
        APP_SYNC.labels(meta.get("namespace", ""), meta.get("name", ""), new).inc()


class StateCollector(Collector):
    """Gauges computed at scrape time: one gitops_app_info series per app (value 1, its
    state in labels, as argocd_app_info) and the work queue depth."""

    def __init__(self, list_apps: Callable[[], Iterable[Obj]], queue_depth: Callable[[], int]) -> None:
        self._list_apps = list_apps
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "gitops_app_info",
            "Information about each Application: value 1, state in labels.",
            labels=["namespace", "name", "project", "repo", "dest_namespace", "sync_status", "health_status"],
        )
        for app in self._list_apps():
            meta, spec, st = app.get("metadata") or {}, app.get("spec") or {}, app.get("status") or {}
            src = spec.get("source") or (spec.get("sources") or [{}])[0]
            info.add_metric(
                [
                    str(meta.get("namespace", "")),
                    str(meta.get("name", "")),
                    str(spec.get("project") or "default"),
                    scrub(str(src.get("repoURL", ""))),
                    str((spec.get("destination") or {}).get("namespace", "")),
                    str((st.get("sync") or {}).get("status", "Unknown")),
                    str((st.get("health") or {}).get("status", "Unknown")),
                ],
                1.0,
            )
        yield info
        depth = GaugeMetricFamily(
            "gitops_workqueue_depth", "Keys waiting in the app controller's work queue.", labels=["name"]
        )
        depth.add_metric(["applications"], float(self._queue_depth()))
        yield depth
