"""From push events to app refreshes: which apps a push affects, and how floods coalesce.

An app is affected when one of its sources is the pushed repository (URLs compared by
`webhooks.git.repo_key`: scheme, user, port, `.git` and case do not matter), its
targetRevision names the pushed ref (a branch, a tag, a full ref, or HEAD for the default
branch), and a changed file lies under its path (or under a path of Argo CD's
`argocd.argoproj.io/manifest-generate-paths` annotation). When the payload does not list
the changed files (truncated or empty commit lists, Bitbucket, the post-receive hook) they
come from `git diff before..after` in the engine's repository cache; when even git cannot
tell (a new branch, a force push), every app on that repository and revision is affected.

Pushes are handled off the request thread. Events for one repository are merged until it
has been quiet for `quiet` seconds, or for at most `max_wait` seconds in a flood, then each
affected app gets one refresh: a fetch started after the newest push, so the newest commit
always wins and nothing is lost."""

from __future__ import annotations

import base64
import binascii
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Blueprint

from controllers import errors
from controllers.client import Client
from gitops import apps, metrics
from gitops.actions import request_refresh
from gitops.controller import AppController
from gitops.resources import Obj
from gitops.source.git import GitError, RepoCache
from webhooks.git import PROVIDERS, ZERO_SHA, Event, MergeRequestEvent, PushEvent, WebhookSecrets, repo_key
from webhooks.receiver import DEFAULT_MAX_BODY, Observer, webhook_blueprint

if TYPE_CHECKING:
    from gitops.engine import Engine

log = logging.getLogger(__name__)

PATHS_ANNOTATION = "argocd.argoproj.io/manifest-generate-paths"
SECRET_NAME = "gitops-webhook"  # noqa: S105 (the name of a Secret, not a secret)


@dataclass
class _RefChange:
    before: str
    after: str
    files: set[str] | None
    default_branch: str


@dataclass
class _Pending:
    """The pushes to one repository not yet turned into refreshes."""

    keys: frozenset[str]
    first: float
    last: float
    changes: dict[str, _RefChange] = field(default_factory=dict)

    def add(self, event: PushEvent, now: float) -> None:
        self.last = now
        files = set(event.changed_files) if event.changed_files is not None else None
        old = self.changes.get(event.ref)
        if old is None:
            self.changes[event.ref] = _RefChange(event.before, event.after, files, event.default_branch)
            return
        old.after = event.after  # the oldest `before` and the newest `after` span every push
        old.files = None if old.files is None or files is None else old.files | files
        old.default_branch = event.default_branch or old.default_branch


class PushDispatcher:
    """Turns push events into app refreshes on a background thread; `submit` never waits."""

    def __init__(
        self,
        controller: AppController,
        repos: RepoCache,
        quiet: float = 0.05,
        max_wait: float = 1.0,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        """`leading` says whether this engine reconciles: a standby replica (leader
        election) passes its pushes to the leader through the refresh annotation."""
        self.controller = controller
        self.repos = repos
        self.leading = leading
        self.quiet, self.max_wait = quiet, max_wait
        self.refreshes: Counter[str] = Counter()  # app queue key -> refreshes asked by pushes
        self.merge_request_handlers: list[Callable[[MergeRequestEvent], None]] = []
        self._inbox: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> PushDispatcher:
        self._thread = threading.Thread(target=self._run, name="push-dispatcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, events: Iterable[Event]) -> None:
        for event in events:
            self._inbox.put(event)

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        pending: dict[frozenset[str], _Pending] = {}
        while True:
            now = time.monotonic()
            due = [p for p in pending.values() if now >= min(p.last + self.quiet, p.first + self.max_wait)]
            for p in due:
                del pending[p.keys]
                try:
                    self._flush(p)
                except Exception:
                    log.exception("push to %s: refresh failed", sorted(p.keys))
            timeout = min((min(p.last + self.quiet, p.first + self.max_wait) for p in pending.values()), default=None)
            try:
                event = self._inbox.get(timeout=None if timeout is None else max(0.0, timeout - time.monotonic()))
            except queue.Empty:
                continue
            if event is None:
                return
            if isinstance(event, MergeRequestEvent):
                for handler in self.merge_request_handlers:
                    handler(event)
                continue
            keys = frozenset(repo_key(u) for u in event.repo_urls)
            now = time.monotonic()
            entry = pending.get(keys)
            if entry is None:
                entry = pending[keys] = _Pending(keys, now, now)
            entry.add(event, now)

    # ------------------------------------------------------------------ matching
    def _flush(self, pending: _Pending) -> None:
        """Refresh the apps the merged pushes affect: one refresh per app."""
        candidates: list[tuple[str, Obj, list[apps.Source]]] = []
        for key in self.controller.app_keys():
            app = self.controller.get_app(key)
            if app is None:
                continue
            try:
                sources = [s for s in apps.parse_spec(app).sources if repo_key(s.repo_url) in pending.keys]
            except apps.SpecError:
                continue
            if sources:
                candidates.append((key, app, sources))
        if not candidates:
            log.info("push to %s: no application deploys from it", sorted(pending.keys))
            return
        url = candidates[0][2][0].repo_url
        fetched: float | None = None
        affected: set[str] = set()
        for ref, change in pending.changes.items():
            files = change.files
            if files is None and ZERO_SHA not in (change.before, change.after):
                if fetched is None:
                    fetched = self._fetch(url)
                files = self._changed_files(url, change.before, change.after)
            for key, app, sources in candidates:
                if any(_targets(s, ref, change.default_branch) and _touches(app, s, files) for s in sources):
                    affected.add(key)
        leading = self.leading()
        for key, app, _ in candidates:
            if key not in affected:
                continue
            self.refreshes[key] += 1
            if leading:
                self.controller.refresh(key, fetched_since=fetched)
            else:
                try:
                    request_refresh(self.controller.client, app)
                except errors.APIError as exc:
                    log.warning("push: cannot pass the refresh of %s to the leader: %s", key, exc)
        log.info("push to %s: refreshing %s", sorted(pending.keys), sorted(affected) or "nothing")

    def _fetch(self, url: str) -> float | None:
        try:
            return self.controller.fetch_repo(url)
        except GitError as exc:
            log.warning("push: fetch before diff failed: %s", exc)
            return None

    def _changed_files(self, url: str, before: str, after: str) -> set[str] | None:
        try:
            return set(self.repos.changed_files(url, before, after))
        except GitError as exc:  # e.g. `before` was force-pushed away: affect every app
            log.info("push: no diff %s..%s: %s", before[:7], after[:7], exc)
            return None


def _targets(source: apps.Source, ref: str, default_branch: str) -> bool:
    """Does a source tracking `targetRevision` follow `ref`?"""
    target = source.target_revision.strip()
    if target in ("", "HEAD"):
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else ""
        return bool(branch) and (not default_branch or branch == default_branch)
    if target.startswith("refs/"):
        return target == ref
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return target == ref[len(prefix) :]
    return False


def _touches(app: Obj, source: apps.Source, files: set[str] | None) -> bool:
    if files is None:
        return True
    watched = _watched_paths(app, source)
    return any(not w or f == w or f.startswith(w + "/") for f in files for w in watched)


def _watched_paths(app: Obj, source: apps.Source) -> list[str]:
    """Repo-relative directories whose changes affect the app ("" is the whole repository)."""
    base = _clean(source.path)
    ann = ((app.get("metadata") or {}).get("annotations") or {}).get(PATHS_ANNOTATION)
    if not ann:
        return [base]
    out = []
    for item in str(ann).split(";"):
        item = item.strip()
        if not item:
            continue
        out.append(_clean(item) if item.startswith("/") else _clean(f"{base}/{item}"))
    return out or [base]


def _clean(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def push_blueprint(
    engine: Engine,
    secrets: WebhookSecrets | str | None,
    max_body: int = DEFAULT_MAX_BODY,
    observe: Observer | None = None,
) -> Blueprint:
    """POST /api/webhook feeding the engine's push dispatcher (for the web server to mount);
    requests are counted in gitops_webhook_requests_total unless `observe` says otherwise."""
    if not isinstance(secrets, WebhookSecrets):
        secrets = WebhookSecrets(secrets or "")
    if not secrets.shared and not any(secrets.per_provider.values()):
        log.warning("webhook secret not set: push events are accepted unauthenticated (--webhook-secret)")
    if observe is None:

        def observe(provider: str, outcome: str) -> None:
            metrics.WEBHOOK_REQUESTS.labels(provider, outcome).inc()

    return webhook_blueprint(secrets, engine.push.submit, max_body, observe)


def cluster_secrets(client: Client, namespace: str, shared: str = "", name: str = SECRET_NAME) -> WebhookSecrets:
    """The webhook secrets: `shared` (the --webhook-secret flag) and, from the Secret `name`
    in `namespace` when it exists, `webhook.secret` (the shared one, when the flag is not
    given) and `webhook.<provider>.secret` (gitlab, github, gitea, gogs, bitbucket,
    bitbucket-server, generic; for Bitbucket Cloud hooks without a secret, the hook's UUID)."""
    try:
        secret = client.get("v1", "Secret", name, namespace)
    except errors.NotFound:
        return WebhookSecrets(shared)
    values: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"Secret {namespace}/{name}: data.{key} is not base64 of UTF-8 text") from None
    per_provider = {
        p.name: values[f"webhook.{p.name}.secret"] for p in PROVIDERS if f"webhook.{p.name}.secret" in values
    }
    return WebhookSecrets(shared or values.get("webhook.secret", ""), per_provider)
