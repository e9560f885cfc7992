"""Benchmark of the GitOps engine: `python bench/reconcile.py [--apps N]` prints each
figure with its target.

One monorepo (a local git repository, fetched over file://) holds N apps (default 1,000),
one directory each (`apps/app-0042/`), of 20 small manifests: a Deployment of 1 replica
(so 1,000 pods), a Service, a ServiceAccount, a Role and RoleBinding, a NetworkPolicy,
12 ConfigMaps and 2 Secrets. Every app is automated (prune, self-heal) into its own
namespace (CreateNamespace=true), on the embedded cluster with every controller, and the
engine runs in this process. Figures:
1. initial sync: from creating the apps until every app reports Synced (target <= 60 s
   on a 2-core machine; Flux 2.9 needs 4m13s for 1,000 Kustomizations on 16 cores), and
   until every app is also Healthy (its pod Running and Ready);
2. a no-op pass: refresh every app (a git fetch and a fresh comparison) and wait until
   the queue drains (target <= 2 s), with the renders and status writes it caused
   (target 0 and 0);
3. one commit touching one app's path, then a refresh of every app as a push webhook
   does: time until that app is applied at the new revision, and how many apps were
   re-rendered (target 1);
4. RSS of the process: cluster, engine and caches (target <= 1 GiB)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controllers.cluster import EmbeddedCluster  # noqa: E402
from controllers.manager import ClusterConfig  # noqa: E402
from controllers.runtime import Result  # noqa: E402
from gitops import apps  # noqa: E402
from gitops.controller import EngineSettings  # noqa: E402
from gitops.engine import Engine  # noqa: E402

Obj = dict[str, Any]
APP_NAMESPACE = "gitops"
CONFIGMAPS, SECRETS = 12, 2
_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def report(name: str, value: float, unit: str, target: str, ok: bool | None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    print(f"{name:<52} {value:>10.2f} {unit:<8} target {target:<10} {verdict}", flush=True)


def cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


# --------------------------------------------------------------------------- the monorepo


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **_GIT_ENV}, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def app_name(i: int) -> str:
    return f"app-{i:04d}"


def manifests(app: str, version: str = "1") -> dict[str, str]:
    """The 20 files of one app."""
    files = {
        "deployment.yaml": f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  labels: {{app: {app}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {app}}}
  template:
    metadata:
      labels: {{app: {app}}}
    spec:
      serviceAccountName: {app}
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 8080
        envFrom:
        - configMapRef: {{name: {app}-config-0}}
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
""",
        "service.yaml": f"""apiVersion: v1
kind: Service
metadata:
  name: {app}
spec:
  selector: {{app: {app}}}
  ports:
  - name: http
    port: 80
    targetPort: 8080
""",
        "serviceaccount.yaml": f"""apiVersion: v1
kind: ServiceAccount
metadata:
  name: {app}
""",
        "role.yaml": f"""apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {app}-reader
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
""",
        "rolebinding.yaml": f"""apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {app}-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {app}-reader
subjects:
- kind: ServiceAccount
  name: {app}
""",
        "networkpolicy.yaml": f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {app}-ingress
spec:
  podSelector:
    matchLabels: {{app: {app}}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - port: 8080
""",
    }
    for n in range(CONFIGMAPS):
        files[f"config-{n}.yaml"] = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-config-{n}
data:
  LOG_LEVEL: info
  FEATURE_{n}: "on"
  VERSION: "{version}"
"""
    for n in range(SECRETS):
        files[f"secret-{n}.yaml"] = f"""apiVersion: v1
kind: Secret
metadata:
  name: {app}-secret-{n}
type: Opaque
stringData:
  password: "bench-{n}"
"""
    return files


def write_app(repo: Path, app: str, version: str = "1") -> None:
    folder = repo / "apps" / app
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in manifests(app, version).items():
        (folder / name).write_text(text)


def build_monorepo(root: Path, count: int) -> Path:
    """A repository with `count` apps on branch main."""
    repo = root / "monorepo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for i in range(count):
        write_app(repo, app_name(i))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{count} apps")
    return repo


# --------------------------------------------------------------------------- observing the engine


class Tracker:
    """What the engine wrote into each Application's status (told by the controller's
    listeners), and how many reconciles ran, to know when the queue has drained."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.deployed: dict[str, str] = {}  # app -> revision it is Synced at with its sync done
        self.synced: dict[str, float] = {}  # app -> since when it has been Synced
        self.healthy: dict[str, float] = {}  # app -> since when it has been Synced and Healthy
        self.writes = 0
        self.reconciles = 0
        self.in_flight = 0
        self.last_reconcile = 0.0  # when the last reconcile ended (monotonic)
        self.pending: set[str] = set()  # keys expected to be reconciled (see `expect`)

    def on_status(self, app: Obj) -> None:
        name, status = app["metadata"]["name"], app.get("status") or {}
        with self.cond:
            self.deployed[name] = deployed_revision(status)
            for since, holds in ((self.synced, synced(status)), (self.healthy, healthy(status))):
                if not holds:
                    since.pop(name, None)
                elif name not in since:
                    since[name] = time.monotonic()
            self.writes += 1
            self.cond.notify_all()

    def counting(self, reconcile: Callable[[str], Result | None]) -> Callable[[str], Result | None]:
        def run(key: str) -> Result | None:
            with self.cond:
                self.in_flight += 1
            try:
                return reconcile(key)
            finally:
                with self.cond:
                    self.in_flight -= 1
                    self.reconciles += 1
                    self.last_reconcile = time.monotonic()
                    self.pending.discard(key)
                    self.cond.notify_all()

        return run

    def expect(self, keys: list[str]) -> None:
        """Keys that must each be reconciled (from now on) before a pass is over."""
        with self.cond:
            self.pending = set(keys)

    def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until `cond` (checked under the lock) holds; exits when it never does."""
        start = time.monotonic()
        with self.cond:
            if not self.cond.wait_for(cond, timeout):
                raise SystemExit(f"{what}: not reached in {timeout:.0f}s")
        return time.monotonic() - start


def synced(s: Obj) -> bool:
    return (s.get("sync") or {}).get("status") == "Synced"


def healthy(s: Obj) -> bool:
    return synced(s) and (s.get("health") or {}).get("status") == "Healthy"


def deployed_revision(s: Obj) -> str:
    """The revision an app is Synced at once its sync to it has succeeded, else ""."""
    op = s.get("operationState") or {}
    revision = str((s.get("sync") or {}).get("revision") or "")
    applied = op.get("phase") == "Succeeded" and (op.get("syncResult") or {}).get("revision") == revision
    return revision if synced(s) and applied else ""


def application(name: str, repo: Path) -> Obj:
    return {
        "apiVersion": apps.API_VERSION,
        "kind": apps.KIND,
        "metadata": {"name": name, "namespace": APP_NAMESPACE},
        "spec": {
            "project": "default",
            "source": {"repoURL": f"file://{repo}", "path": f"apps/{name}", "targetRevision": "main"},
            "destination": {"server": apps.IN_CLUSTER, "namespace": name},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"]},
        },
    }


# --------------------------------------------------------------------------- the run


class Profile:
    """`py-spy record --gil` of this process during one phase, into DIR/NAME.txt (raw
    folded stacks) when --profile DIR is given; nothing otherwise."""

    def __init__(self, directory: Path | None, name: str) -> None:
        self.out = directory / f"{name}.txt" if directory else None
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profile:
        if self.out is not None:
            spy = Path(sys.executable).with_name("py-spy")
            cmd = [
                str(spy),
                "record",
                "--gil",
                "--nonblocking",
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                str(self.out),
                "-p",
                str(os.getpid()),
            ]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached before the phase starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)


class Bench:
    def __init__(self, args: argparse.Namespace, repo: Path, cluster: EmbeddedCluster, engine: Engine) -> None:
        self.args, self.n, self.repo = args, args.apps, repo
        self.client = cluster.client
        self.engine, self.ctl = engine, engine.controller
        self.tracker = Tracker()
        self.ctl.listeners.append(self.tracker.on_status)
        self.ctl.controller.reconcile = self.tracker.counting(self.ctl.controller.reconcile)

    def profile(self, name: str) -> Profile:
        return Profile(self.args.profile, name)

    def initial_sync(self) -> None:
        tracker, n = self.tracker, self.n
        start, cpu = time.monotonic(), cpu_seconds()
        for i in range(n):
            self.client.create(application(app_name(i), self.repo))
        created = time.monotonic() - start
        tracker.wait(lambda: len(tracker.synced) >= n, self.args.timeout, "all apps Synced")
        to_synced = time.monotonic() - start
        report("1. initial sync: every app Synced", to_synced, "s", "<= 60", to_synced <= 60)
        tracker.wait(lambda: len(tracker.healthy) >= n, self.args.timeout, "all apps Healthy")
        report("   ... and every app Healthy", time.monotonic() - start, "s", "", None)
        report("   CPU time of the process meanwhile (user + system)", cpu_seconds() - cpu, "s", "", None)
        for what, since in (("Synced", tracker.synced), ("Healthy", tracker.healthy)):
            times = sorted(t - start for t in since.values())
            print(f"   (apps {what} after: p50 {pct(times, 0.5):.1f} s, p90 {pct(times, 0.9):.1f} s)", flush=True)
        print(
            f"   ({tracker.reconciles} reconciles, {self.engine.renderer.renders} renders, "
            f"{self.engine.repos.fetches} git fetches, {tracker.writes} status writes; "
            f"creating the {n} Applications took {created:.1f} s)",
            flush=True,
        )

    def refresh_all(self) -> float:
        """Refresh every app as a push webhook does; returns when that began."""
        keys = self.ctl.app_keys()
        begin = time.monotonic()
        self.tracker.expect(keys)
        for key in keys:
            self.ctl.refresh(key)
        return begin

    def drained(self) -> bool:
        return not self.tracker.pending and self.tracker.in_flight == 0 and self.ctl.controller.queue.depth() == 0

    def no_op_pass(self) -> None:
        renders, writes, fetches = self.engine.renderer.renders, self.tracker.writes, self.engine.repos.fetches
        begin = self.refresh_all()
        self.tracker.wait(self.drained, self.args.timeout, "no-op pass")
        took = time.monotonic() - begin
        report("2. no-op pass over every app (refresh, queue drained)", took, "s", "<= 2", took <= 2)
        renders = self.engine.renderer.renders - renders
        writes = self.tracker.writes - writes
        report("   renders in the no-op pass", renders, "", "0", renders == 0)
        report("   status writes in the no-op pass", writes, "", "0", writes == 0)
        print(f"   ({self.engine.repos.fetches - fetches} git fetches)", flush=True)

    def one_commit(self) -> None:
        target = app_name(self.n // 2)
        write_app(self.repo, target, version="2")
        git(self.repo, "commit", "-q", "-am", f"{target}: version 2")
        sha = git(self.repo, "rev-parse", "HEAD")
        renders = self.engine.renderer.renders
        begin = self.refresh_all()
        self.tracker.wait(lambda: self.tracker.deployed.get(target) == sha, self.args.timeout, "app applied")
        report("3. one commit: its app applied at the new revision", time.monotonic() - begin, "s", "", None)
        self.tracker.wait(self.drained, self.args.timeout, "pass at the new commit")
        report("   ... and every app compared at it (queue drained)", time.monotonic() - begin, "s", "", None)
        rerendered = self.engine.renderer.renders - renders
        report("   apps re-rendered for that commit", rerendered, "", "1", rerendered == 1)

    def settle(self, quiet: float = 2.0, timeout: float = 120.0) -> None:
        """Wait until no reconcile has run for `quiet` seconds (late pod and Endpoints events)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.tracker.cond:
                last = self.tracker.last_reconcile
                idle = self.tracker.in_flight == 0 and self.ctl.controller.queue.depth() == 0
            if idle and time.monotonic() - last >= quiet:
                return
            time.sleep(0.2)
        print(f"   (the engine was still busy after {timeout:.0f} s of settling)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=1000, help="number of apps (default 1000)")
    parser.add_argument("--workers", type=int, default=EngineSettings.workers, help="app controller workers")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on a phase after this many seconds")
    parser.add_argument("--profile", type=Path, help="write a py-spy profile of each phase into this directory")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        root = Path(tmp)
        repo = build_monorepo(root, args.apps)
        print(f"{args.apps} apps x 20 objects ({args.apps} Deployments of 1 replica) from one repository", flush=True)
        config = ClusterConfig.default(max(3, -(-args.apps // 500)), cpu="64", memory="256Gi", pods=1000)
        cluster = EmbeddedCluster(None, api_port=0, tls=False, config=config).start()
        settings = EngineSettings(poll_seconds=3600, workers=args.workers)
        assert cluster.manager is not None
        engine = Engine(cluster.client, root / "engine", settings, informers=cluster.manager.ctx.informers)
        bench = Bench(args, repo, cluster, engine)
        engine.start()
        cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NAMESPACE}})
        try:
            with bench.profile("1-initial-sync"):
                bench.initial_sync()
            bench.settle()
            with bench.profile("2-no-op-pass"):
                bench.no_op_pass()
            with bench.profile("3-one-commit"):
                bench.one_commit()
            rss = psutil.Process().memory_info().rss / 2**20
            report("4. RSS of the process (cluster + engine)", rss, "MiB", "<= 1024", rss <= 1024)
        finally:
            engine.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
