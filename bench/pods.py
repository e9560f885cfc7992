"""Benchmark of the workload path: `python bench/pods.py` prints each figure with its target.

Figures, on the whole embedded stack (simulated nodes and kubelet, scheduler, ReplicaSet
and Deployment controllers) with an in-memory store:
- a Deployment of 1,000 replicas, from apply to every pod Running and Ready as a watch
  sees them (target <= 10 s), and until `kubectl rollout status` would say done;
- pod startup latency, create -> Running as seen through a watch, with pods created at
  20/s (target p99 <= 1 s; the Kubernetes SLO is 5 s)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controllers.client import Client  # noqa: E402
from controllers.cluster import EmbeddedCluster  # noqa: E402
from controllers.manager import DEFAULT_CONTROLLERS, ClusterConfig  # noqa: E402

STACK = ["nodes", "kubelet", "scheduler", "replicaset", "deployment"]
Obj = dict[str, Any]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def report(name: str, value: float, unit: str, target: str, ok: bool) -> None:
    print(f"{name:<52} {value:>10.2f} {unit:<6} target {target:<10} {'PASS' if ok else 'MISS'}", flush=True)


def missing_modules() -> list[str]:
    modules = [DEFAULT_CONTROLLERS[n].partition(":")[0] for n in STACK]
    return [m.replace(".", "/") + ".py" for m in modules if importlib.util.find_spec(m) is None]


def start_cluster(nodes: int) -> EmbeddedCluster:
    config = ClusterConfig.default(nodes, cpu="64", memory="256Gi", pods=1000)
    return EmbeddedCluster(None, api_port=0, tls=False, config=config, controllers=STACK).start()


def running_and_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready


class PodWatch:
    """Follows the pods of one label from a listing; records when the watch first showed
    each Running (and Ready, with `need_ready`)."""

    def __init__(self, client: Client, selector: str, need_ready: bool) -> None:
        listing = client.list("v1", "Pod", "default", label_selector=selector)
        self.need_ready = need_ready
        self.done_at: dict[str, float] = {}
        self.changed = threading.Condition()
        self._watch = client.watch("v1", "Pod", "default", listing["metadata"]["resourceVersion"], selector)
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        for ev in self._watch:
            now = time.monotonic()
            name = ev.object["metadata"]["name"]
            if ev.type == "DELETED" or name in self.done_at:
                continue
            phase_ok = (ev.object.get("status") or {}).get("phase") == "Running"
            if running_and_ready(ev.object) if self.need_ready else phase_ok:
                with self.changed:
                    self.done_at[name] = now
                    self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.done_at) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def stop(self) -> None:
        self._watch.stop()
        self._thread.join(timeout=5)


def explain_stuck(client: Client, selector: str) -> None:
    """Say which pods never got there and where they stand, for a missed target."""
    pods = client.list("v1", "Pod", "default", label_selector=selector)["items"]
    stuck = [p for p in pods if not running_and_ready(p)]
    print(f"  {len(stuck)} of {len(pods)} pods not Running+Ready, e.g.:", file=sys.stderr)
    for pod in stuck[:5]:
        states = [next(iter(c.get("state") or {"none": {}})) for c in pod["status"].get("containerStatuses") or []]
        print(
            f"    {pod['metadata']['name']}: phase={pod['status'].get('phase')} "
            f"node={pod['spec'].get('nodeName', '')} containers={states}",
            file=sys.stderr,
        )


def deployment(name: str, replicas: int) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.27",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ]
                },
            },
        },
    }


def bench_deployment(nodes: int, replicas: int) -> None:
    c = start_cluster(nodes)
    try:
        watch = PodWatch(c.client, "app=big", need_ready=True)
        start = time.monotonic()
        c.client.apply(deployment("big", replicas), field_manager="bench")
        finished = watch.wait_for(replicas, timeout=120)
        elapsed = (max(watch.done_at.values()) if finished else time.monotonic()) - start
        watch.stop()
        report(
            f"Deployment of {replicas} on {nodes} nodes: all Running+Ready",
            elapsed,
            "s",
            "<= 10",
            finished and elapsed <= 10,
        )
        if not finished:
            explain_stuck(c.client, "app=big")
        rolled_out = False
        while not rolled_out and time.monotonic() - start < 120:
            status = c.client.get("apps/v1", "Deployment", "big", "default").get("status") or {}
            rolled_out = status.get("availableReplicas") == replicas and status.get("updatedReplicas") == replicas
            time.sleep(0.02)
        report("  ... and the Deployment status says rolled out", time.monotonic() - start, "s", "", rolled_out)
    finally:
        c.stop()


def bare_pod(i: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"lat-{i}", "namespace": "default", "labels": {"bench": "latency"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
    }


def bench_startup_latency(nodes: int, rate: float, seconds: float) -> None:
    c = start_cluster(nodes)
    try:
        watch = PodWatch(c.client, "bench=latency", need_ready=False)
        created: dict[str, float] = {}
        count = int(rate * seconds)
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            created[f"lat-{i}"] = time.monotonic()
            c.client.create(bare_pod(i))
        finished = watch.wait_for(count, timeout=60)
        watch.stop()
        latencies = [watch.done_at[n] - t for n, t in created.items() if n in watch.done_at]
        if not finished or not latencies:
            report(f"pod startup at {rate:g}/s: pods that never ran", count - len(latencies), "pods", "0", False)
            return
        report(f"pod startup create->Running at {rate:g}/s, p50", pct(latencies, 0.5), "s", "", True)
        p99 = pct(latencies, 0.99)
        report(f"pod startup create->Running at {rate:g}/s, p99", p99, "s", "<= 1 (SLO 5)", p99 <= 1.0)
    finally:
        c.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5, help="simulated nodes (3-10 suggested)")
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20.0, help="pod creations per second for the latency figure")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long to create pods at that rate")
    args = ap.parse_args()
    missing = missing_modules()
    if missing:
        print(f"cannot run: the stack is incomplete, missing {', '.join(missing)}", file=sys.stderr)
        sys.exit(2)
    bench_deployment(args.nodes, args.replicas)
    bench_startup_latency(args.nodes, args.rate, args.seconds)


if __name__ == "__main__":
    main()
