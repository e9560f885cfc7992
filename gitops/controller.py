"""The application controller: reconcile(app) = resolve the revision, render, compare
with the live state, sync if asked or automated, and write the status.

It is a controller like any other in the house (controllers/runtime.py): informers on
Applications and on every kind the apps own (indexed by our tracking annotation, so
finding an app's resources never lists the cluster), a work queue, and reconcile steps.
Git is polled with APScheduler; webhooks and the CLI ask for refreshes explicitly."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson
from apscheduler.schedulers.background import BackgroundScheduler

from controllers import errors
from controllers.client import Client
from controllers.patch import clone
from controllers.runtime import Controller, Informer, InformerFactory, Result
from gitops import apps, clusters, metrics
from gitops.diff import ResourceDiff, compare, normalize
from gitops.health import Health, aggregate, resource_health
from gitops.resources import TRACKING, Obj, ResourceKey, hook_types, tracked_app, tracking_id
from gitops.source.git import GitError, RepoCache, normalize_url
from gitops.source.render import Renderer, RenderError
from gitops.sync import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    Plan,
    SyncContext,
    make_plan,
    start_operation,
    step,
)

log = logging.getLogger(__name__)

SYNCED, OUT_OF_SYNC, UNKNOWN = "Synced", "OutOfSync", "Unknown"
INFORMER_SYNC_WAIT = 10.0  # seconds a new kind's first listing is awaited (a missing kind never lists)
# Argo CD's finalizers asking that an app's resources be deleted with it (cascade).
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
RESOURCES_FINALIZER_BACKGROUND = "resources-finalizer.argocd.argoproj.io/background"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Violation:
    policy: str
    rule: str
    resource: str
    message: str
    action: str = "Enforce"  # Enforce blocks the sync; Audit is a warning


class PolicyGate(Protocol):
    """Pre-flight of a whole desired set before anything is applied (policies/)."""

    def check(self, objects: list[Obj]) -> list[Violation]: ...


@dataclass
class Comparison:
    revision: str
    desired: list[Obj]
    hooks: list[Obj]
    diffs: dict[ResourceKey, ResourceDiff]
    extraneous: list[Obj]
    health: Health
    resource_health: dict[ResourceKey, Health]
    sync_status: str
    commit_message: str = ""


@dataclass
class EngineSettings:
    poll_seconds: float = 120.0
    workers: int = 8
    fetch_concurrency: int = 4
    render_concurrency: int = 2
    self_heal_seconds: float = 5.0
    namespace: str = ""  # the namespace whose Applications are served; "" for all


class _Prediction(NamedTuple):
    """A server-side dry run remembered: for the desired content with this hash, on the
    live object at this resourceVersion, the server predicted `obj` (normalized), or the
    live object itself when `same` (the in-sync case keeps no copy); `obj` is None when
    the dry run failed."""

    desired: bytes
    live_rv: str
    obj: Obj | None
    same: bool = False


@dataclass
class _AppState:
    """Per-app memory between reconciles (not needed for correctness after a restart)."""

    # The app's repository must have been fetched by a fetch that started at or after this
    # (monotonic) time; None once one has. A refresh asks for a fetch started after it.
    fetch_since: float | None = field(default_factory=time.monotonic)
    predictions: dict[ResourceKey, _Prediction] = field(default_factory=dict)
    # Our own latest writes: the informer cache may not show them yet, and a status
    # computed from an older copy would lose history or restart a finished operation.
    status: Obj | None = None
    written_rv: int = 0
    cleared_operation: bool = False
    # What git said last time, by (revision, source): sourceType, and the commit message.
    source_type: tuple[str, bytes, str] = ("", b"", "")
    commit_message: tuple[str, str] = ("", "")
    destination: _Destination | None = None  # the cluster `predictions` were made by


class _Destination:
    """A cluster apps deploy to: its client, and informers on the kinds apps own there
    (indexed by our tracking annotation, so finding an app's resources never lists it)."""

    def __init__(
        self,
        client: Client,
        informers: InformerFactory,
        on_change: Callable[[str, Obj, Obj | None], None],
        version: tuple[Any, Any] = (None, None),
    ) -> None:
        self.client = client
        self.informers = informers
        self.version = version  # of the cluster Secret it was made from
        self._on_change = on_change
        self.kinds: dict[tuple[str, str], Informer] = {}  # (group, kind) -> informer
        self.versions: dict[tuple[str, str], str] = {}  # (group, kind) -> apiVersion
        self._lock = threading.Lock()
        self._sync_deadline: dict[tuple[str, str], float] = {}  # (group, kind) -> monotonic
        self._closed = False

    def close(self) -> None:
        """Stop watching (a destination cluster unregistered, or the engine stopping)."""
        with self._lock:
            self._closed = True
        self.informers.stop()

    def informer(self, api_version: str, kind: str) -> Informer:
        """The informer of a kind, its first listing awaited (for up to INFORMER_SYNC_WAIT
        seconds after it was made): a fresh engine (a restart, a new leader) must not take
        an empty cache for missing resources and sync again what is in sync."""
        group = api_version.rpartition("/")[0]
        with self._lock:
            inf = self.kinds.get((group, kind))
            if inf is None:
                if self._closed:  # no informer that nothing would stop
                    raise clusters.ClusterError("the destination cluster was unregistered meanwhile")
                inf = self.informers.informer(api_version, kind)
                self.kinds[(group, kind)] = inf
                self.versions[(group, kind)] = api_version
                self._sync_deadline[(group, kind)] = time.monotonic() + INFORMER_SYNC_WAIT
                inf.cache.add_index("tracking", lambda o: [a] if (a := tracked_app(o)) else [])
                inf.add_handler(self._on_change)
        left = self._sync_deadline[(group, kind)] - time.monotonic()
        if left > 0 and not inf.has_synced():
            inf.wait_for_sync(left)
        return inf

    def live(self, key: ResourceKey) -> Obj | None:
        inf = self.kinds.get((key.group, key.kind))
        if inf is None:
            return None
        return inf.cache.get(f"{key.namespace}/{key.name}" if key.namespace else key.name)

    def namespaced(self, api_version: str, kind: str) -> bool:
        try:
            return self.client.resource_info(api_version, kind).namespaced
        except errors.NotFound:
            return True  # not served yet (its CRD comes in this sync): namespaced, as most are


class AppController:
    def __init__(
        self,
        client: Client,
        informers: InformerFactory,
        repos: RepoCache,
        renderer: Renderer,
        settings: EngineSettings | None = None,
        gate: PolicyGate | None = None,
        own_urls: Iterable[str] = (),
    ) -> None:
        """`own_urls`: the addresses of the engine's own cluster, which destinations may
        name as well as https://kubernetes.default.svc."""
        self.client = client
        self.informers = informers
        self.repos = repos
        self.renderer = renderer
        self.settings = settings or EngineSettings()
        self.gate = gate
        self.controller = Controller("applications", metrics.timed(self.reconcile), workers=self.settings.workers)
        self._fetch_slots = threading.BoundedSemaphore(self.settings.fetch_concurrency)
        self._fetch_locks: dict[str, threading.Lock] = {}  # normalized URL -> held while fetching it
        self._fetched_at: dict[str, float] = {}  # normalized URL -> when its last good fetch started
        self._render_slots = threading.BoundedSemaphore(self.settings.render_concurrency)
        self._state: dict[str, _AppState] = {}
        self._state_lock = threading.Lock()
        self._own = _Destination(client, informers, self._on_owned_change)
        # Other clusters, made on first use and dropped when their Secret changes or goes.
        self._own_urls = tuple(own_urls)
        self._registry: clusters.ClusterRegistry | None = None
        self._remote: dict[str, _Destination] = {}  # cluster Secret namespace/name -> destination
        self._remote_apps: set[str] = set()  # keys of apps whose destination is another cluster
        self._remote_lock = threading.Lock()
        self._app_informers: dict[str, Informer] = {}
        self._scheduler = BackgroundScheduler(daemon=True)
        self.listeners: list[Callable[[Obj], None]] = []  # told of every status written

    # ------------------------------------------------------------------ lifecycle
    def watch_apps(self) -> AppController:
        """Cache the Applications without reconciling them: what a standby replica reads
        (the dashboard, pushes it passes on to the leader), and what `start` builds on."""
        for api_version in apps.APP_API_VERSIONS:
            if api_version not in self._app_informers:
                inf = self.informers.informer(api_version, apps.KIND, self.settings.namespace)
                self._app_informers[api_version] = inf
        self.informers.start()
        return self

    def start(self) -> AppController:
        self.watch_apps()
        for api_version, inf in self._app_informers.items():
            inf.add_handler(self._on_app_event(api_version))
        self.controller.start()
        self._scheduler.add_job(
            self._poll,
            "interval",
            seconds=self.settings.poll_seconds,
            jitter=self.settings.poll_seconds * 0.1,
            id="poll-git",
        )
        self._scheduler.start()
        return self

    def stop(self) -> None:
        self._scheduler.shutdown(wait=False)
        self.controller.stop()
        self._stop_destinations()

    def _on_app_event(self, api_version: str) -> Callable[[str, Obj, Obj | None], None]:
        """Enqueue an app on any change but one of its status alone: that is the engine's own
        write coming back, with nothing new to reconcile. An app first seen now needs a fetch
        that starts after now (one fetch serves every app created together), not one after
        its own first reconcile."""

        def handler(etype: str, obj: Obj, old: Obj | None) -> None:
            key = _queue_key(api_version, obj)
            if etype == "ADDED":
                self._app_state(key)
            elif etype == "MODIFIED" and old is not None and _same_but_status(obj, old):
                return
            self.controller.queue.add(key)

        return handler

    def _poll(self) -> None:
        for key in self.app_keys():
            self.refresh(key)

    def app_keys(self) -> list[str]:
        return [_queue_key(av, o) for av, inf in self._app_informers.items() for o in inf.cache.list()]

    def refresh(self, key: str, hard: bool = False, fetched_since: float | None = None) -> None:
        """Ask for a git fetch and a fresh comparison of one app (webhooks, CLI, poll). The
        apps of one repository refreshed together share one fetch. `fetched_since`: any
        fetch started at or after that time serves (see `fetch_repo`); default now."""
        state = self._app_state(key)
        since = time.monotonic() if fetched_since is None else fetched_since
        state.fetch_since = since if state.fetch_since is None else max(state.fetch_since, since)
        if hard:
            state.predictions.clear()
        self.controller.queue.add(key)

    def fetch_repo(self, url: str) -> float:
        """Fetch `url` now (or join a fetch in progress that started now); returns when the
        fetch started, for `refresh(fetched_since=...)`: a push dispatcher that needs the
        new commits to diff them does not make every app fetch again."""
        since = time.monotonic()
        self._fetch(url, since)
        return since

    def get_app(self, key: str) -> Obj | None:
        api_version, _, ns_name = key.partition("|")
        inf = self._app_informers.get(api_version)
        return inf.cache.get(ns_name) if inf else None

    def _app_state(self, key: str) -> _AppState:
        state = self._state.get(key)  # lock-free hit: every reconcile and refresh asks
        if state is not None:
            return state
        with self._state_lock:
            return self._state.setdefault(key, _AppState())

    # ------------------------------------------------------------------ destination clusters
    def _destination(self, key: str, spec: apps.AppSpec) -> _Destination:
        """The cluster an app deploys to: the engine's own, or one registered as a Secret,
        whose client and informers are made on first use. Raises SpecError for a
        destination that is not registered (or whose Secret is unusable), Unreachable for
        one that does not answer (never taken for a cluster with nothing in it)."""
        if apps.is_in_cluster(spec):
            return self._own
        with self._remote_lock:
            self._remote_apps.add(key)
            registry = self._registry
            if registry is None:
                registry = clusters.ClusterRegistry(self.client, self.settings.namespace or "default", self._own_urls)
                registry.secrets.add_handler(self._on_cluster_secret)
                self._registry = registry.start()
        registry.secrets.wait_for_sync(INFORMER_SYNC_WAIT)
        try:
            cluster = registry.find(spec.dest_server, spec.dest_name)
            if cluster is None:
                return self._own  # named by one of the engine's own URLs
            client = cluster.client()
        except clusters.Unreachable:
            raise
        except clusters.ClusterError as exc:
            raise apps.SpecError(str(exc)) from None
        stale = None
        with self._remote_lock:
            dest = self._remote.get(cluster.key)
            if dest is None or dest.version != cluster.version:
                stale = dest
                informers = InformerFactory(client)
                informers.start()
                dest = _Destination(client, informers, self._on_owned_change, cluster.version)
                self._remote[cluster.key] = dest
        if stale is not None:
            stale.close()
        return dest

    def _on_cluster_secret(self, etype: str, obj: Obj, _old: Obj | None) -> None:
        """A cluster Secret changed or went: forget what was made from it (its informers
        stop), and look again at every app deploying to another cluster."""
        meta = obj.get("metadata") or {}
        if etype != "ADDED":
            with self._remote_lock:
                dest = self._remote.pop(f"{meta.get('namespace', '')}/{meta.get('name', '')}", None)
            if dest is not None:
                dest.close()
        with self._remote_lock:
            waiting = list(self._remote_apps)
        for key in waiting:
            self.controller.queue.add(key)

    def _stop_destinations(self) -> None:
        with self._remote_lock:
            registry, self._registry = self._registry, None
            remote = list(self._remote.values())
            self._remote.clear()
        if registry is not None:
            registry.stop()
        for dest in remote:
            dest.close()

    # ------------------------------------------------------------------ informers on owned kinds
    def _on_owned_change(self, _etype: str, obj: Obj, old: Obj | None) -> None:
        for o in (obj, old):
            owner = tracked_app(o) if o is not None else None
            if owner:
                for av, inf in self._app_informers.items():
                    if inf.cache.get(owner) is not None:  # ours or Argo CD's group, as it exists
                        self.controller.queue.add(f"{av}|{owner}")

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, key: str) -> Result | None:
        app = self.get_app(key)
        if app is None:
            with self._state_lock:
                self._state.pop(key, None)
            with self._remote_lock:
                self._remote_apps.discard(key)
            return None
        app = clone(app)
        state = self._app_state(key)
        if _rv(app) < state.written_rv:  # the cache lags behind what we wrote
            if state.status is not None:
                app["status"] = state.status  # only read: `status` below is the working copy
            if state.cleared_operation:
                app.pop("operation", None)
        else:
            state.status = None  # the cache has caught up: no copy to keep for 1,000s of apps
        status = clone(app.get("status") or {})
        self._take_refresh_request(app, state)
        try:
            spec = apps.parse_spec(app)
            dest = self._destination(key, spec)
        except apps.SpecError as exc:
            _set_condition(status, "InvalidSpecError", str(exc))
            status["sync"] = {"status": UNKNOWN}
            self._write_status(app, status, state)
            return None
        except clusters.ClusterError as exc:  # unreachable: nothing is compared or applied
            _clear_condition(status, "InvalidSpecError")
            _set_condition(status, "ComparisonError", str(exc))
            status["sync"] = {"status": UNKNOWN}
            status["reconciledAt"] = now_rfc3339()
            self._write_status(app, status, state)
            return Result(requeue_after=min(self.settings.poll_seconds, 10.0))
        _clear_condition(status, "InvalidSpecError")
        if state.destination is not dest:  # predictions were made by another cluster
            state.predictions.clear()
            state.destination = dest
        if app["metadata"].get("deletionTimestamp"):
            return self._finalize(app, spec, state, dest)

        op_state = status.get("operationState") or {}
        requested = app.get("operation")
        running = op_state.get("phase") == RUNNING
        revision_override = ""
        if requested and not running:
            revision_override = str((requested.get("sync") or {}).get("revision") or "")
        elif running:
            revision_override = str(op_state.get("syncResult", {}).get("revision") or "")

        try:
            comparison = self._compare(app, spec, state, revision_override, dest)
        except (GitError, RenderError, clusters.ClusterError) as exc:
            _set_condition(status, "ComparisonError", str(exc))
            status.setdefault("sync", {})["status"] = status.get("sync", {}).get("status") or UNKNOWN
            status["reconciledAt"] = now_rfc3339()
            self._write_status(app, status, state)
            state.fetch_since = time.monotonic()
            return Result(requeue_after=min(self.settings.poll_seconds, 10.0))
        _clear_condition(status, "ComparisonError")
        self._apply_comparison(status, comparison, spec, state, dest)

        requeue: float | None = None
        if requested and not running:
            op_state = self._begin(app, status, comparison, requested)
            running = True
        elif not running and self._should_auto_sync(spec, status, comparison, state):
            op_state = self._begin(
                app,
                status,
                comparison,
                {
                    "sync": {"revision": comparison.revision, "prune": spec.prune},
                    "initiatedBy": {"automated": True},
                },
            )
            running = op_state.get("phase") == RUNNING
        if running:
            requeue = self._advance(app, spec, status, comparison, state, dest)
        elif op_state.get("phase") == FAILED and self._retry_due(spec, op_state):
            requeue = self._retry_delay(spec, op_state)
        self._write_status(app, status, state)
        if requeue is not None:
            return Result(requeue_after=requeue)
        return None

    def _finalize(self, app: Obj, spec: apps.AppSpec, state: _AppState, dest: _Destination) -> Result | None:
        """An app deleted with Argo CD's resources finalizer: delete what it owns in its
        destination (foreground, or background for the `/background` variant), and once
        none of it is left, drop the finalizer so that the app goes. Without the finalizer
        the resources stay, as in Argo CD."""
        meta = app["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        ours = [f for f in finalizers if f in (RESOURCES_FINALIZER, RESOURCES_FINALIZER_BACKGROUND)]
        if not ours:
            return None
        try:
            self._compare(app, spec, state, "", dest)  # watches the kinds in git (after a restart too)
        except (GitError, RenderError, clusters.ClusterError) as exc:
            log.info("deleting %s/%s: %s; deleting what is watched", meta.get("namespace"), meta["name"], exc)
        policy = "Foreground" if RESOURCES_FINALIZER in ours else "Background"
        app_key = f"{meta.get('namespace', '')}/{meta['name']}"
        left = [o for inf in list(dest.kinds.values()) for o in inf.cache.by_index("tracking", app_key)]
        for obj in left:
            obj_meta = obj["metadata"]
            if obj_meta.get("deletionTimestamp"):
                continue
            try:
                dest.client.delete(
                    obj["apiVersion"], obj["kind"], obj_meta["name"], obj_meta.get("namespace", ""), policy
                )
            except errors.NotFound:
                pass
        if left:
            return Result(requeue_after=2.0)  # their deletions enqueue the app sooner
        patch = [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in finalizers if f not in ours]},
        ]
        try:
            self.client.patch(app["apiVersion"], apps.KIND, meta["name"], patch, meta.get("namespace", ""), "json")
        except errors.NotFound:
            pass
        return None

    def _take_refresh_request(self, app: Obj, state: _AppState) -> None:
        """`gitops.dev/refresh` (or Argo CD's annotation) asks for a fetch; `hard` also
        forgets cached predictions. The annotation is removed once taken."""
        ann = app["metadata"].get("annotations") or {}
        for name in (apps.REFRESH_ANNOTATION, apps.ARGO_REFRESH_ANNOTATION):
            if name not in ann:
                continue
            state.fetch_since = time.monotonic()
            if ann[name] == "hard":
                state.predictions.clear()
            meta = app["metadata"]
            try:
                self.client.patch(
                    app["apiVersion"],
                    apps.KIND,
                    meta["name"],
                    {"metadata": {"annotations": {name: None}}},
                    meta.get("namespace", ""),
                    "merge",
                )
            except errors.NotFound:
                pass

    # ------------------------------------------------------------------ compare
    def _compare(self, app: Obj, spec: apps.AppSpec, state: _AppState, override: str, dest: _Destination) -> Comparison:
        meta = app["metadata"]
        source = spec.sources[0]
        target = override or source.target_revision
        since = state.fetch_since
        self._fetch(source.repo_url, time.monotonic() - self.settings.poll_seconds if since is None else since)
        sha = self.repos.resolve(source.repo_url, target)
        if state.fetch_since == since:  # a refresh asked meanwhile needs a fetch after it
            state.fetch_since = None
        manifests: list[Obj] = []
        with self._render_slots:
            for src in spec.sources:
                rev = sha if src is source else self.repos.resolve(src.repo_url, src.target_revision)
                manifests.extend(self.renderer.render(src.repo_url, rev, src.raw, meta["name"], spec.dest_namespace))
        desired, hooks = desired_objects(app, spec, manifests, dest.namespaced)
        diffs: dict[ResourceKey, ResourceDiff] = {}
        healths: dict[ResourceKey, Health] = {}
        seen: set[ResourceKey] = set()
        for obj in desired:
            if hook_types(obj):
                continue  # hooks run during a sync; they are not resources to compare
            key = ResourceKey.of(obj)
            seen.add(key)
            dest.informer(obj["apiVersion"], obj["kind"])
            live = dest.live(key)
            predicted = self._predict(state, key, obj, live, dest.client) if live is not None else None
            diffs[key] = compare(obj, predicted, live, spec.ignore_differences)
            healths[key] = self._health(state, key, live)
        app_key = f"{meta.get('namespace', '')}/{meta['name']}"
        extraneous = []
        for inf in list(dest.kinds.values()):
            for live in inf.cache.by_index("tracking", app_key):
                key = ResourceKey.of(live)
                if key in seen or hook_types(live):
                    continue
                extraneous.append(live)
                diffs[key] = compare(None, None, live, spec.ignore_differences)
        out_of_sync = any(d.status != SYNCED for d in diffs.values())
        health = aggregate(list(healths.values())) if healths else Health("Healthy", "")
        return Comparison(
            sha,
            desired,
            hooks,
            diffs,
            extraneous,
            health,
            healths,
            OUT_OF_SYNC if out_of_sync else SYNCED,
            self._commit_message(state, source.repo_url, sha),
        )

    def _fetch(self, url: str, since: float) -> None:
        """Make sure a fetch of `url` started at or after `since` (monotonic) has completed.
        Callers wait for a fetch in progress and reuse it when it started late enough, so a
        push webhook that refreshes the 1,000 apps of a monorepo costs one fetch."""
        key = normalize_url(url)
        with self._state_lock:
            lock = self._fetch_locks.setdefault(key, threading.Lock())
        with lock:
            if self._fetched_at.get(key, -math.inf) >= since:
                return
            started = time.monotonic()
            with self._fetch_slots:
                self.repos.fetch(url)
            self._fetched_at[key] = started

    def _commit_message(self, state: _AppState, url: str, sha: str) -> str:
        if state.commit_message[0] != sha:
            try:
                state.commit_message = (sha, self.repos.commit_info(url, sha).message)
            except GitError:
                return ""
        return state.commit_message[1]

    def _source_type(self, state: _AppState, source: apps.Source, revision: str) -> str:
        """`status.sourceType`, asked of git once per revision and source spec."""
        digest = _digest(source.raw)
        if state.source_type[:2] != (revision, digest):
            kind = self.renderer.source_type(source.repo_url, revision, source.raw)
            state.source_type = (revision, digest, kind)
        return state.source_type[2]

    def _predict(self, state: _AppState, key: ResourceKey, desired: Obj, live: Obj, client: Client) -> Obj | None:
        """What the object would be after our apply: a server-side dry run, cached by the
        desired content and the live resourceVersion so a no-op pass sends nothing."""
        digest = _hash(desired)
        live_rv = _resource_version(live)
        hit = state.predictions.get(key)
        if hit is None or hit.desired != digest or hit.live_rv != live_rv:
            try:
                predicted = client.apply(clone(desired), field_manager="gitops", force=True, dry_run=True)
            except errors.APIError as exc:
                log.debug("dry run of %s failed: %s", key, exc.message)
                hit = _Prediction(digest, live_rv, None)
            else:
                target = normalize(predicted)
                same = target == normalize(live)
                hit = _Prediction(digest, live_rv, None if same else target, same)
            state.predictions[key] = hit
        return live if hit.same else hit.obj

    @staticmethod
    def _health(state: _AppState, key: ResourceKey, live: Obj | None) -> Health:
        """The resource's health; Progressing while the cache still shows an object older
        than our own apply returned, whose status cannot speak for the change yet (else a
        Deployment just updated reads Healthy until its controller catches up)."""
        if live is None:
            return Health("Missing", "")
        applied = state.predictions.get(key)
        if applied is not None and _rv({"metadata": {"resourceVersion": applied.live_rv}}) > _rv(live):
            return Health("Progressing", "waiting for the cluster to report the applied change")
        return resource_health(live)

    def _applied(self, state: _AppState, desired: Obj, result: Obj) -> None:
        """What our apply returned is the live object at its resourceVersion, and what a dry
        run of the same apply on it predicts: the comparison after a sync needs no dry run."""
        key = ResourceKey.of(desired)
        state.predictions[key] = _Prediction(_hash(desired), _resource_version(result), None, same=True)

    def _apply_comparison(
        self, status: Obj, c: Comparison, spec: apps.AppSpec, state: _AppState, dest: _Destination
    ) -> None:
        resources = []
        for key, diff in sorted(c.diffs.items()):
            entry: Obj = {
                **key.as_status(),
                "version": dest.versions.get((key.group, key.kind), "").rpartition("/")[2],
                "status": diff.status,
            }
            h = c.resource_health.get(key)
            if h is not None:
                entry["health"] = {"status": h.status, **({"message": h.message} if h.message else {})}
            if diff.status == "Extraneous":
                entry["status"] = OUT_OF_SYNC
                entry["requiresPruning"] = True
            resources.append(entry)
        status["resources"] = resources
        source = spec.sources[0]
        status["sync"] = {
            "status": c.sync_status,
            "revision": c.revision,
            "comparedTo": {
                "source": source.raw,
                "destination": {
                    "server": spec.dest_server or None,
                    "name": spec.dest_name or None,
                    "namespace": spec.dest_namespace or None,
                },
            },
        }
        status["health"] = {"status": c.health.status, **({"message": c.health.message} if c.health.message else {})}
        status["summary"] = {
            "images": sorted({img for o in c.desired for img in _images(o)}),
            "commitMessage": c.commit_message,
        }
        try:
            status["sourceType"] = self._source_type(state, source, c.revision)
        except (GitError, RenderError):
            pass
        status["reconciledAt"] = now_rfc3339()

    # ------------------------------------------------------------------ operations
    def _should_auto_sync(self, spec: apps.AppSpec, status: Obj, c: Comparison, state: _AppState) -> bool:
        if not spec.automated or c.sync_status != OUT_OF_SYNC:
            return False
        if not c.desired and not spec.allow_empty:
            return False  # never prune everything because a render came back empty
        last = status.get("operationState") or {}
        last_rev = (last.get("syncResult") or {}).get("revision")
        if last_rev != c.revision:
            return True
        if last.get("phase") == FAILED:
            return False  # Argo CD does not retry the same revision automatically (unless retry)
        return spec.self_heal

    def _begin(self, app: Obj, status: Obj, c: Comparison, requested: Obj) -> Obj:
        sync = requested.get("sync") or {}
        op = start_operation(
            c.revision,
            apps.parse_spec(app).sources[0].raw,
            requested.get("initiatedBy") or {"username": "admin"},
            {k: v for k, v in sync.items() if k != "revision"},
        )
        status["operationState"] = op
        if self.gate is not None:
            violations = self.gate.check(c.desired)
            blocking = [v for v in violations if v.action == "Enforce"]
            warnings = [v for v in violations if v.action != "Enforce"]
            _set_policy_conditions(status, blocking, warnings)
            if blocking:
                op["phase"] = FAILED
                op["finishedAt"] = now_rfc3339()
                op["message"] = "blocked by policy: " + "; ".join(
                    f"{v.policy}/{v.rule} on {v.resource}: {v.message}" for v in blocking
                )
        return op

    def _advance(
        self, app: Obj, spec: apps.AppSpec, status: Obj, c: Comparison, state: _AppState, dest: _Destination
    ) -> float | None:
        op = status["operationState"]
        sync = op.get("operation", {}).get("sync", {})
        selected = {
            (r.get("group", ""), r.get("kind"), r.get("namespace", ""), r.get("name"))
            for r in sync.get("resources") or []
        }
        desired = c.desired
        if selected:
            desired = [
                o
                for o in desired
                if (ResourceKey.of(o).group, o["kind"], ResourceKey.of(o).namespace, ResourceKey.of(o).name) in selected
            ]
        if spec.flag("ApplyOutOfSyncOnly"):
            desired = [
                o
                for o in desired
                if hook_types(o)
                or c.diffs.get(ResourceKey.of(o)) is None
                or c.diffs[ResourceKey.of(o)].status != SYNCED
            ]
        prune = bool(sync.get("prune", spec.prune))
        plan: Plan = make_plan(desired, [] if selected else c.extraneous, prune, spec.flag("PruneLast"))
        if spec.flag("CreateNamespace") and spec.dest_namespace and not sync.get("dryRun"):
            self._ensure_namespace(dest, spec.dest_namespace)
        ctx = SyncContext(
            dest.client,
            dest.live,
            resource_health,
            dry_run=bool(sync.get("dryRun")),
            replace=spec.flag("Replace"),
            applied=lambda desired, result: self._applied(state, desired, result),
        )
        for obj in desired:
            dest.informer(obj["apiVersion"], obj["kind"])
        result = step(ctx, plan, op)
        if op["phase"] == SUCCEEDED and not ctx.dry_run:
            _add_history(status, op, spec.revision_history_limit)
            _clear_condition(status, "SyncError")
        elif op["phase"] == FAILED:
            _set_condition(status, "SyncError", op.get("message", "sync failed"))
            return self._retry_delay(spec, op) if self._retry_due(spec, op) else None
        return result.requeue_after

    def _retry_due(self, spec: apps.AppSpec, op: Obj) -> bool:
        return spec.retry_limit > 0 and int(op.get("retryCount", 0)) < spec.retry_limit

    def _retry_delay(self, spec: apps.AppSpec, op: Obj) -> float:
        """Exponential back-off of `syncPolicy.retry`; the retry restarts the operation."""
        n = int(op.get("retryCount", 0))
        backoff = spec.retry_backoff
        base = _duration(backoff.get("duration", "5s"))
        factor = float(backoff.get("factor", 2))
        cap = _duration(backoff.get("maxDuration", "3m"))
        delay = min(base * factor**n, cap)
        op["retryCount"] = n + 1
        op["phase"] = RUNNING
        op["step"] = 0
        op["syncResult"]["resources"] = []
        op["message"] = f"Retrying attempt #{n + 1} at {delay:.0f}s"
        return delay

    def _ensure_namespace(self, dest: _Destination, name: str) -> None:
        if dest.informer("v1", "Namespace").cache.get(name) is not None:
            return  # most syncs: no create to be refused
        try:
            dest.client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, field_manager="gitops"
            )
        except errors.AlreadyExists:
            pass

    # ------------------------------------------------------------------ status
    def _write_status(self, app: Obj, status: Obj, state: _AppState) -> None:
        """Replace the status (the engine is its only writer, so no resourceVersion
        precondition: a concurrent spec edit must not make us lose sync progress), then
        clear a sync request the status now records."""
        meta = app["metadata"]
        if not _same_status(app.get("status") or {}, status):
            try:
                written = self.client.patch(
                    app["apiVersion"],
                    apps.KIND,
                    meta["name"],
                    [{"op": "add", "path": "/status", "value": status}],
                    meta.get("namespace", ""),
                    "json",
                    field_manager="gitops-controller",
                    subresource="status",
                )
            except errors.NotFound:
                return
            state.status = status  # this reconcile's own copy, no longer used by it
            state.written_rv = max(state.written_rv, _rv(written))
            metrics.sync_finished(app, app.get("status") or {}, status)
            for listener in self.listeners:
                try:
                    listener(written)
                except Exception:
                    log.exception("status listener failed")
        if app.get("operation") is not None and (status.get("operationState") or {}).get("startedAt"):
            try:
                cleared = self.client.patch(
                    app["apiVersion"], apps.KIND, meta["name"], {"operation": None}, meta.get("namespace", ""), "merge"
                )
            except errors.NotFound:
                return
            state.written_rv = max(state.written_rv, _rv(cleared))
            state.cleared_operation = True


# ---------------------------------------------------------------------- helpers
def desired_objects(
    app: Obj, spec: apps.AppSpec, manifests: list[Obj], namespaced: Callable[[str, str], bool]
) -> tuple[list[Obj], list[Obj]]:
    """Manifests as they will be applied: in the destination namespace when namespaced,
    Argo CD Applications converted, and marked with this app's tracking id. Returns
    (everything, the hooks among them). The manifests, fresh from the renderer, are
    marked in place."""
    meta = app["metadata"]
    desired: list[Obj] = []
    hooks: list[Obj] = []
    for raw in manifests:
        obj = apps.convert_argo(raw) if raw.get("apiVersion") == apps.ARGO_API_VERSION else raw
        obj_meta = obj.setdefault("metadata", {})
        if namespaced(obj["apiVersion"], obj["kind"]):
            obj_meta.setdefault("namespace", spec.dest_namespace or "default")
        else:
            obj_meta.pop("namespace", None)
        tracking = tracking_id(meta.get("namespace", ""), meta["name"], ResourceKey.of(obj))
        obj_meta.setdefault("annotations", {})[TRACKING] = tracking
        (hooks if hook_types(obj) else desired).append(obj)
    return desired + hooks, hooks


def _digest(obj: Obj) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def _hash(obj: Obj) -> bytes:
    return hashlib.blake2b(_digest(obj), digest_size=16).digest()


def _resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _rv(obj: Obj) -> int:
    """resourceVersion as a number (etcd and our store count up; opaque ones read as 0)."""
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _same_but_status(a: Obj, b: Obj) -> bool:
    """Equal but for status and the server's bookkeeping of writes."""

    def rest(o: Obj) -> tuple[Obj, Obj]:
        meta = {k: v for k, v in (o.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
        return meta, {k: v for k, v in o.items() if k not in ("status", "metadata")}

    return rest(a) == rest(b)


def _queue_key(api_version: str, obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{api_version}|{meta.get('namespace', '')}/{meta.get('name', '')}"


def _images(obj: Obj) -> list[str]:
    spec = obj.get("spec") or {}
    pod = (
        (spec.get("template") or {}).get("spec")
        or ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
        or (spec if obj.get("kind") == "Pod" else {})
    )
    return [
        c.get("image", "") for c in (pod.get("containers") or []) + (pod.get("initContainers") or []) if c.get("image")
    ]


def _set_condition(status: Obj, ctype: str, message: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)
    when = old["lastTransitionTime"] if old and old.get("message") == message else now_rfc3339()
    conds.append({"type": ctype, "message": message, "lastTransitionTime": when})
    status["conditions"] = conds


def _clear_condition(status: Obj, ctype: str) -> None:
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != ctype]


def _set_policy_conditions(status: Obj, blocking: list[Violation], warnings: list[Violation]) -> None:
    _clear_condition(status, "PolicyViolation")
    _clear_condition(status, "PolicyWarning")
    if blocking:
        _set_condition(
            status,
            "PolicyViolation",
            "; ".join(f"policy {v.policy} rule {v.rule} denied {v.resource}: {v.message}" for v in blocking),
        )
    if warnings:
        _set_condition(
            status,
            "PolicyWarning",
            "; ".join(f"policy {v.policy} rule {v.rule} audit on {v.resource}: {v.message}" for v in warnings),
        )


def _add_history(status: Obj, op: Obj, limit: int) -> None:
    history = list(status.get("history") or [])
    next_id = max((int(h.get("id", 0)) for h in history), default=-1) + 1
    history.append(
        {
            "id": next_id,
            "revision": op["syncResult"]["revision"],
            "source": op["syncResult"].get("source"),
            "deployStartedAt": op.get("startedAt"),
            "deployedAt": op.get("finishedAt") or now_rfc3339(),
            "initiatedBy": op.get("operation", {}).get("initiatedBy"),
        }
    )
    status["history"] = history[-limit:] if limit > 0 else history


def _same_status(old: Obj, new: Obj) -> bool:
    """Unchanged but for reconciledAt: no write (no event storm from no-op passes)."""

    def strip(s: Obj) -> Obj:
        return {k: v for k, v in s.items() if k != "reconciledAt"}

    return strip(old) == strip(new)


def _duration(value: Any) -> float:
    """`5s`, `3m`, `1h30m` (Go durations, as retry.backoff uses)."""
    if isinstance(value, int | float):
        return float(value)
    total, num = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    text = str(value).strip()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
        elif text.startswith("ms", i):
            total += float(num or 0) / 1000
            num = ""
            i += 1
        elif ch in units:
            total += float(num or 0) * units[ch]
            num = ""
        i += 1
    return total + (float(num) if num else 0.0)
