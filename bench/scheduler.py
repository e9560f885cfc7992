"""Benchmark of the scheduler: `python bench/scheduler.py` prints each figure with its target.

An in-process EmbeddedCluster runs only the scheduler; nodes are plain Node objects and
10,000 pending pods are created before it starts. Throughput is counted from the first
binding to the last, as kube-scheduler's scheduler_perf does. Scenarios: 1,000 nodes
(target >= 1,000 pods/s) and 5,000 nodes (kube-scheduler's CI floor there is 680 pods/s).
`--profile` prints where the scheduling thread spends its time."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controllers.cluster import EmbeddedCluster  # noqa: E402
from controllers.manager import ClusterConfig  # noqa: E402
from controllers.scheduler import Scheduler, binder_for  # noqa: E402

ZONES = ("zone-a", "zone-b", "zone-c")


def node(i: int) -> dict[str, Any]:
    name = f"node-{i}"
    resources = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": ZONES[i % len(ZONES)]},
        },
        "status": {"capacity": resources, "allocatable": resources},
    }


def pod(i: int) -> dict[str, Any]:
    """scheduler_perf's default pod: one pause container requesting 100m cpu and 500Mi."""
    resources = {"cpu": "100m", "memory": "500Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{i}", "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "containers": [
                {"name": "pause", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": resources}}
            ]
        },
    }


class ProfiledScheduler(Scheduler):
    """The scheduler with its scheduling thread under cProfile."""

    profile = cProfile.Profile()

    def _run(self) -> None:
        with self.profile:
            super()._run()


def scenario(num_nodes: int, num_pods: int, scoring: str, profile: bool) -> float:
    cluster = EmbeddedCluster(None, tls=False, config=ClusterConfig(scheduler_scoring=scoring), controllers=[])
    kind = ProfiledScheduler if profile else Scheduler
    assert cluster.manager is not None
    cluster.manager.add("scheduler", lambda ctx: kind(ctx, binder_for(ctx.client)))
    client = cluster.client
    for i in range(num_nodes):
        client.create(node(i))
    for i in range(num_pods):
        client.create(pod(i))
    cluster.start()
    try:
        scheduler = cluster.manager.controllers["scheduler"]
        assert isinstance(scheduler, Scheduler)
        stats = scheduler.stats
        deadline = time.monotonic() + 600
        while stats.bound < num_pods and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats.first_bound_at is not None and stats.last_bound_at is not None
        elapsed = stats.last_bound_at - stats.first_bound_at
        rate = (stats.bound - 1) / elapsed if elapsed > 0 else float("inf")
        placed = Counter(p["spec"].get("nodeName") for p in client.list("v1", "Pod", "default")["items"])
        unbound = placed.pop(None, 0)
        print(
            f"  {num_nodes} nodes, {num_pods} pods ({scoring}): {stats.bound} bound in {elapsed:.2f}s, "
            f"{stats.attempts} attempts ({stats.unschedulable} unschedulable), {stats.bind_errors} bind errors, "
            f"{unbound} left pending; "
            f"pods per node {min(placed.values(), default=0)}-{max(placed.values(), default=0)}"
        )
    finally:
        cluster.stop()
    if profile:
        pstats.Stats(ProfiledScheduler.profile).sort_stats("tottime").print_stats(25)
        ProfiledScheduler.profile = cProfile.Profile()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--scoring", default="LeastAllocated", choices=["LeastAllocated", "MostAllocated"])
    parser.add_argument("--profile", action="store_true", help="profile the scheduling thread")
    args = parser.parse_args()
    targets = {1000: ("target", 1000.0), 5000: ("kube-scheduler CI floor", 680.0)}
    for n in args.nodes:
        rate = scenario(n, args.pods, args.scoring, args.profile)
        label, goal = targets.get(n, ("target", 0.0))
        verdict = "ok" if rate >= goal else "BELOW"
        print(
            f"scheduling throughput, {n} nodes / {args.pods} pods: {rate:,.0f} pods/s "
            f"({label} >= {goal:,.0f}: {verdict})"
        )


if __name__ == "__main__":
    main()
