"""Benchmark of the policy gates: `python bench/policies.py` prints each figure with its target.

The policies are the top-level ClusterPolicies of the dev split's best-practices and
pod-security directories (../shared/peer-suites/kyverno-policies, or $GITOPS_SHARED),
evaluated on Pod and Deployment objects (half each), in-process, pinned to one core.

Figures:
- admissions/s and p50/p99 of one `PolicySet.admit` (every mutate, then every validate rule);
- the latency the admission plugin adds to an API create (dry run, memory store): p50/p99
  of creates with the plugin minus without it."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controllers import errors  # noqa: E402
from controllers.apiserver import APIServer  # noqa: E402
from controllers.client import LocalClient  # noqa: E402
from controllers.store import MemoryStore  # noqa: E402
from gitops.yamlload import load_manifests  # noqa: E402
from policies.admission import install, uninstall  # noqa: E402
from policies.engine import PolicySet  # noqa: E402
from policies.types import Request  # noqa: E402

SHARED = Path(os.environ.get("GITOPS_SHARED") or ROOT.parent / "shared")
SUITE = SHARED / "peer-suites" / "kyverno-policies"


def policy_docs() -> list[dict[str, Any]]:
    """`<dir>/<name>/<name>.yaml` under best-practices and pod-security: the policies
    themselves, not their tests or resources."""
    docs = []
    for top in ("best-practices", "pod-security"):
        for path in sorted((SUITE / top).rglob("*.yaml")):
            if path.stem == path.parent.name:
                docs += [d for d in load_manifests(path.read_text(), str(path)) if d.get("kind") == "ClusterPolicy"]
    return docs


def container(i: int) -> dict[str, Any]:
    return {
        "name": f"app-{i}",
        "image": f"eu.foo.io/shop/web:1.{i}",
        "ports": [{"containerPort": 8080}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def pod_spec() -> dict[str, Any]:
    return {
        "containers": [container(0), container(1)],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }


def pod(n: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"web-{n}",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "web", "app": "web"},
        },
        "spec": pod_spec(),
    }


def deployment(n: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "web", "app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"web-{n}", "namespace": "shop", "labels": labels},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec()},
        },
    }


def objects(n: int) -> list[dict[str, Any]]:
    return [pod(i) if i % 2 == 0 else deployment(i) for i in range(n)]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def timed(fn: Callable[[dict[str, Any]], Any], objs: list[dict[str, Any]]) -> tuple[float, list[float]]:
    lat = []
    start = time.perf_counter()
    for obj in objs:
        t = time.perf_counter()
        fn(obj)
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - start, lat


def bench_admit(pset: PolicySet, n: int) -> None:
    objs = objects(n)
    for obj in objs[:200]:  # warm caches (compiled patterns, JMESPath)
        pset.admit(Request("CREATE", obj))
    total, lat = timed(lambda obj: pset.admit(Request("CREATE", obj)), objs)
    outcomes = [pset.admit(Request("CREATE", o)) for o in objs[:2]]
    rules = sum(len(o.results) for o in outcomes) / 2
    print(f"PolicySet.admit, {len(pset)} policies, ~{rules:.0f} rule results per object, {n} objects (Pod/Deployment):")
    print(f"  admissions/s:     {n / total:,.0f}   (target >= 2,000)")
    print(f"  latency p50/p99:  {pct(lat, 0.5) * 1e3:.2f} ms / {pct(lat, 0.99) * 1e3:.2f} ms   (target p99 <= 5 ms)")


def bench_api(docs: list[dict[str, Any]], n: int) -> None:
    api = APIServer(MemoryStore())
    client = LocalClient(api)
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    objs = objects(n)

    def create(obj: dict[str, Any]) -> None:
        try:
            client.create(obj, dry_run=True)
        except errors.Forbidden:
            pass  # an Enforce rule said no: the full evaluation ran all the same

    timed(create, objs[:200])
    _, base = timed(create, objs)
    policies = install(api, client)
    for doc in docs:
        client.create(doc)
    try:
        timed(create, objs[:200])
        _, gated = timed(create, objs)
    finally:
        uninstall(api, policies)
    print(f"API create (dry run, in-process) without / with the admission plugin, {n} objects:")
    print(f"  p50: {pct(base, 0.5) * 1e3:.2f} ms / {pct(gated, 0.5) * 1e3:.2f} ms")
    print(f"  p99: {pct(base, 0.99) * 1e3:.2f} ms / {pct(gated, 0.99) * 1e3:.2f} ms")
    added = statistics.mean(gated) - statistics.mean(base)
    print(
        f"  added: mean {added * 1e3:.2f} ms, p99 {(pct(gated, 0.99) - pct(base, 0.99)) * 1e3:.2f} ms"
        "   (target p99 <= 5 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=4000, help="objects per measurement (default 4000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (400 objects)")
    args = parser.parse_args()
    n = 400 if args.quick else args.objects
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    docs = policy_docs()
    started = time.perf_counter()
    pset = PolicySet.from_objects(docs)
    print(f"{len(docs)} ClusterPolicies from {SUITE} compiled in {(time.perf_counter() - started) * 1e3:.0f} ms")
    bench_admit(pset, n)
    bench_api(docs, n)


if __name__ == "__main__":
    main()
