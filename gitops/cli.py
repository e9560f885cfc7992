"""The `gitops` command line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from controllers.client import LocalClient
from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig
from gitops.appcli import app as app_group
from gitops.apps import API_VERSION
from gitops.controller import EngineSettings
from gitops.demo import demo_application, ensure_demo_repo
from gitops.engine import Engine


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """A GitOps continuous-delivery engine with an embedded Kubernetes."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
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
@click.option("--demo", is_flag=True, help="Also deploy the example app from a local git repo (examples/demo).")
@click.option(
    "--poll-interval",
    default=120.0,
    show_default=True,
    type=float,
    help="Seconds between git polls of each app (webhooks refresh at once).",
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
) -> None:
    """Start the embedded control plane and run until Ctrl-C or SIGTERM."""
    if cluster_file is not None:
        config = ClusterConfig.from_file(cluster_file)
    else:
        config = ClusterConfig.default(nodes, node_cpu, node_memory, node_pods)
    if kubelet_rules is not None:
        config.kubelet_rules = kubelet_rules
    cluster = EmbeddedCluster(data_dir, api_port=api_port, host=host, config=config).start()
    engine = Engine(LocalClient(cluster.api), Path(data_dir), EngineSettings(poll_seconds=poll_interval)).start()
    for path in app_files:
        for a in engine.apply_app_file(path):
            click.echo(f"application {a['metadata']['namespace']}/{a['metadata']['name']} applied from {path}")
    if demo:
        repo = ensure_demo_repo(Path(data_dir))
        engine.client.apply(demo_application(repo), field_manager="gitops-cli", force=True)
    kubeconfig = Path(data_dir).resolve() / "kubeconfig"
    click.echo(f"Kubernetes API:  {cluster.url}")
    click.echo(f"kubeconfig:      {kubeconfig}")
    click.echo(f"Try:             kubectl --kubeconfig {kubeconfig} get namespaces")
    if demo:
        _show_demo(engine)
    click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
    stop = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stop.wait()
    click.echo("Shutting down...")
    engine.stop()
    cluster.stop()


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


if __name__ == "__main__":
    main()
