"""The `gitops` command line."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from controllers.client import Client, LocalClient
from controllers.cluster import EmbeddedCluster
from controllers.errors import APIError
from controllers.manager import ClusterConfig
from controllers.wsgi import WSGIServer
from gitops import clusters
from gitops.appcli import app as app_group
from gitops.apps import API_VERSION
from gitops.controller import EngineSettings
from gitops.demo import demo_objects, ensure_demo_repo
from gitops.engine import Engine
from gitops.hookcli import hook as hook_group
from gitops.leader import LeaseConfig, default_identity
from gitops.notifier import AppNotifier, NotifySettings
from gitops.policycli import policy as policy_group
from gitops.policygate import SyncPolicyGate, apply_policies, load_policies
from gitops.push import cluster_secrets, push_blueprint
from gitops.server import close_app, create_app
from gitops.server.auth import Tokens
from gitops.yamlload import ManifestError, load_yaml
from policies.admission import ClusterPolicies, watch_policies
from policies.admission import install as install_policies
from policies.images import ImageVerifier
from webhooks.admission import admission_blueprint
from webhooks.git import PROVIDERS, WebhookSecrets
from webhooks.notify import GitHub, GitLab, Webhook

# Flags that shape the embedded cluster: given, they mean embedded mode.
EMBEDDED_ONLY = ("api_port", "nodes", "node_cpu", "node_memory", "node_pods", "cluster_file", "kubelet_rules")


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """A GitOps continuous-delivery engine with an embedded Kubernetes."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, _param, value: _load_config(ctx, value),
    help="A YAML file of `up` options (keys are the long flag names, e.g. `port: 8080`, "
    "`webhook-provider-secret: {gitlab: ...}`); flags on the command line win.",
)
@click.option(
    "--data-dir",
    default=".gitops",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where state.db, the kubeconfig and caches live; delete it for a full reset.",
)
@click.option(
    "--api-port",
    default=6443,
    show_default=True,
    type=int,
    help="Port of the embedded Kubernetes API (0 picks a free one).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--nodes", default=3, show_default=True, type=int, help="Number of simulated nodes.")
@click.option("--node-cpu", default="4", show_default=True, help="CPU capacity of each node.")
@click.option("--node-memory", default="8Gi", show_default=True, help="Memory capacity of each node.")
@click.option("--node-pods", default=110, show_default=True, type=int, help="Pod capacity of each node.")
@click.option(
    "--cluster-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML describing the nodes (name, cpu, memory, pods, zone, labels, taints) and settings; "
    "overrides the --node-* flags.",
)
@click.option(
    "--kubelet-rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML rules making the simulated kubelet fail image pulls, crash containers or time Job pods.",
)
@click.option(
    "--app",
    "app_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of Applications to create or update at start (repeatable).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also deploy the example apps (examples/apps) from a local git repo of examples/demo, "
    "with the example policies (examples/policies).",
)
@click.option(
    "--poll-interval",
    default=120.0,
    show_default=True,
    type=float,
    help="Seconds between git polls of each app (webhooks refresh at once).",
)
@click.option(
    "--webhook-secret",
    envvar="GITOPS_WEBHOOK_SECRET",
    default="",
    help="Shared secret of POST /api/webhook: GitLab's token, the HMAC key of GitHub, Gitea, Bitbucket "
    "and `gitops hook install` (default: $GITOPS_WEBHOOK_SECRET; unset accepts unsigned pushes).",
)
@click.option(
    "--policies",
    "policies_source",
    metavar="default|DIR",
    help="Load admission policies at start: `default` is the bundle in policies/bundle "
    "(see policies/bundle/README.md), or a directory of policy YAML.",
)
@click.option(
    "--signed-registry",
    "signed_registries",
    multiple=True,
    metavar="GLOB",
    help="With --policies default: images matching GLOB must be signed by --signing-key (repeatable).",
)
@click.option(
    "--signing-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The cosign public key (PEM) that --signed-registry images must be signed with.",
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A registry reached over plain HTTP when verifying image signatures (repeatable).",
)
@click.option(
    "--webhook-provider-secret",
    "provider_secrets",
    multiple=True,
    metavar="PROVIDER=SECRET",
    help="A webhook secret for one provider (gitlab, github, gitea, gogs, bitbucket, bitbucket-server, generic); "
    "overrides --webhook-secret for it (repeatable).",
)
@click.option(
    "--gitlab-url", default="https://gitlab.com", show_default=True, help="GitLab to report commit status to."
)
@click.option(
    "--gitlab-token",
    envvar="GITOPS_GITLAB_TOKEN",
    default="",
    help="GitLab token (api scope) for commit statuses and merge-request notes (default: $GITOPS_GITLAB_TOKEN).",
)
@click.option(
    "--github-api-url", default="https://api.github.com", show_default=True, help="GitHub API for commit statuses."
)
@click.option(
    "--github-token",
    envvar="GITOPS_GITHUB_TOKEN",
    default="",
    help="GitHub token for commit statuses (default: $GITOPS_GITHUB_TOKEN).",
)
@click.option(
    "--notify-webhook",
    "notify_webhooks",
    multiple=True,
    metavar="URL",
    help="POST a JSON event to URL on sync running/succeeded/failed, health degraded and deployed (repeatable; "
    "signed with $GITOPS_NOTIFY_WEBHOOK_SECRET when set).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Real-cluster mode: run against the cluster of this kubeconfig (no embedded control plane).",
)
@click.option("--context", help="The kubeconfig context to use (default: its current context).")
@click.option(
    "--in-cluster/--embedded",
    "in_cluster",
    default=None,
    help="Run against the cluster of this pod's service account, or force the embedded cluster. "
    "Default: in-cluster when KUBERNETES_SERVICE_HOST is set and no embedded-cluster flag is given.",
)
@click.option(
    "--namespace",
    help="Namespace whose Applications are served (and where cluster Secrets live). Default: all "
    "namespaces embedded; the pod's or the kubeconfig context's namespace in a real cluster.",
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=None,
    help="Reconcile only while holding a Lease, so that replicas can run side by side. "
    "Default: on in a real cluster, off embedded.",
)
@click.option("--lease-name", default="gitops-engine", show_default=True, help="Name of the leader-election Lease.")
@click.option("--lease-namespace", help="Namespace of the Lease (default: --namespace).")
@click.option(
    "--lease-duration",
    default=15.0,
    show_default=True,
    type=float,
    help="Seconds a follower waits for an unrenewed Lease before taking over.",
)
@click.option(
    "--renew-deadline",
    default=10.0,
    show_default=True,
    type=float,
    help="Seconds the leader keeps trying to renew before it stops reconciling.",
)
@click.option("--retry-period", default=2.0, show_default=True, type=float, help="Seconds between Lease attempts.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=int,
    help="Port of the web server: dashboard, REST API, webhooks, /metrics (0 picks a free one).",
)
@click.option(
    "--tls-port",
    type=int,
    help="Also serve the web server over HTTPS on this port (0 picks one), with --tls-cert and --tls-key: "
    "API servers call admission webhooks over HTTPS only.",
)
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate (chain) for --tls-port."
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key for --tls-port.")
@click.option(
    "--admin-token",
    envvar="GITOPS_ADMIN_TOKEN",
    default="",
    help="Bearer token (and dashboard login) of the admin role (default: $GITOPS_ADMIN_TOKEN, else one "
    "generated into DATA_DIR/admin-token).",
)
@click.option(
    "--readonly-token",
    "readonly_tokens",
    multiple=True,
    envvar="GITOPS_READONLY_TOKENS",
    help="A bearer token of the read-only role (repeatable; env: space-separated).",
)
@click.option(
    "--anonymous-read", is_flag=True, help="Let anyone view the dashboard and API (actions still need a token)."
)
def up(
    data_dir: str,
    api_port: int,
    host: str,
    nodes: int,
    node_cpu: str,
    node_memory: str,
    node_pods: int,
    cluster_file: Path | None,
    kubelet_rules: Path | None,
    app_files: tuple[Path, ...],
    demo: bool,
    poll_interval: float,
    webhook_secret: str,
    policies_source: str | None,
    signed_registries: tuple[str, ...],
    signing_key: Path | None,
    kubeconfig: Path | None,
    context: str | None,
    in_cluster: bool | None,
    namespace: str | None,
    leader_elect: bool | None,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    port: int,
    tls_port: int | None,
    tls_cert: str | None,
    tls_key: str | None,
    admin_token: str,
    readonly_tokens: tuple[str, ...],
    anonymous_read: bool,
    insecure_registries: tuple[str, ...],
    provider_secrets: tuple[str, ...],
    gitlab_url: str,
    gitlab_token: str,
    github_api_url: str,
    github_token: str,
    notify_webhooks: tuple[str, ...],
) -> None:
    """Start the embedded control plane (or connect to a real cluster with --kubeconfig or
    --in-cluster) and the engine; run until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    lost = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop.set()

    # Before anything starts: a SIGTERM during start-up still shuts down cleanly.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        secrets_by_provider = dict(_key_value(item, "--webhook-provider-secret") for item in provider_secrets)
    except click.BadParameter as exc:
        raise click.UsageError(str(exc)) from None
    unknown = sorted(set(secrets_by_provider) - {p.name for p in PROVIDERS})
    if unknown:
        known = ", ".join(p.name for p in PROVIDERS)
        raise click.UsageError(f"--webhook-provider-secret: unknown provider(s) {unknown}; known: {known}")
    if (tls_port is not None) != bool(tls_cert and tls_key) or bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-port, --tls-cert and --tls-key go together")
    verifier = ImageVerifier(insecure_registries=frozenset(insecure_registries))
    try:
        policy_docs = (
            load_policies(policies_source, signed_registries, signing_key.read_text() if signing_key else "")
            if policies_source
            else []
        )
    except (ValueError, ManifestError) as exc:
        raise click.UsageError(str(exc)) from None
    # Each part registers its stop as it starts: a failure half-way (a port in use, an
    # unreachable cluster) stops what did start, so the process exits with the error
    # instead of hanging on the threads of the parts already running.
    with contextlib.ExitStack() as running:
        real = _real_cluster_mode(kubeconfig, in_cluster)
        cluster: EmbeddedCluster | None = None
        cluster_policies: ClusterPolicies
        client: Client
        if real:
            if policy_docs:
                raise click.UsageError("--policies loads policies into the embedded cluster only")
            try:
                remote, default_namespace = clusters.connect(kubeconfig, context)
            except clusters.ClusterError as exc:
                raise click.UsageError(str(exc)) from None
            namespace = namespace or default_namespace
            client, api_url = remote, str(remote.api_client.configuration.host)
            cluster_policies = watch_policies(
                remote, verifier=verifier
            )  # the kinds the cluster serves (e.g. Kyverno's)
            running.callback(cluster_policies.stop)
        else:
            if cluster_file is not None:
                config = ClusterConfig.from_file(cluster_file)
            else:
                config = ClusterConfig.default(nodes, node_cpu, node_memory, node_pods)
            if kubelet_rules is not None:
                config.kubelet_rules = kubelet_rules
            cluster = EmbeddedCluster(data_dir, api_port=api_port, host=host, config=config).start()
            running.callback(cluster.stop)
            informers = cluster.manager.ctx.informers if cluster.manager else None
            cluster_policies = install_policies(cluster, LocalClient(cluster.api), informers, verifier)
            running.callback(cluster_policies.stop)
            apply_policies(LocalClient(cluster.api), policy_docs)
            client, api_url = LocalClient(cluster.api), cluster.url
            if namespace:  # the namespace the engine serves exists in its own cluster
                namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                client.apply(namespace_obj, field_manager="gitops", force=True)
        election = None
        if leader_elect if leader_elect is not None else real:
            try:
                election = LeaseConfig(
                    lease_name,
                    lease_namespace or namespace or "default",
                    default_identity(),
                    lease_duration,
                    renew_deadline,
                    retry_period,
                )
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None

        def on_lost() -> None:
            lost.set()
            stop.set()

        settings = EngineSettings(poll_seconds=poll_interval, namespace=namespace or "")
        own = [cluster.url] if cluster is not None else []
        engine = Engine(client, Path(data_dir), settings, gate=SyncPolicyGate(cluster_policies), own_urls=own)
        running.callback(engine.stop)
        engine.start(election, on_lost)
        for path in app_files:
            try:
                for a in engine.apply_app_file(path):
                    click.echo(f"application {a['metadata']['namespace']}/{a['metadata']['name']} applied from {path}")
            except (APIError, ManifestError) as exc:
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                raise click.ClickException(f"--app {message}") from None
        if demo:
            for obj in demo_objects(ensure_demo_repo(Path(data_dir))):
                engine.client.apply(obj, field_manager="gitops-cli", force=True)
        click.echo(f"Kubernetes API:  {api_url}")
        if cluster is not None:
            embedded_kubeconfig = Path(data_dir).resolve() / "kubeconfig"
            click.echo(f"kubeconfig:      {embedded_kubeconfig}")
            click.echo(f"Try:             kubectl --kubeconfig {embedded_kubeconfig} get namespaces")
        click.echo(f"Applications:    {'namespace ' + namespace if namespace else 'all namespaces'}")
        token_file = Path(data_dir).resolve() / "admin-token"
        tokens = Tokens(admin_token or _admin_token(token_file), tuple(readonly_tokens))
        admission = admission_blueprint(
            cluster_policies.policyset,
            lookup=cluster_policies.lookup,
            namespace_labels=cluster_policies.namespace_labels,
        )
        hooks = cluster_secrets(engine.client, namespace or "default", webhook_secret)
        hooks = WebhookSecrets(hooks.shared, {**hooks.per_provider, **secrets_by_provider})
        web_app = create_app(engine, tokens, [push_blueprint(engine, hooks), admission], anonymous_read)
        running.callback(close_app, web_app)
        try:
            web = WSGIServer(web_app, host, port).start()
        except OSError as exc:
            raise click.ClickException(f"the web server cannot listen on {host}:{port} (--port): {exc}") from None
        running.callback(web.stop)
        if tls_port is not None and tls_cert and tls_key:
            try:
                secure = WSGIServer(web_app, host, tls_port, tls=(tls_cert, tls_key)).start()
            except (OSError, ValueError) as exc:
                raise click.ClickException(f"the HTTPS listener cannot start on {host}:{tls_port}: {exc}") from None
            running.callback(secure.stop)
            click.echo(f"HTTPS:           {secure.url}/ (admission webhooks: /api/admission/validate, /mutate)")
        notifier = _notifier(
            engine, f"{web.url}", gitlab_url, gitlab_token, github_api_url, github_token, notify_webhooks
        )
        if notifier is not None:
            running.callback(notifier.stop)
        click.echo(f"Dashboard:       {web.url}/")
        click.echo(f"Admin token:     {'from --admin-token' if admin_token else token_file} (log in with it)")
        if election is not None:
            click.echo(f"Leader election: lease {election.namespace}/{election.name} as {election.identity}")
        if demo:
            _show_demo(engine)
        click.echo("Press Ctrl-C to stop.")
        sys.stdout.flush()

        stop.wait()
        click.echo("Shutting down...")
    if lost.is_set():
        # As kube-controller-manager: a fresh start (the pod's restart) stands for election again.
        click.echo("Lost the leader-election lease: exiting.", err=True)
        sys.exit(1)


def _load_config(ctx: click.Context, path: Path | None) -> None:
    """`--config FILE`: its keys become the defaults of `up`'s options, so flags still win."""
    if path is None:
        return
    try:
        doc = load_yaml(path.read_text(), str(path)) or {}
    except (ManifestError, OSError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    if not isinstance(doc, dict):
        raise click.BadParameter(f"{path}: expected a mapping of option names to values", param_hint="--config")
    names = {p.name: p for p in ctx.command.params if isinstance(p, click.Option)}
    flags = {opt.lstrip("-"): p for p in names.values() for opt in p.opts}
    defaults: dict[str, Any] = {}
    for key, value in doc.items():
        param = flags.get(str(key)) or names.get(str(key).replace("-", "_"))
        if param is None or param.name == "config":
            raise click.BadParameter(f"{path}: unknown option {key!r}", param_hint="--config")
        if isinstance(value, dict):  # PROVIDER=SECRET style options as a mapping
            value = [f"{k}={v}" for k, v in value.items()]
        defaults[str(param.name)] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _key_value(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise click.BadParameter(f"{flag} expects KEY=VALUE, got {item.split('=')[0]!r}=…")
    return key.strip(), value


def _notifier(
    engine: Engine,
    dashboard_url: str,
    gitlab_url: str,
    gitlab_token: str,
    github_api_url: str,
    github_token: str,
    webhook_urls: tuple[str, ...],
) -> AppNotifier | None:
    """Commit statuses, merge-request notes and JSON webhooks, when any is configured."""
    if not (gitlab_token or github_token or webhook_urls):
        return None
    hook_secret = os.environ.get("GITOPS_NOTIFY_WEBHOOK_SECRET", "")
    settings = NotifySettings(
        dashboard_url=dashboard_url,
        gitlab=GitLab(gitlab_url, gitlab_token) if gitlab_token else None,
        github=GitHub(github_token, github_api_url) if github_token else None,
        webhooks=[Webhook(url, hook_secret) for url in webhook_urls],
    )
    notifier = AppNotifier(engine.informers, settings).start()
    engine.push.merge_request_handlers.append(
        notifier.preview_merge_request(engine.client, engine.repos, engine.renderer)
    )
    return notifier


def _admin_token(path: Path) -> str:
    """The admin token kept in the data directory (made on first start, owner-only)."""
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _real_cluster_mode(kubeconfig: Path | None, in_cluster: bool | None) -> bool:
    """--kubeconfig or --in-cluster; or, by default, in a pod unless an embedded-cluster
    flag is given."""
    ctx = click.get_current_context()
    given = [
        "--" + name.replace("_", "-")
        for name in EMBEDDED_ONLY
        if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
    ]
    if kubeconfig is not None or in_cluster:
        if kubeconfig is not None and in_cluster is not None:
            raise click.UsageError("--kubeconfig cannot be combined with --in-cluster or --embedded")
        if given:
            raise click.UsageError(f"{', '.join(given)} only apply to the embedded cluster, not to a real one")
        return True
    return in_cluster is None and not given and clusters.in_cluster_available()


def _show_demo(engine: Engine, timeout: float = 90.0) -> None:
    """Wait for the demo app to be Synced and Healthy, then show its pods."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = engine.client.get(API_VERSION, "Application", "demo", "default").get("status") or {}
        if (status.get("sync") or {}).get("status") == "Synced" and (status.get("health") or {}).get(
            "status"
        ) == "Healthy":
            break
        time.sleep(0.5)
    sync = (status.get("sync") or {}).get("status", "Unknown")
    health = (status.get("health") or {}).get("status", "Unknown")
    click.echo(f"Application demo: {sync} {health} at {str((status.get('sync') or {}).get('revision', ''))[:7]}")
    click.echo(f"{'POD':<28} {'READY':<6} {'STATUS':<10} {'NODE':<8} IP")
    for pod in engine.client.list("v1", "Pod", "demo")["items"]:
        st = pod.get("status") or {}
        ready = sum(1 for c in st.get("containerStatuses") or [] if c.get("ready"))
        total = len(pod["spec"].get("containers") or [])
        click.echo(
            f"{pod['metadata']['name']:<28} {f'{ready}/{total}':<6} {st.get('phase', ''):<10} "
            f"{pod['spec'].get('nodeName', ''):<8} {st.get('podIP', '')}"
        )


main.add_command(app_group)
main.add_command(hook_group)
main.add_command(policy_group)


if __name__ == "__main__":
    main()
