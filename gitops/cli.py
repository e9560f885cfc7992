"""The `gitops` command line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from controllers.client import LocalClient
from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig
from gitops.appcli import app as app_group
from gitops.controller import EngineSettings
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
    kubeconfig = Path(data_dir).resolve() / "kubeconfig"
    click.echo(f"Kubernetes API:  {cluster.url}")
    click.echo(f"kubeconfig:      {kubeconfig}")
    click.echo(f"Try:             kubectl --kubeconfig {kubeconfig} get namespaces")
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


main.add_command(app_group)


if __name__ == "__main__":
    main()
