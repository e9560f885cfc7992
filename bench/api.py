"""Benchmark of the embedded API: `python bench/api.py` prints each figure with its target.

Figures: in-process writes/s (memory and SQLite), HTTP writes/s with the official
kubernetes client from 8 threads, GET p50/p99 over HTTP, LIST of 10,000 pods over HTTP,
watch delivery latency p99 with 100 watchers, RSS with 100,000 objects."""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil
import urllib3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes import client as k8s  # noqa: E402
from kubernetes import config  # noqa: E402

from controllers.apiserver import APIServer, WriteOptions  # noqa: E402
from controllers.store import MemoryStore, SQLiteStore  # noqa: E402


def pod(name: str, ns: str = "default") -> dict:
    """A pod for the API to store: it names a scheduler nobody runs, so the 10,000 of the
    LIST figure stay Pending instead of keeping the scheduler and kubelets of `gitops up`
    busy while LIST and watches are timed (bench/scheduler.py and bench/pods.py measure those)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "bench", "shard": str(hash(name) % 10)}},
        "spec": {
            "schedulerName": "bench-unscheduled",
            "containers": [
                {"name": "main", "image": "nginx:1.25", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
            ],
        },
    }


def cm(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"key": "value"},
    }


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


class Server:
    """`gitops up` in its own process (SQLite store, TLS), as users run it: the client
    threads of this benchmark do not share its interpreter."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitops.cli", "up", "--data-dir", str(data_dir), "--api-port", "0", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        self.url = ""
        for line in self.proc.stdout:  # type: ignore[union-attr]
            m = re.search(r"Kubernetes API:\s+(\S+)", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            raise SystemExit("gitops up did not start")
        self.kubeconfig = data_dir / "kubeconfig"
        self.ca = str(data_dir / "pki" / "ca.crt")
        self.headers = {
            "Authorization": f"Bearer {(data_dir / 'token').read_text().strip()}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def pool(self, size: int = 4) -> urllib3.PoolManager:
        return urllib3.PoolManager(maxsize=size, ca_certs=self.ca)

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def parallel(threads: int, fn: Callable[[int], None]) -> float:
    workers = [threading.Thread(target=fn, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def bench_http(server: Server, writes: int, gets: int) -> None:
    """8 threads, each with its own kubernetes ApiClient made and used once before the
    clock starts: loading the kubeconfig and the client's first call (it imports and
    builds its validators then, ~0.3 s a thread) are not writes. Three ways of calling:
    typed models in and out (the client's default); plain dicts with the answer left
    unparsed (`_preload_content=False`, the status still checked); and urllib3 alone
    (the client's own transport). Client and server share the machine's cores, so the
    CPU each spends per create is printed with the rate."""
    per_thread = writes // 8
    cores = [k8s.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig))) for _ in range(8)]
    for core in cores:
        core.create_namespaced_config_map("default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(generate_name="warm-")))

    def typed(t: int) -> None:
        for i in range(per_thread):
            cm = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"h{t}-{i}"), data={"k": "v"})
            cores[t].create_namespaced_config_map("default", cm)

    def lean(t: int) -> None:
        for i in range(per_thread):
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"l{t}-{i}"}, "data": {"k": "v"}}
            answer = cores[t].create_namespaced_config_map("default", body, _preload_content=False)
            data = answer.data  # read to the end, so the connection goes back to the pool
            assert answer.status == 201, data

    http = server.pool(8)
    url = f"{server.url}/api/v1/namespaces/default/configmaps"

    def bare(t: int) -> None:
        for i in range(per_thread):
            body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"u{t}-{i}"}})
            answer = http.request("POST", url, body=body, headers=server.headers)
            assert answer.status == 201, answer.data

    for label, writer in (
        ("kubernetes client, 8 threads, typed models", typed),
        ("kubernetes client, 8 threads, dicts, raw answers", lean),
        ("urllib3 alone, 8 threads", bare),
    ):
        server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
        rate = per_thread * 8 / parallel(8, writer)
        report(f"HTTP creates/s ({label})", rate, "writes/s", ">= 1000", rate >= 1000)
        per_write = 1000 / (per_thread * 8)
        report("  CPU per create, server", (server.cpu_seconds() - server_cpu) * per_write, "ms", "", True)
        report("  CPU per create, client", (time.process_time() - client_cpu) * per_write, "ms", "", True)

    url = f"{server.url}/api/v1/namespaces/default/configmaps/h0-1"
    lat = []
    for _ in range(gets):
        t0 = time.perf_counter()
        r = http.request("GET", url, headers=server.headers)
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
    report("GET p50 over HTTP", pct(lat, 0.5), "ms", "", True)
    report("GET p99 over HTTP", pct(lat, 0.99), "ms", "<= 5 ms", pct(lat, 0.99) <= 5)


def bench_list(server: Server, n: int) -> None:
    http = server.pool(8)
    http.request(
        "POST",
        f"{server.url}/api/v1/namespaces",
        headers=server.headers,
        body=orjson.dumps({"metadata": {"name": "bench"}}),
    )

    def seed(t: int) -> None:
        for i in range(t, n, 8):
            r = http.request(
                "POST",
                f"{server.url}/api/v1/namespaces/bench/pods",
                headers=server.headers,
                body=orjson.dumps(pod(f"p{i}", "bench")),
            )
            assert r.status == 201, r.data

    parallel(8, seed)
    # The client parses into 10,000 pods, a million Python objects: the cyclic GC would
    # run hundreds of passes over them and the objects this process holds, and dominate a
    # figure about the API. It is off while timing, as `timeit` has it.
    gc.collect()
    gc.disable()
    received, parsed = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        r = http.request("GET", f"{server.url}/api/v1/namespaces/bench/pods", headers=server.headers)
        received.append(time.perf_counter() - t0)
        items = orjson.loads(r.data)["items"]
        parsed.append(time.perf_counter() - t0)
        assert len(items) == n
        del items
    gc.enable()
    best = statistics.median(parsed)
    report(f"LIST {n} pods over HTTP (median of 5, parsed)", best, "s", "<= 0.5 s", best <= 0.5)
    print(
        f"{'':<44} (min {min(parsed):.2f} s; the response alone: median {statistics.median(received):.2f} s, "
        f"min {min(received):.2f} s, {len(r.data) / 2**20:.1f} MiB)"
    )


def bench_watch(server: Server, watchers: int, events: int) -> None:
    latencies: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(watchers + 1)
    http = server.pool(watchers + 4)
    rv = orjson.loads(
        http.request("GET", f"{server.url}/api/v1/namespaces/default/configmaps?limit=1", headers=server.headers).data
    )["metadata"]["resourceVersion"]

    def watch() -> None:
        r = http.request(
            "GET",
            f"{server.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=120",
            headers=server.headers,
            preload_content=False,
        )
        ready.wait()
        seen = 0
        buf = b""
        for chunk in r.stream(65536):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                now = time.time()
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
    for i in range(events):
        obj = cm(f"watch-{i}")
        obj["metadata"]["annotations"] = {"sent": repr(time.time())}
        r = http.request(
            "POST", f"{server.url}/api/v1/namespaces/default/configmaps", headers=server.headers, body=orjson.dumps(obj)
        )
        assert r.status == 201
        time.sleep(0.05)
    for t in threads:
        t.join(60)
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
    with tempfile.TemporaryDirectory() as d:
        server = Server(Path(d) / "data")
        try:
            bench_http(server, 4000 // scale, 2000 // scale)
            bench_list(server, 10_000 // scale)
            bench_watch(server, 100, 50 // scale)
            report("RSS of gitops up after these", server.rss_mib(), "MiB", "", True)
        finally:
            server.stop()
    bench_inprocess_writes(20_000 // scale)
    bench_rss(100_000 // scale)


if __name__ == "__main__":
    main()
