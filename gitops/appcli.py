"""`gitops app ...`: manage Applications through the cluster API, as `argocd app` does.

Commands talk to the API server named by the kubeconfig (the embedded one by default).
Sync, refresh and rollback are requests written to the Application (`operation`, the
refresh annotation) that the engine carries out; `diff` renders and compares locally
with the engine's own code."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import yaml

from controllers import errors
from controllers.client import Client, RemoteClient
from gitops import actions, apps
from gitops.controller import RESOURCES_FINALIZER, RESOURCES_FINALIZER_BACKGROUND
from gitops.resources import Obj
from gitops.source.git import GitError, RepoCache
from gitops.source.render import Renderer, RenderError
from gitops.yamlload import ManifestError, load_manifests

TERMINAL_PHASES = ("Succeeded", "Failed", "Error")


class AppContext:
    def __init__(self, kubeconfig: str, context: str | None, data_dir: str) -> None:
        self.kubeconfig = kubeconfig
        self.kube_context = context
        self.data_dir = Path(data_dir)
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            if not Path(self.kubeconfig).exists():
                raise click.ClickException(
                    f"no kubeconfig at {self.kubeconfig}: start `gitops up` or pass --kubeconfig"
                )
            self._client = RemoteClient.from_kubeconfig(self.kubeconfig, self.kube_context)
        return self._client

    def find(self, name: str, namespace: str | None) -> Obj:
        """The app called `name` in any namespace (or the given one); ambiguous names
        need -n, as with kubectl."""
        found = []
        for api_version in apps.APP_API_VERSIONS:
            try:
                items = self.client.list(
                    api_version, apps.KIND, namespace or "", field_selector=f"metadata.name={name}"
                )["items"]
            except errors.NotFound:
                continue
            found.extend(items)
        if not found:
            where = f" in namespace {namespace}" if namespace else ""
            raise click.ClickException(f'application "{name}" not found{where}')
        if len(found) > 1:
            spaces = ", ".join(sorted(a["metadata"]["namespace"] for a in found))
            raise click.ClickException(f'application "{name}" exists in several namespaces ({spaces}): use -n')
        return found[0]

    def all_apps(self, namespace: str | None) -> list[Obj]:
        out = []
        for api_version in apps.APP_API_VERSIONS:
            try:
                out.extend(self.client.list(api_version, apps.KIND, namespace or "")["items"])
            except errors.NotFound:
                continue
        return sorted(out, key=lambda a: (a["metadata"].get("namespace", ""), a["metadata"]["name"]))


pass_ctx = click.make_pass_decorator(AppContext)


@click.group("app")
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=".gitops/kubeconfig",
    show_default=True,
    help="kubeconfig of the cluster where the Applications live.",
)
@click.option("--context", "kube_context", default=None, help="kubeconfig context to use.")
@click.option("--data-dir", default=".gitops", show_default=True, help="Where `app diff` caches git clones.")
@click.pass_context
def app(ctx: click.Context, kubeconfig: str, kube_context: str | None, data_dir: str) -> None:
    """Manage Applications."""
    ctx.obj = AppContext(kubeconfig, kube_context, data_dir)


def _output(obj: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(obj, indent=2, sort_keys=False))
    else:
        click.echo(yaml.safe_dump(obj, sort_keys=False).rstrip())


def _row(a: Obj, wide: bool) -> list[str]:
    st = a.get("status") or {}
    spec = a.get("spec") or {}
    src = spec.get("source") or (spec.get("sources") or [{}])[0]
    op = st.get("operationState") or {}
    row = [
        f"{a['metadata'].get('namespace', '')}/{a['metadata']['name']}",
        (st.get("sync") or {}).get("status", "Unknown"),
        (st.get("health") or {}).get("status", "Unknown"),
        str((st.get("sync") or {}).get("revision", ""))[:7],
        "Auto" if (spec.get("syncPolicy") or {}).get("automated") is not None else "Manual",
    ]
    if wide:
        row += [src.get("repoURL", ""), src.get("path", ""), src.get("targetRevision", "HEAD"), op.get("phase", "")]
    return row


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        click.echo("   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@app.command("list")
@click.option("-n", "--namespace", default=None)
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "yaml"]), default="table")
@pass_ctx
def list_apps(c: AppContext, namespace: str | None, output: str) -> None:
    """List Applications."""
    items = c.all_apps(namespace)
    if output in ("json", "yaml"):
        _output(items, output)
        return
    header = ["NAME", "SYNC", "HEALTH", "REVISION", "POLICY"]
    if output == "wide":
        header += ["REPO", "PATH", "TARGET", "LAST SYNC"]
    _table([_row(a, output == "wide") for a in items], header)


@app.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None)
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "yaml"]), default="table")
@pass_ctx
def get(c: AppContext, name: str, namespace: str | None, output: str) -> None:
    """Show one Application: status, conditions and resources."""
    a = c.find(name, namespace)
    if output in ("json", "yaml"):
        _output(a, output)
        return
    st = a.get("status") or {}
    row = _row(a, True)
    for label, value in zip(
        ["Name", "Sync Status", "Health Status", "Revision", "Sync Policy", "Repo", "Path", "Target", "Last Sync"],
        row,
        strict=True,
    ):
        click.echo(f"{label + ':':<16}{value}")
    op = st.get("operationState") or {}
    if op:
        click.echo(f"{'Operation:':<16}{op.get('phase')} {op.get('message', '')}")
    for cond in st.get("conditions") or []:
        click.echo(f"{'Condition:':<16}{cond['type']}: {cond.get('message', '')}")
    click.echo("")
    rows = [
        [
            r.get("group", ""),
            r["kind"],
            r.get("namespace", ""),
            r["name"],
            r.get("status", ""),
            (r.get("health") or {}).get("status", ""),
            (r.get("health") or {}).get("message", "") if output == "wide" else "",
        ]
        for r in st.get("resources") or []
    ]
    _table(rows, ["GROUP", "KIND", "NAMESPACE", "NAME", "STATUS", "HEALTH", "MESSAGE"])


@app.command()
@click.argument("name", required=False)
@click.option("-f", "--file", "file_", type=click.Path(exists=True, dir_okay=False), help="Application manifest(s).")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the Application.")
@click.option("--repo", help="Git repository URL.")
@click.option("--path", default=".", show_default=True, help="Path in the repository.")
@click.option("--revision", default="HEAD", show_default=True, help="Branch, tag or commit.")
@click.option("--dest-server", default=apps.IN_CLUSTER, show_default=True)
@click.option("--dest-namespace", default="default", show_default=True)
@click.option("--sync-policy", type=click.Choice(["manual", "automated"]), default="manual", show_default=True)
@click.option("--auto-prune", is_flag=True, help="Prune resources removed from git (automated).")
@click.option("--self-heal", is_flag=True, help="Revert drift made in the cluster (automated).")
@click.option("--sync-option", multiple=True, help="e.g. CreateNamespace=true (repeatable).")
@click.option("--upsert", is_flag=True, help="Update the Application if it exists.")
@pass_ctx
def create(
    c: AppContext,
    name: str | None,
    file_: str | None,
    namespace: str,
    repo: str | None,
    path: str,
    revision: str,
    dest_server: str,
    dest_namespace: str,
    sync_policy: str,
    auto_prune: bool,
    self_heal: bool,
    sync_option: tuple[str, ...],
    upsert: bool,
) -> None:
    """Create an Application from flags or from a manifest (Argo CD manifests accepted)."""
    if file_:
        try:
            objs = load_manifests(Path(file_).read_text(), file_)
        except ManifestError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        if not name or not repo:
            raise click.UsageError("give NAME and --repo, or -f FILE")
        policy: Obj = {}
        if sync_policy == "automated":
            policy["automated"] = {"prune": auto_prune, "selfHeal": self_heal}
        if sync_option:
            policy["syncOptions"] = list(sync_option)
        objs = [
            {
                "apiVersion": apps.API_VERSION,
                "kind": apps.KIND,
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": repo, "path": path, "targetRevision": revision},
                    "destination": {"server": dest_server, "namespace": dest_namespace},
                    "syncPolicy": policy,
                },
            }
        ]
    for obj in objs:
        if not apps.is_application(obj):
            raise click.ClickException(f"{obj.get('kind')} is not an Application")
        a = apps.convert_argo(obj) if obj["apiVersion"] == apps.ARGO_API_VERSION else obj
        a["metadata"].setdefault("namespace", namespace)
        try:
            apps.parse_spec(a)
        except apps.SpecError as exc:
            raise click.ClickException(f"application {a['metadata']['name']}: {exc}") from None
        try:
            if upsert:
                c.client.apply(a, field_manager="gitops-cli", force=True)
            else:
                c.client.create(a, field_manager="gitops-cli")
        except errors.AlreadyExists:
            raise click.ClickException(f"application {a['metadata']['name']} already exists (use --upsert)") from None
        click.echo(f"application '{a['metadata']['name']}' created")


@app.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None)
@click.option("--cascade/--no-cascade", default=True, help="Also delete the app's resources.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Return once the engine has deleted the resources and the app is gone.",
)
@click.option("--timeout", default=120, show_default=True, help="Seconds to wait with --wait.")
@pass_ctx
def delete(c: AppContext, name: str, namespace: str | None, cascade: bool, wait: bool, timeout: int) -> None:
    """Delete an Application (and, with --cascade, the resources it manages, which the
    engine deletes before the Application goes)."""
    a = c.find(name, namespace)
    meta = a["metadata"]
    if cascade and RESOURCES_FINALIZER not in (meta.get("finalizers") or []):
        # As `argocd app delete`: the engine deletes the resources in the app's destination
        # cluster (wherever that is), then removes the finalizer and the app goes.
        finalizers = [*(meta.get("finalizers") or []), RESOURCES_FINALIZER]
        c.client.patch(a["apiVersion"], apps.KIND, meta["name"], {"metadata": {"finalizers": finalizers}},
                       meta["namespace"], "merge")  # fmt: skip
    elif not cascade and meta.get("finalizers"):
        kept = [f for f in meta["finalizers"] if f not in (RESOURCES_FINALIZER, RESOURCES_FINALIZER_BACKGROUND)]
        c.client.patch(a["apiVersion"], apps.KIND, meta["name"], {"metadata": {"finalizers": kept}},
                       meta["namespace"], "merge")  # fmt: skip
    c.client.delete(a["apiVersion"], apps.KIND, meta["name"], meta["namespace"])
    deadline = time.monotonic() + timeout
    while wait:
        try:
            c.client.get(a["apiVersion"], apps.KIND, meta["name"], meta["namespace"])
        except errors.NotFound:
            break
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"application '{name}' is still being deleted after {timeout}s: is the engine running?"
            )
        time.sleep(0.5)
    click.echo(f"application '{name}' deleted")


@app.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None)
@click.option("--hard", is_flag=True, help="Also forget cached comparisons.")
@pass_ctx
def refresh(c: AppContext, name: str, namespace: str | None, hard: bool) -> None:
    """Fetch git and compare again now."""
    actions.request_refresh(c.client, c.find(name, namespace), hard)
    click.echo(f"refresh of '{name}' requested")


def _request_sync(c: AppContext, a: Obj, sync: Obj) -> None:
    try:
        actions.request_sync(c.client, a, sync)
    except actions.ActionError as exc:
        raise click.ClickException(str(exc)) from None


def _parse_resource(spec: str) -> Obj:
    parts = spec.split(":")
    if len(parts) != 3:
        raise click.BadParameter(f"{spec!r}: use GROUP:KIND:NAME (empty group for core, e.g. :Service:web)")
    group, kind, name = parts
    ns, _, nm = name.rpartition("/")
    return {"group": group, "kind": kind, "name": nm, **({"namespace": ns} if ns else {})}


@app.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None)
@click.option("--prune", is_flag=True, help="Delete resources that are no longer in git.")
@click.option("--dry-run", is_flag=True, help="Apply with dryRun=All: nothing changes.")
@click.option("--revision", default=None, help="Sync to this revision instead of the target.")
@click.option("--resource", "resources", multiple=True, help="GROUP:KIND:[NAMESPACE/]NAME to sync (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for the sync to finish and show its progress.")
@click.option("--timeout", default=300, show_default=True, type=int, help="Seconds to wait.")
@pass_ctx
def sync(
    c: AppContext,
    name: str,
    namespace: str | None,
    prune: bool,
    dry_run: bool,
    revision: str | None,
    resources: tuple[str, ...],
    wait: bool,
    timeout: int,
) -> None:
    """Sync an Application to git."""
    a = c.find(name, namespace)
    req = actions.sync_request(prune, dry_run, revision, [_parse_resource(r) for r in resources])
    started = (a.get("status") or {}).get("operationState", {}).get("startedAt")
    _request_sync(c, a, req)
    click.echo(f"sync of '{name}' requested")
    if wait:
        _wait(c, a, timeout, sync=True, health=not dry_run, after=started, progress=True)


@app.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None)
@click.option("--sync", "want_sync", is_flag=True, help="Wait for Synced.")
@click.option("--health", "want_health", is_flag=True, help="Wait for Healthy.")
@click.option("--timeout", default=300, show_default=True, type=int)
@pass_ctx
def wait(c: AppContext, name: str, namespace: str | None, want_sync: bool, want_health: bool, timeout: int) -> None:
    """Wait until an Application is synced and/or healthy (both when neither is given)."""
    a = c.find(name, namespace)
    if not want_sync and not want_health:
        want_sync = want_health = True
    _wait(c, a, timeout, sync=want_sync, health=want_health)


def _wait(
    c: AppContext, a: Obj, timeout: int, sync: bool, health: bool, after: str | None = None, progress: bool = False
) -> None:
    """Follow the app until the conditions hold; plain progress lines (one per change)."""
    meta = a["metadata"]
    deadline = time.monotonic() + timeout
    shown: set[tuple[str, str, str]] = set()
    tty = sys.stdout.isatty()
    while time.monotonic() < deadline:
        cur = c.client.get(a["apiVersion"], apps.KIND, meta["name"], meta["namespace"])
        st = cur.get("status") or {}
        op = st.get("operationState") or {}
        if progress:
            for r in (op.get("syncResult") or {}).get("resources") or []:
                line = (r.get("kind", ""), r.get("name", ""), r.get("status", "") + r.get("hookPhase", ""))
                if line not in shown:
                    shown.add(line)
                    phase = r.get("syncPhase", "")
                    click.echo(f"{phase:<9} {r['kind']}/{r['name']}: {r.get('status')} {r.get('message', '')}".rstrip())
        op_done = not cur.get("operation") and op.get("phase") in TERMINAL_PHASES and op.get("startedAt") != after
        if progress and op_done and op.get("phase") != "Succeeded":
            raise click.ClickException(f"sync {op.get('phase')}: {op.get('message', '')}")
        ok_sync = (st.get("sync") or {}).get("status") == "Synced" and (op_done or not progress)
        ok_health = (st.get("health") or {}).get("status") == "Healthy"
        if (not sync or ok_sync) and (not health or ok_health) and (op_done or not progress):
            click.echo(
                f"application '{meta['name']}': {(st.get('sync') or {}).get('status')} "
                f"{(st.get('health') or {}).get('status')} at {str((st.get('sync') or {}).get('revision'))[:7]}"
            )
            return
        if tty:
            click.echo(
                f"\r{(st.get('sync') or {}).get('status')} {(st.get('health') or {}).get('status')} "
                f"{op.get('message', '')}"[:120].ljust(120),
                nl=False,
            )
        time.sleep(0.5)
    raise click.ClickException(f"timed out after {timeout}s waiting for '{meta['name']}'")


@app.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None)
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@pass_ctx
def history(c: AppContext, name: str, namespace: str | None, output: str) -> None:
    """List the app's deployment history (ids for rollback)."""
    items = (c.find(name, namespace).get("status") or {}).get("history") or []
    if output != "table":
        _output(items, output)
        return
    _table(
        [[str(h["id"]), h.get("deployedAt", ""), str(h.get("revision", ""))] for h in items], ["ID", "DATE", "REVISION"]
    )


@app.command()
@click.argument("name")
@click.argument("history_id", type=int)
@click.option("-n", "--namespace", default=None)
@click.option("--force", is_flag=True, help="Roll back even though auto-sync is on (it will sync forward again).")
@click.option("--wait", is_flag=True)
@click.option("--timeout", default=300, show_default=True, type=int)
@pass_ctx
def rollback(
    c: AppContext, name: str, history_id: int, namespace: str | None, force: bool, wait: bool, timeout: int
) -> None:
    """Sync the app back to the revision of a history entry."""
    a = c.find(name, namespace)
    try:
        req = actions.rollback_request(a, history_id, force)
    except actions.ActionError as exc:
        raise click.ClickException(str(exc).replace("(use force)", "(use --force)")) from None
    started = (a.get("status") or {}).get("operationState", {}).get("startedAt")
    _request_sync(c, a, req)
    click.echo(f"rollback of '{name}' to {str(req['revision'])[:7]} requested")
    if wait:
        _wait(c, a, timeout, sync=False, health=True, after=started, progress=True)


@app.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None)
@pass_ctx
def diff(c: AppContext, name: str, namespace: str | None) -> None:
    """Show what a sync would change; exit 0 in sync, 1 with a diff, 2 on error."""
    try:
        a = c.find(name, namespace)
        cache_root = c.data_dir / "cli-cache" if c.data_dir.exists() else Path(tempfile.mkdtemp(prefix="gitops-"))
        repos = RepoCache(cache_root / "repos")
        renderer = Renderer(repos, cache_root / "manifests")
        changed = 0
        for d in actions.diff_app(c.client, repos, renderer, a):
            if d.diff is None:
                changed += 1
                click.echo(f"===== {d.key} (Extraneous: would be pruned) =====")
            elif d.status != "Synced":
                changed += 1
                click.echo(f"===== {d.key} ({d.status}) =====")
                click.echo(d.diff.diff)
    except (GitError, RenderError, apps.SpecError, errors.APIError, click.ClickException) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    sys.exit(1 if changed else 0)
