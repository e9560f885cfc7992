"""Benchmark of push webhooks: `python bench/push.py [--pushes 50] [--rate 200 --seconds 5]`
prints each figure with its target.

The embedded cluster (every controller) and the engine run in this process, with POST
/api/webhook served by the production WSGI server on loopback. One app of 20 objects (a
Deployment, a Service, a ServiceAccount, a Role and RoleBinding, a NetworkPolicy, 12
ConfigMaps and 2 Secrets) deploys from a local bare repository. Figures:
1. push-to-applied latency: a commit that changes all 20 objects is pushed, then GitLab's
   Push Hook is posted; the clock runs from the request until the informers have seen every
   object at the new revision. p50 and p99 over N pushes (target p50 <= 0.5 s; Argo CD
   polls every 3 minutes without a webhook, Flux on its interval);
2. webhook response time under load: a separate process posts signed push events at R
   requests/s over keep-alive connections; p50/p99 as the client sees them (target p99 <=
   50 ms), with how many refreshes the flood coalesced into."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402

from controllers.client import LocalClient  # noqa: E402
from controllers.cluster import EmbeddedCluster  # noqa: E402
from controllers.manager import ClusterConfig  # noqa: E402
from controllers.wsgi import WSGIServer  # noqa: E402
from gitops import apps  # noqa: E402
from gitops.controller import EngineSettings  # noqa: E402
from gitops.engine import Engine  # noqa: E402
from gitops.push import push_blueprint  # noqa: E402

SECRET = "bench-webhook-secret"
APP = "pushed"
REV = "bench.gitops.dev/rev"
_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
KINDS = [
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
]


def report(name: str, value: float, unit: str, target: str, ok: bool | None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    print(f"{name:<52} {value:>10.3f} {unit:<8} target {target:<10} {verdict}", flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **_GIT_ENV})
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def manifests(rev: int) -> dict[str, str]:
    """20 objects, each annotated with the revision number so its arrival can be seen."""
    meta = f"annotations: {{{REV}: '{rev}'}}"
    files = {
        "deployment.yaml": f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, {meta}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - {{name: web, image: nginx:1.27, resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}
""",
        "service.yaml": f"""apiVersion: v1
kind: Service
metadata: {{name: web, {meta}}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
""",
        "serviceaccount.yaml": f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: web, {meta}}}\n",
        "role.yaml": f"""apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, {meta}}}
rules: [{{apiGroups: [''], resources: [configmaps], verbs: [get]}}]
""",
        "rolebinding.yaml": f"""apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader, {meta}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
subjects: [{{kind: ServiceAccount, name: web}}]
""",
        "netpol.yaml": f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web, {meta}}}
spec: {{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Ingress]}}
""",
    }
    for i in range(12):
        files[f"cm-{i}.yaml"] = (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, {meta}}}\ndata: {{value: '{rev}'}}\n"
        )
    for i in range(2):
        files[f"secret-{i}.yaml"] = (
            f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i}, {meta}}}\nstringData: {{value: '{rev}'}}\n"
        )
    return files


class Repo:
    """A bare repository and a work tree that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare, self.work = root / "app.git", root / "work"
        git(root, "init", "-q", "--bare", "-b", "main", str(self.bare))
        git(root, "init", "-q", "-b", "main", str(self.work))
        git(self.work, "remote", "add", "origin", str(self.bare))
        self.head = ""

    def commit(self, rev: int) -> tuple[str, str]:
        """(before, after) of a push that changes every object."""
        for name, text in manifests(rev).items():
            (self.work / "app").mkdir(exist_ok=True)
            (self.work / "app" / name).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", f"rev {rev}")
        git(self.work, "push", "-q", "origin", "HEAD:refs/heads/main")
        before, self.head = self.head, git(self.work, "rev-parse", "HEAD")
        return before or "0" * 40, self.head


def gitlab_push(repo_url: str, before: str, after: str) -> bytes:
    """GitLab's Push Hook (as documented) for a push changing the app's files."""
    files = [f"app/{n}" for n in manifests(0)]
    return json.dumps(
        {
            "object_kind": "push",
            "event_name": "push",
            "before": before,
            "after": after,
            "ref": "refs/heads/main",
            "checkout_sha": after,
            "project": {"git_http_url": repo_url, "default_branch": "main"},
            "commits": [{"id": after, "added": [], "modified": files, "removed": []}],
            "total_commits_count": 1,
        }
    ).encode()


class Arrivals:
    """Counts the app's objects the informers have seen at a given revision."""

    def __init__(self, engine: Engine) -> None:
        self.want = ""
        self.seen: set[tuple[str, str]] = set()
        self.done = threading.Event()
        self.lock = threading.Lock()
        for api_version, kind in KINDS:
            engine.informers.informer(api_version, kind, "").add_handler(self._on)
        engine.informers.start()

    def expect(self, rev: int) -> None:
        with self.lock:
            self.want, self.seen = str(rev), set()
            self.done.clear()

    def _on(self, _etype: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") != "bench" or (meta.get("annotations") or {}).get(REV) != self.want:
            return
        with self.lock:
            self.seen.add((obj["kind"], meta["name"]))
            if len(self.seen) >= 20:
                self.done.set()


def post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> int:
    conn.request("POST", path, body, {"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def load(url: str, rate: float, seconds: float, repo_url: str, after: str) -> None:
    """The load generator (its own process): paced requests over keep-alive connections;
    prints the latencies as JSON."""
    parts = urlsplit(url)
    total = int(rate * seconds)
    body = gitlab_push(repo_url, after, after)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    threads = 16

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        for i in range(k, total, threads):
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t0 = time.perf_counter()
            headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET, "Idempotency-Key": f"load-{i}"}
            status = post(conn, parts.path, body, headers)
            with lock:
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps({"latencies": latencies, "statuses": statuses, "elapsed": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--load", nargs=3, metavar=("URL", "REPO_URL", "SHA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load(args.load[0], args.rate, args.seconds, args.load[1], args.load[2])
        return

    tmp = Path(tempfile.mkdtemp(prefix="gitops-bench-push-"))
    cluster = EmbeddedCluster(None, api_port=0, config=ClusterConfig.default(3)).start()
    client = LocalClient(cluster.api)
    informers = cluster.manager.ctx.informers if cluster.manager else None
    engine = Engine(client, tmp / "engine", EngineSettings(poll_seconds=3600), informers=informers).start()
    app = Flask(__name__)
    app.register_blueprint(push_blueprint(engine, SECRET))
    server = WSGIServer(app, threads=64).start()
    url = server.url + "/api/webhook"
    repo = Repo(tmp)
    try:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        _, head = repo.commit(0)
        arrivals = Arrivals(engine)
        arrivals.expect(0)
        client.create(
            {
                "apiVersion": apps.API_VERSION,
                "kind": "Application",
                "metadata": {"name": APP, "namespace": "default"},
                "spec": {
                    "source": {"repoURL": str(repo.bare), "path": "app", "targetRevision": "main"},
                    "destination": {"server": apps.IN_CLUSTER, "namespace": "bench"},
                    "syncPolicy": {"automated": {"prune": True}},
                },
            }
        )
        if not arrivals.done.wait(120):
            raise SystemExit("the app never synced its first revision")
        wait_idle(client)

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        path = urlsplit(url).path
        latencies: list[float] = []
        for rev in range(1, args.pushes + 1):
            before, after = repo.commit(rev)
            arrivals.expect(rev)
            t0 = time.perf_counter()
            status = post(conn, path, gitlab_push(str(repo.bare), before, after), {
                "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET,
            })  # fmt: skip
            if status != 202:
                raise SystemExit(f"webhook answered {status}")
            if not arrivals.done.wait(60):
                raise SystemExit(f"push {rev}: only {len(arrivals.seen)} of 20 objects applied in 60 s")
            latencies.append(time.perf_counter() - t0)
            wait_idle(client)
        print(f"push-to-applied, 20-object app, {len(latencies)} pushes:")
        report("  p50", pct(latencies, 0.5), "s", "<= 0.5", pct(latencies, 0.5) <= 0.5)
        report("  p99", pct(latencies, 0.99), "s", "-", None)
        report("  max", max(latencies), "s", "-", None)

        key = f"{apps.API_VERSION}|default/{APP}"
        refreshes = engine.push.refreshes[key]
        proc = subprocess.run(
            [sys.executable, __file__, "--rate", str(args.rate), "--seconds", str(args.seconds),
             "--load", url, str(repo.bare), repo.head],
            capture_output=True, text=True, timeout=args.seconds * 10 + 60, check=True,
        )  # fmt: skip
        result = json.loads(proc.stdout)
        lat = result["latencies"]
        print(f"webhook responses at {args.rate:.0f} req/s for {args.seconds:.0f} s ({len(lat)} requests, "
              f"statuses {result['statuses']}, achieved {len(lat) / result['elapsed']:.0f} req/s):")  # fmt: skip
        report("  p50", pct(lat, 0.5) * 1000, "ms", "-", None)
        report("  p99", pct(lat, 0.99) * 1000, "ms", "<= 50", pct(lat, 0.99) <= 0.05)
        time.sleep(1.5)
        report("  refreshes the flood made", engine.push.refreshes[key] - refreshes, "", "a few", None)
    finally:
        server.stop()
        engine.stop()
        cluster.stop()


def wait_idle(client: LocalClient, timeout: float = 60) -> None:
    """Until the app's sync operation has finished (a new push then starts a new one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.get(apps.API_VERSION, "Application", APP, "default").get("status") or {}
        if (st.get("operationState") or {}).get("phase") != "Running" and (st.get("sync") or {}).get(
            "status"
        ) == "Synced":
            return
        time.sleep(0.02)
    raise SystemExit("the app's sync did not finish")


if __name__ == "__main__":
    main()
