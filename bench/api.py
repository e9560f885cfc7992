"""Benchmark of the embedded API: `python bench/api.py` prints each figure with its target.

Figures: in-process writes/s (memory and SQLite), HTTP writes/s with the official
kubernetes client from 8 threads, GET p50/p99 over HTTP, LIST of 10,000 pods over HTTP,
watch delivery latency p99 with 100 watchers, RSS with 100,000 objects."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import psutil
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client as k8s  # noqa: E402
from kubernetes import config  # noqa: E402

from controllers.apiserver import APIServer, WriteOptions  # noqa: E402
from controllers.cluster import EmbeddedCluster  # noqa: E402
from controllers.store import MemoryStore, SQLiteStore  # noqa: E402


def pod(name: str, ns: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "bench", "shard": str(hash(name) % 10)}},
        "spec": {
            "containers": [
                {"name": "main", "image": "nginx:1.25", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
            ]
        },
    }


def cm(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"key": "value"},
    }


def ca(cluster: EmbeddedCluster) -> str:
    assert cluster.certs is not None
    return str(cluster.certs.ca_cert)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def report(name: str, value: float, unit: str, target: str, ok: bool) -> None:
    print(f"{name:<44} {value:>12.2f} {unit:<10} target {target:<12} {'PASS' if ok else 'MISS'}")


def bench_inprocess_writes(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        for label, store in (("memory", MemoryStore()), ("sqlite", SQLiteStore(Path(d) / "state.db"))):
            server = APIServer(store)
            rt = server.resource("", "v1", "configmaps")
            opts = WriteOptions(field_manager="bench")
            start = time.perf_counter()
            for i in range(n):
                server.create(rt, "default", cm(f"c{i}"), opts)
            rate = n / (time.perf_counter() - start)
            report(f"in-process creates/s ({label})", rate, "writes/s", ">= 10000", rate >= 10_000)
            store.close()


def bench_http(cluster: EmbeddedCluster, kubeconfig: Path, writes: int, gets: int) -> None:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    api.configuration.connection_pool_maxsize = 16
    per_thread = writes // 8

    def writer(t: int) -> None:
        core = k8s.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        for i in range(per_thread):
            core.create_namespaced_config_map(
                "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"h{t}-{i}"), data={"k": "v"})
            )

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = per_thread * 8 / (time.perf_counter() - start)
    report("HTTP creates/s (kubernetes client, 8 threads)", rate, "writes/s", ">= 1000", rate >= 1000)

    http = urllib3.PoolManager(maxsize=4, ca_certs=ca(cluster))
    headers = {"Authorization": f"Bearer {cluster.token}", "Accept": "application/json"}
    url = f"{cluster.url}/api/v1/namespaces/default/configmaps/h0-1"
    lat = []
    for _ in range(gets):
        t0 = time.perf_counter()
        r = http.request("GET", url, headers=headers)
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
    report("GET p50 over HTTP", pct(lat, 0.5), "ms", "", True)
    report("GET p99 over HTTP", pct(lat, 0.99), "ms", "<= 5 ms", pct(lat, 0.99) <= 5)


def bench_list(cluster: EmbeddedCluster, n: int) -> None:
    rt = cluster.api.resource("", "v1", "pods")
    cluster.api.create(cluster.api.resource("", "v1", "namespaces"), "", {"metadata": {"name": "bench"}})
    opts = WriteOptions(field_manager="bench")
    for i in range(n):
        cluster.api.create(rt, "bench", pod(f"p{i}", "bench"), opts)
    http = urllib3.PoolManager(ca_certs=ca(cluster))
    headers = {"Authorization": f"Bearer {cluster.token}", "Accept": "application/json"}
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        r = http.request("GET", f"{cluster.url}/api/v1/namespaces/bench/pods", headers=headers)
        items = orjson.loads(r.data)["items"]
        times.append(time.perf_counter() - t0)
        assert len(items) == n
    best = statistics.median(times)
    report(f"LIST {n} pods over HTTP (median of 5, parsed)", best, "s", "<= 0.5 s", best <= 0.5)


def bench_watch(cluster: EmbeddedCluster, watchers: int, events: int) -> None:
    headers = {"Authorization": f"Bearer {cluster.token}", "Accept": "application/json"}
    rv = str(cluster.store.revision)
    latencies: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(watchers + 1)

    def watch() -> None:
        http = urllib3.PoolManager(ca_certs=ca(cluster))
        r = http.request(
            "GET",
            f"{cluster.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=60",
            headers=headers,
            preload_content=False,
        )
        ready.wait()
        seen = 0
        buf = b""
        for chunk in r.stream(65536):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                now = time.perf_counter()
                ev = orjson.loads(line)
                sent = float(ev["object"]["metadata"]["annotations"]["sent"])
                with lock:
                    latencies.append((now - sent) * 1000)
                seen += 1
                if seen == events:
                    r.release_conn()
                    return

    threads = [threading.Thread(target=watch, daemon=True) for _ in range(watchers)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.5)
    rt = cluster.api.resource("", "v1", "configmaps")
    for i in range(events):
        obj = cm(f"watch-{i}")
        obj["metadata"]["annotations"] = {"sent": repr(time.perf_counter())}
        cluster.api.create(rt, "default", obj)
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    report(f"watch delivery p50 ({watchers} watchers)", pct(latencies, 0.5), "ms", "", True)
    report(
        f"watch delivery p99 ({watchers} watchers)", pct(latencies, 0.99), "ms", "<= 50 ms", pct(latencies, 0.99) <= 50
    )
    print(f"{'':<44} ({len(latencies)} deliveries of {watchers * events})")


def bench_rss(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        before = psutil.Process().memory_info().rss
        store = SQLiteStore(Path(d) / "state.db")
        server = APIServer(store)
        rt = server.resource("", "v1", "pods")
        opts = WriteOptions(field_manager="bench")
        for i in range(n):
            server.create(rt, "default", pod(f"r{i}"), opts)
        rss = psutil.Process().memory_info().rss
        report(f"RSS growth with {n} pods (SQLite store)", (rss - before) / 2**20, "MiB", "", True)
        report("RSS of the process", rss / 2**20, "MiB", "", True)
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    bench_inprocess_writes(20_000 // scale)
    with tempfile.TemporaryDirectory() as d:
        cluster = EmbeddedCluster(None, api_port=0).start()
        kubeconfig = cluster.write_kubeconfig(Path(d) / "kubeconfig")
        try:
            bench_http(cluster, kubeconfig, 4000 // scale, 2000 // scale)
            bench_list(cluster, 10_000 // scale)
            bench_watch(cluster, 100 // (scale // 5 or 1), 50 // scale)
        finally:
            cluster.stop()
    bench_rss(100_000 // scale)


if __name__ == "__main__":
    main()
