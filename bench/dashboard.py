"""Benchmark of the dashboard: `python bench/dashboard.py [--apps N]` prints each figure
with its target.

N Applications (default 1,000) with realistic statuses are created on the embedded
cluster, then the web server (informer-backed, the house's WSGI server on loopback)
answers the list page and the API list, plain and with filters, search and sorting.
Server time is the server's own time per request (Flask's view, template and JSON), taken
from the time to the last byte over loopback; target ≤ 1 s for the 1,000-app list page."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controllers.client import LocalClient  # noqa: E402
from controllers.cluster import EmbeddedCluster  # noqa: E402
from controllers.wsgi import WSGIServer  # noqa: E402
from gitops import apps  # noqa: E402
from gitops.engine import Engine, install_crds  # noqa: E402
from gitops.server import close_app, create_app  # noqa: E402
from gitops.server.auth import Tokens  # noqa: E402

TOKEN = "bench-admin-token"
SYNC = ("Synced", "Synced", "Synced", "OutOfSync", "Unknown")
HEALTH = ("Healthy", "Healthy", "Progressing", "Degraded", "Missing")


def make_apps(client: LocalClient, n: int) -> None:
    for i in range(min(n, 20)):
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"team-{i}"}})
    for i in range(n):
        ns = f"team-{i % 20}"
        name = f"app-{i:05d}"
        sha = f"{i:040x}"
        client.create(
            {
                "apiVersion": apps.API_VERSION,
                "kind": apps.KIND,
                "metadata": {"name": name, "namespace": ns, "labels": {"team": f"t{i % 7}", "tier": "web"}},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": f"https://git.example.com/org/repo-{i % 50}.git", "path": f"apps/{name}"},
                    "destination": {"server": apps.IN_CLUSTER, "namespace": ns},
                    "syncPolicy": {"automated": {"prune": True}} if i % 2 else {},
                },
            }
        )
        resources = [
            {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": ns, "name": f"{name}-{j}",
             "status": "Synced", "health": {"status": "Healthy"}}
            for j in range(20)
        ]  # fmt: skip
        status = {
            "sync": {"status": SYNC[i % 5], "revision": sha},
            "health": {"status": HEALTH[i % 5]},
            "resources": resources,
            "summary": {"commitMessage": f"change {i}\n\nbody", "images": ["nginx:1.25"]},
            "operationState": {
                "phase": "Succeeded",
                "message": "successfully synced",
                "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": f"2026-01-01T00:{i % 60:02d}:00Z",
                "syncResult": {"revision": sha},
            },
            "history": [{"id": 0, "revision": sha, "deployedAt": "2026-01-01T00:00:00Z"}],
        }
        client.patch(
            apps.API_VERSION,
            apps.KIND,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            ns,
            "json",
            subresource="status",
        )


def timed_get(url: str) -> tuple[float, int]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310 (our loopback URL)
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        body = resp.read()
    return time.perf_counter() - start, len(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    cluster = EmbeddedCluster(None, api_port=0).start()
    try:
        run(cluster, args.apps, args.runs)
    finally:
        cluster.stop()


def run(cluster: EmbeddedCluster, n: int, runs: int) -> None:
    client = LocalClient(cluster.api)
    install_crds(client)
    t0 = time.perf_counter()
    make_apps(client, n)
    print(f"created {n} Applications with statuses in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        # The engine is not started: the server only reads (no reconciles compete for the CPU).
        engine = Engine(client, Path(tmp))
        web_app = create_app(engine, Tokens(TOKEN))
        server = WSGIServer(web_app).start()
        svc = web_app.extensions["gitops"]
        deadline = time.monotonic() + 60
        while len(svc.state.all_apps()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        cases = {
            "list page, 50 per page": "/",
            "list page, 500 per page": "/?perPage=500",
            "list page, last page sorted by health desc": f"/?sort=health&order=desc&page={max(1, n // 50)}",
            "list page, filter sync+health+namespace+label": "/?sync=Synced&health=Healthy&namespace=team-3"
            "&label=team%3Dt3",
            "list page, filter repo + search": "/?repo=https%3A%2F%2Fgit.example.com%2Forg%2Frepo-7.git&search=app-00",
            "API list, 50 per page": "/api/v1/applications",
            "API list, all (perPage=500, 2 pages)": "/api/v1/applications?perPage=500&page=2",
            "app page (20 resources)": "/apps/team-3/app-00003",
        }
        print(f"{'figure':<52} {'p50':>9} {'p99':>9} {'max':>9} {'bytes':>9}   target")
        worst = 0.0
        for label, path in cases.items():
            timed_get(server.url + path)  # warm: templates compiled, rows memoized
            samples = []
            size = 0
            for _ in range(runs):
                seconds, size = timed_get(server.url + path)
                samples.append(seconds)
            samples.sort()
            p50 = statistics.median(samples)
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
            if path.startswith("/?") or path == "/":
                worst = max(worst, p99)
            print(
                f"{label:<52} {p50 * 1000:>7.1f}ms {p99 * 1000:>7.1f}ms {samples[-1] * 1000:>7.1f}ms {size:>9,}"
                f"   {'≤ 1 s' if path.startswith('/') and not path.startswith('/api') else ''}"
            )
        print(f"worst list-page p99 with {n} apps: {worst:.3f} s (target ≤ 1 s: {worst / 1.0:.2f}x of it)")
        server.stop()
        close_app(web_app)
        engine.stop()


if __name__ == "__main__":
    main()
