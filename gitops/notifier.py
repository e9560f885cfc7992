"""Application status transitions out to the world: GitLab and GitHub commit statuses for
the commit an app deploys, generic webhooks on Argo-CD-like triggers, and a merge-request
note previewing what a merge would change.

It watches Applications through an informer (controllers/runtime.py), so it works the same
on the embedded cluster and on a real one, and hands every delivery to a background
worker: a slow or failing notification service never holds up a sync."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from controllers.client import Client
from controllers.runtime import InformerFactory
from gitops import actions, apps
from gitops.resources import Obj
from gitops.source.git import GitError, RepoCache
from gitops.source.render import Renderer, RenderError
from webhooks.git import MergeRequestEvent, repo_key
from webhooks.notify import DeliveryWorker, GitHub, GitLab, Webhook, commit_state, event, fired_triggers

log = logging.getLogger(__name__)

GITLAB_PROJECT_ANNOTATION = "gitops.dev/gitlab-project"  # id or group/project, when not the repo's path
GITHUB_REPO_ANNOTATION = "gitops.dev/github-repo"  # owner/name, when not the repo's path
PREVIEW_MARKER = "<!-- gitops-preview:{app} -->"
_MAX_PREVIEW_LINES = 200

StatusSender = Callable[[str, str, str], None]  # (sha, state, description)


@dataclass
class NotifySettings:
    dashboard_url: str = ""  # target_url of statuses: {dashboard_url}/apps/{namespace}/{name}
    gitlab: GitLab | None = None  # apps on its host report to it, others by annotation
    github: GitHub | None = None  # apps on github.com report to it, others by annotation
    webhooks: list[Webhook] = field(default_factory=list)


class AppNotifier:
    def __init__(
        self, informers: InformerFactory, settings: NotifySettings, worker: DeliveryWorker | None = None
    ) -> None:
        self.informers = informers
        self.settings = settings
        self.worker = worker or DeliveryWorker()
        self._lock = threading.Lock()
        self._sent: dict[tuple[str, str], tuple[str, str]] = {}  # (backend, app) -> (sha, state)
        self._fired: dict[tuple[str, str, str], str] = {}  # (webhook url, app, trigger) -> revision

    def start(self) -> AppNotifier:
        for api_version in apps.APP_API_VERSIONS:
            self.informers.informer(api_version, apps.KIND).add_handler(self._on_app)
        self.informers.start()
        return self

    def stop(self) -> None:
        self.worker.stop()

    # ------------------------------------------------------------------ status transitions
    def _on_app(self, etype: str, app: Obj, _old: Obj | None) -> None:
        """Runs on the informer's thread: decide and queue, never send here. What apps show
        when first seen (engine start) is remembered, not re-sent."""
        key = apps.app_key(app)
        prime = etype == "ADDED"
        if etype == "DELETED":
            with self._lock:
                for k in [k for k in self._sent if k[1] == key]:
                    del self._sent[k]
            return
        state = commit_state(app)
        if state is not None and state.sha:
            for backend, target, send in self._status_targets(app):
                with self._lock:
                    if self._sent.get((backend, key)) == (state.sha, state.state):
                        continue
                    self._sent[(backend, key)] = (state.sha, state.state)
                if not prime:
                    job = partial(send, state.sha, state.state, state.description)
                    self.worker.submit(f"{backend}|{target}|{state.sha}|{key}", job)
        for trigger, revision in fired_triggers(app):
            for hook in self.settings.webhooks:
                if not hook.wants(trigger):
                    continue
                with self._lock:
                    if self._fired.get((hook.url, key, trigger)) == revision:
                        continue
                    self._fired[(hook.url, key, trigger)] = revision
                if not prime:
                    body = event(app, trigger, revision, self._app_url(app))
                    self.worker.submit(f"webhook|{hook.url}|{key}|{trigger}|{revision}", partial(hook.send, body))

    def _status_targets(self, app: Obj) -> list[tuple[str, str, StatusSender]]:
        """(backend, project, send) for each commit-status service this app reports to."""
        meta = app.get("metadata") or {}
        ann = meta.get("annotations") or {}
        name = f"gitops/{meta.get('name', '')}"
        url = self._app_url(app)
        try:
            repo = apps.parse_spec(app).sources[0].repo_url
        except apps.SpecError:
            return []
        host, _, path = repo_key(repo).partition("/")
        out: list[tuple[str, str, StatusSender]] = []
        gitlab, github = self.settings.gitlab, self.settings.github
        if gitlab is not None:
            project = ann.get(GITLAB_PROJECT_ANNOTATION) or (path if host == _host(gitlab.api) else "")
            if project:
                out.append(("gitlab", project, partial(_gitlab_status, gitlab, project, name, url)))
        if github is not None:
            github_host = "github.com" if _host(github.api) == "api.github.com" else _host(github.api)
            full_name = ann.get(GITHUB_REPO_ANNOTATION) or (path if host == github_host else "")
            if full_name:
                out.append(("github", full_name, partial(_github_status, github, full_name, name, url)))
        return out

    def _app_url(self, app: Obj) -> str:
        if not self.settings.dashboard_url:
            return ""
        meta = app.get("metadata") or {}
        return f"{self.settings.dashboard_url.rstrip('/')}/apps/{meta.get('namespace', '')}/{meta.get('name', '')}"

    # ------------------------------------------------------------------ merge-request preview
    def preview_merge_request(
        self, client: Client, repos: RepoCache, renderer: Renderer
    ) -> Callable[[MergeRequestEvent], None]:
        """A handler for the push dispatcher's merge-request events: for each app that deploys
        the request's target branch, a GitLab note (one per app, edited in place) with what
        merging its head commit would change in the cluster."""

        def handle(mr: MergeRequestEvent) -> None:
            gitlab = self.settings.gitlab
            if gitlab is None or mr.provider != "gitlab":
                return
            keys = {repo_key(u) for u in mr.repo_urls}
            for key in self._app_keys():
                app = self._get(key)
                if app is None:
                    continue
                try:
                    source = apps.parse_spec(app).sources[0]
                except apps.SpecError:
                    continue
                if repo_key(source.repo_url) not in keys or source.target_revision not in (mr.target_branch, "HEAD"):
                    continue
                marker = PREVIEW_MARKER.format(app=apps.app_key(app))

                def send(a: Obj = app, m: str = marker, url: str = source.repo_url) -> None:
                    body = _preview(client, repos, renderer, a, url, mr)
                    gitlab.upsert_note(mr.project, mr.number, m, body)

                self.worker.submit(f"mr-note|{mr.project}|{mr.number}|{marker}", send)

        return handle

    def _app_keys(self) -> list[str]:
        return [
            f"{av}|{apps.app_key(o)}"
            for av in apps.APP_API_VERSIONS
            for o in self.informers.informer(av, apps.KIND).cache.list()
        ]

    def _get(self, key: str) -> Obj | None:
        av, _, ns_name = key.partition("|")
        return self.informers.informer(av, apps.KIND).cache.get(ns_name)


def _gitlab_status(gitlab: GitLab, project: str, name: str, url: str, sha: str, state: str, description: str) -> None:
    gitlab.commit_status(project, sha, state, name, url, description)


def _github_status(github: GitHub, repo: str, name: str, url: str, sha: str, state: str, description: str) -> None:
    github.commit_status(repo, sha, state, name, url, description)


def _preview(client: Client, repos: RepoCache, renderer: Renderer, app: Obj, url: str, mr: MergeRequestEvent) -> str:
    """Markdown: the resources a sync of the merge request's head would change."""
    name = app["metadata"]["name"]
    head = f"### gitops: `{name}` at {mr.head_sha[:8]} (merge request !{mr.number})"
    try:
        try:
            sha = repos.resolve(url, mr.head_sha, refresh=True)
        except GitError:  # a fork's commit: GitLab publishes it under the request's ref
            sha = repos.resolve(url, f"refs/merge-requests/{mr.number}/head", refresh=True)
        diffs = actions.diff_app(client, repos, renderer, app, sha)
    except (GitError, RenderError, apps.SpecError) as exc:
        return f"{head}\n\nNo preview: {exc}"
    changed = [d for d in diffs if d.status != "Synced"]
    if not changed:
        return f"{head}\n\nNo change to the cluster."
    lines = [head, "", f"{len(changed)} resource(s) would change:", ""]
    for d in changed:
        lines.append(f"- `{d.key}`: {d.status}")
    lines += ["", "```diff"]
    for d in changed:
        if d.diff is not None:
            lines.extend(d.diff.diff.splitlines())
    if len(lines) > _MAX_PREVIEW_LINES:
        lines = lines[:_MAX_PREVIEW_LINES] + ["... (truncated)"]
    lines.append("```")
    return "\n".join(lines)


def _host(url: str) -> str:
    """The host of an API URL, as `repo_key` spells hosts."""
    return (urlsplit(url).hostname or "").lower()
