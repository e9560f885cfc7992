"""Shared fixtures: an embedded cluster served over real HTTP, and the real kubectl."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig

# ../shared beside the repository (as in CI), or wherever GITOPS_SHARED points.
SHARED = Path(os.environ.get("GITOPS_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def eventually(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll until `cond()` is truthy and return it: generous, for a loaded machine. An
    exception from `cond` counts as "not yet" (the object may not exist yet) and is shown
    as the last value if time runs out."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = cond()
        except Exception as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")
        time.sleep(interval)


@contextmanager
def serving(config: ClusterConfig | None = None) -> Iterator[EmbeddedCluster]:
    """An in-memory embedded cluster with its HTTP API on a free loopback port, stopped on exit."""
    c = EmbeddedCluster(None, api_port=0, config=config).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster() -> Iterator[EmbeddedCluster]:
    """An in-memory embedded cluster with its HTTP API on a free loopback port."""
    with serving() as c:
        yield c


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """An in-memory cluster with 3 nodes and every controller running (fast timings)."""
    config = ClusterConfig.default(3)
    config.heartbeat_seconds = 0.5
    config.node_monitor_grace_seconds = 3
    config.pod_eviction_seconds = 2
    with serving(config) as c:
        yield c


@pytest.fixture
def kube_kubectl(kube: EmbeddedCluster, tmp_path: Path) -> Kubectl:
    """kubectl against the `kube` cluster."""
    return Kubectl(kube.write_kubeconfig(tmp_path / "kube-kubeconfig"), tmp_path)


@pytest.fixture
def kubeconfig(cluster: EmbeddedCluster, tmp_path: Path) -> Path:
    return cluster.write_kubeconfig(tmp_path / "kubeconfig")


class Kubectl:
    """Runs the real kubectl binary against a kubeconfig."""

    def __init__(self, kubeconfig: Path, cwd: Path) -> None:
        self.kubeconfig = kubeconfig
        self.cwd = cwd
        self.binary = shutil.which("kubectl") or "kubectl"

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.cwd,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def __call__(self, *args: str, **kw: object) -> str:
        return self.run(*args, **kw).stdout  # type: ignore[arg-type]


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: .ci/run installs it")
    return Kubectl(kubeconfig, tmp_path)
