"""What users ask of an Application, shared by the CLI (`gitops app ...`) and the web
server: sync, refresh and rollback are requests written to the Application (`operation`,
the refresh annotation) that the engine carries out, and a diff is a render and a
comparison with the engine's own code."""

from __future__ import annotations

from dataclasses import dataclass

from controllers import errors
from controllers.client import Client
from gitops import apps
from gitops.controller import desired_objects
from gitops.diff import ResourceDiff, compare
from gitops.resources import Obj, ResourceKey
from gitops.source.git import RepoCache
from gitops.source.render import Renderer


class ActionError(Exception):
    """A request that cannot be made now; `code` is the HTTP status that says why."""

    def __init__(self, message: str, code: int = 409) -> None:
        super().__init__(message)
        self.code = code


def request_refresh(client: Client, app: Obj, hard: bool = False) -> None:
    """Ask the engine to fetch git and compare again (`hard` also forgets cached predictions)."""
    meta = app["metadata"]
    client.patch(
        app["apiVersion"],
        apps.KIND,
        meta["name"],
        {"metadata": {"annotations": {apps.REFRESH_ANNOTATION: "hard" if hard else "normal"}}},
        meta["namespace"],
        "merge",
    )


def sync_request(
    prune: bool = False, dry_run: bool = False, revision: str | None = None, resources: list[Obj] | None = None
) -> Obj:
    """The `operation.sync` body of a sync."""
    req: Obj = {"prune": prune, "dryRun": dry_run}
    if revision:
        req["revision"] = revision
    if resources:
        req["resources"] = resources
    return req


def request_sync(client: Client, app: Obj, sync: Obj, who: str = "admin") -> None:
    """Write the sync request; refused while another operation runs, as Argo CD does."""
    meta = app["metadata"]
    op = (app.get("status") or {}).get("operationState") or {}
    if op.get("phase") == "Running":
        raise ActionError(f"another operation is already in progress on '{meta['name']}'")
    client.patch(
        app["apiVersion"],
        apps.KIND,
        meta["name"],
        {"operation": {"sync": sync, "initiatedBy": {"username": who}}},
        meta["namespace"],
        "merge",
    )


def rollback_request(app: Obj, history_id: int, force: bool = False) -> Obj:
    """The sync request that goes back to a history entry's revision. Refused with
    auto-sync on unless forced (it would sync forward again at once)."""
    if ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated") is not None and not force:
        raise ActionError("rollback cannot be initiated when auto-sync is enabled (use force)", 400)
    history = (app.get("status") or {}).get("history") or []
    entry = next((h for h in history if h.get("id") == history_id), None)
    if entry is None:
        raise ActionError(f"application '{app['metadata']['name']}' has no history entry {history_id}", 404)
    return sync_request(prune=True, revision=str(entry["revision"]))


@dataclass
class Difference:
    """One resource of an app that a sync would change."""

    key: ResourceKey
    status: str  # Synced, OutOfSync, Missing, or Extraneous (would be pruned)
    diff: ResourceDiff | None  # None for an extraneous resource known only from the status


def diff_app(
    client: Client, repos: RepoCache, renderer: Renderer, app: Obj, revision: str | None = None
) -> list[Difference]:
    """Every resource of the app compared with git: rendered at `revision` (a commit the
    cache has, e.g. the status's) or at the target revision after a fetch, and predicted
    by a server-side dry run. Secret values are masked by `ResourceDiff`. Raises GitError,
    RenderError, SpecError, APIError."""
    spec = apps.parse_spec(app)
    manifests: list[Obj] = []
    for src in spec.sources:
        rev = revision if revision and src is spec.sources[0] else None
        sha = repos.resolve(src.repo_url, rev or src.target_revision, refresh=rev is None)
        manifests += renderer.render(src.repo_url, sha, src.raw, app["metadata"]["name"], spec.dest_namespace)

    def namespaced(api_version: str, kind: str) -> bool:
        try:
            return client.resource_info(api_version, kind).namespaced
        except errors.NotFound:
            return True

    desired, hooks = desired_objects(app, spec, manifests, namespaced)
    out: list[Difference] = []
    for obj in desired:
        if obj in hooks:
            continue
        key = ResourceKey.of(obj)
        try:
            live: Obj | None = client.get(obj["apiVersion"], obj["kind"], key.name, key.namespace)
        except errors.NotFound:
            live = None
        predicted = None
        if live is not None:
            try:
                predicted = client.apply(obj, field_manager="gitops", force=True, dry_run=True)
            except errors.APIError:
                predicted = None
        d = compare(obj, predicted, live, spec.ignore_differences)
        out.append(Difference(key, d.status, d))
    for r in (app.get("status") or {}).get("resources") or []:
        if r.get("requiresPruning"):
            key = ResourceKey(r.get("group") or "", r["kind"], r.get("namespace") or "", r["name"])
            out.append(Difference(key, "Extraneous", None))
    return out
