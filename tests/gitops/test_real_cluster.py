"""Real-cluster mode, as separate processes: one `gitops up` serves the embedded control
plane as "the cluster"; two engines run `gitops up --kubeconfig` against it (RemoteClient,
no control plane of their own) with leader election. An app syncs through the remote path
exactly as in-process; killing the leader (kill -9) hands over to the other engine, which
syncs the next commit. Everything is observed with the real kubectl."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
import yaml

from controllers.client import RemoteClient
from controllers.cluster import EmbeddedCluster
from gitops import clusters
from tests.conftest import Kubectl, eventually
from tests.gitops.conftest import GitServer

REPO = Path(__file__).resolve().parents[2]
NS = "gitops"  # the engines' namespace: Applications and the Lease
APP_NS = "web"
LEASE = {"--lease-duration": "4", "--renew-deadline": "3", "--retry-period": "0.5"}


def deployment(replicas: int, image: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
"""


class Proc:
    """A `gitops up` subprocess with its output in a file (a pipe nobody reads would block it)."""

    def __init__(self, name: str, args: list[str], tmp: Path) -> None:
        self.name = name
        self.log = tmp / f"{name}.log"
        self._out: IO[Any] = self.log.open("w")
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "gitops.cli", "-v", "up", "--port", "0", *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 120) -> str:
        def ready() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.popen.returncode}:\n{self.output()}")
            return "Press Ctrl-C to stop." in self.output()

        eventually(ready, timeout, f"{self.name} started")
        return self.output()

    def identity(self) -> str:
        line = next(ln for ln in self.output().splitlines() if ln.startswith("Leader election:"))
        return line.rsplit(" as ", 1)[1].strip()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)
        self._out.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.close()


def app_status(kubectl: Kubectl) -> dict[str, Any]:
    app = orjson.loads(kubectl("get", "applications.gitops.dev", "web", "-n", NS, "-o", "json"))
    return app.get("status") or {}


def synced_healthy_at(kubectl: Kubectl, revision: str) -> bool:
    s = app_status(kubectl)
    return (
        (s.get("sync") or {}).get("status") == "Synced"
        and (s.get("health") or {}).get("status") == "Healthy"
        and (s.get("sync") or {}).get("revision") == revision
    )


def running_pods(kubectl: Kubectl, image: str) -> int:
    pods = orjson.loads(kubectl("get", "pods", "-n", APP_NS, "-l", "app=web", "-o", "json"))["items"]
    return sum(
        1
        for p in pods
        if p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
        and p["spec"]["containers"][0]["image"] == image
    )


def lease_holder(kubectl: Kubectl) -> str:
    proc = kubectl.run("get", "lease", "gitops-engine", "-n", NS, "-o", "json", check=False)
    if proc.returncode != 0:
        return ""
    return str(orjson.loads(proc.stdout)["spec"].get("holderIdentity") or "")


def test_two_engines_against_a_served_cluster_sync_and_fail_over(
    git_server: GitServer, procs: list[Proc], tmp_path: Path
) -> None:
    repo = git_server.repo("web")
    first = repo.commit({"deploy/web.yaml": deployment(2, "nginx:1.25")}, "web v1")

    # "The cluster": the embedded control plane in its own process. Its own engine serves only
    # namespace `default`, so that the Applications in `gitops` are the remote engines' alone.
    cluster = Proc(
        "cluster", ["--data-dir", str(tmp_path / "cluster"), "--api-port", "0", "--namespace", "default"], tmp_path
    )
    procs.append(cluster)
    cluster.wait_ready()
    kubeconfig = tmp_path / "cluster" / "kubeconfig"
    kubectl = Kubectl(kubeconfig, tmp_path)
    kubectl.run("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n")

    engines = []
    for name in ("engine-a", "engine-b"):
        args = ["--kubeconfig", str(kubeconfig), "--namespace", NS, "--data-dir", str(tmp_path / name)]
        engines.append(Proc(name, [*args, *[x for kv in LEASE.items() for x in kv]], tmp_path))
    procs.extend(engines)
    for e in engines:
        out = e.wait_ready()
        assert "Applications:    namespace gitops" in out and "kubeconfig:" not in out, out
    identities = {e.identity(): e for e in engines}
    leader = identities[eventually(lambda: lease_holder(kubectl) in identities and lease_holder(kubectl), 60)]
    follower = next(e for e in engines if e is not leader)

    # The CRD was installed by the engines through the remote API; the app goes the whole way.
    assert "applications.gitops.dev" in kubectl("get", "crd")
    application = f"""apiVersion: gitops.dev/v1alpha1
kind: Application
metadata:
  name: web
  namespace: {NS}
spec:
  source: {{repoURL: "{repo.url()}", path: deploy, targetRevision: main}}
  destination: {{server: "https://kubernetes.default.svc", namespace: {APP_NS}}}
  syncPolicy:
    automated: {{prune: true, selfHeal: true}}
    syncOptions: [CreateNamespace=true]
"""
    kubectl.run("apply", "-f", "-", input=application)
    t0 = time.monotonic()
    eventually(lambda: synced_healthy_at(kubectl, first), 120, "web Synced+Healthy at v1")
    eventually(lambda: running_pods(kubectl, "nginx:1.25") == 2, 60, "2 pods Running")
    first_sync = time.monotonic() - t0
    deploy = orjson.loads(kubectl("get", "deployment", "web", "-n", APP_NS, "-o", "json", "--show-managed-fields"))
    managers = {m["manager"]: m["operation"] for m in deploy["metadata"]["managedFields"]}
    assert "Apply" in managers.values(), managers  # server-side apply through the remote API
    events = kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.kind=Lease")
    assert f"{leader.identity()} became leader" in events
    for e in engines:  # the follower serves the dashboard and API too (from its warm caches)
        dashboard = next(ln for ln in e.output().splitlines() if ln.startswith("Dashboard:")).split()[1]
        with urllib.request.urlopen(dashboard.rstrip("/") + "/readyz", timeout=10) as resp:  # noqa: S310
            assert resp.status == 200

    # A push delivered to the follower (the Service may route a webhook to any replica) is
    # passed on to the leader, which syncs it.
    pushed = repo.commit({"deploy/web.yaml": deployment(2, "nginx:1.25.1")}, "web v1.1")
    follower_url = next(ln for ln in follower.output().splitlines() if ln.startswith("Dashboard:")).split()[1]
    body = {"repositories": [repo.url()], "changes": [{"ref": "refs/heads/main", "before": first, "after": pushed}]}
    hook = urllib.request.Request(  # noqa: S310 (loopback)
        follower_url.rstrip("/") + "/api/webhook",
        data=orjson.dumps(body),
        headers={"X-Gitops-Event": "push", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(hook, timeout=10) as resp:  # noqa: S310
        assert resp.status == 202
    eventually(lambda: synced_healthy_at(kubectl, pushed), 120, "web Synced+Healthy at v1.1 after the push")

    # kill -9: the Lease is left behind, never released; the follower takes it once it expires.
    leader.popen.send_signal(signal.SIGKILL)
    leader.popen.wait(30)
    killed = time.monotonic()
    eventually(lambda: lease_holder(kubectl) == follower.identity(), 60, "the follower holds the Lease")
    takeover = time.monotonic() - killed
    assert takeover < float(LEASE["--lease-duration"]) + 6, takeover  # the lease duration, plus slack for load
    lease = orjson.loads(kubectl("get", "lease", "gitops-engine", "-n", NS, "-o", "json"))["spec"]
    assert lease["leaseTransitions"] == 1 and lease["leaseDurationSeconds"] == 4

    # The new leader syncs the next commit (a refresh asks for a fetch at once, as a webhook would).
    second = repo.commit({"deploy/web.yaml": deployment(3, "nginx:1.26")}, "web v2")
    kubectl("annotate", "applications.gitops.dev", "web", "-n", NS, "gitops.dev/refresh=normal", "--overwrite")
    eventually(lambda: synced_healthy_at(kubectl, second), 120, "web Synced+Healthy at v2")
    eventually(lambda: running_pods(kubectl, "nginx:1.26") == 3, 60, "3 new pods Running")
    history = app_status(kubectl)["history"]
    assert [h["revision"] for h in history] == [first, pushed, second]  # no spurious re-sync by the new leader

    # A clean stop releases the Lease (no successor would have to wait out its duration).
    t1 = time.monotonic()
    follower.popen.send_signal(signal.SIGTERM)
    assert follower.popen.wait(60) == 0, follower.output()
    stop_seconds = time.monotonic() - t1
    assert lease_holder(kubectl) == ""
    print(f"first sync {first_sync:.1f}s, takeover after kill -9 {takeover:.1f}s, clean stop {stop_seconds:.1f}s")
    cluster.popen.send_signal(signal.SIGTERM)
    assert cluster.popen.wait(60) == 0, cluster.output()


def run_up(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "gitops.cli", "up", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )


def test_real_cluster_flags_are_checked_with_clear_errors(kubeconfig: Path) -> None:
    out = run_up("--kubeconfig", str(kubeconfig), "--nodes", "5")
    assert out.returncode == 2 and "--nodes only apply to the embedded cluster" in out.stderr
    out = run_up("--kubeconfig", str(kubeconfig), "--context", "nope")
    assert out.returncode == 2 and "no context 'nope' (it has: gitops)" in out.stderr
    out = run_up("--in-cluster")
    assert out.returncode == 2 and "in-cluster mode needs KUBERNETES_SERVICE_HOST" in out.stderr
    out = run_up("--kubeconfig", str(kubeconfig), "--lease-duration", "5", "--renew-deadline", "6")
    assert out.returncode == 2 and "must be greater than the renew deadline" in out.stderr


# ---------------------------------------------------------------------- destination clusters
def cluster_secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS, "labels": {clusters.SECRET_TYPE_LABEL: "cluster"}},
        "stringData": data,
    }


def test_destination_clusters_registered_as_argo_cd_secrets(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    """Cluster A holds Secrets registering cluster B, as Argo CD's config JSON and as a kubeconfig."""
    other = EmbeddedCluster(None, api_port=0).start()
    try:
        own = RemoteClient.from_kubeconfig(str(cluster.write_kubeconfig(tmp_path / "a")))
        own.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        assert other.certs is not None and other.token
        ca = base64.b64encode(other.certs.ca_pem()).decode()
        argo = {"bearerToken": other.token, "tlsClientConfig": {"caData": ca}}
        own.create(cluster_secret("b", {"name": "b", "server": other.url, "config": orjson.dumps(argo).decode()}))
        own.create(cluster_secret("b-kube", {"kubeconfig": yaml.safe_dump(other.kubeconfig()), "name": "b2"}))
        own.create(cluster_secret("broken", {"name": "c", "server": "https://c.example", "config": "{not json"}))
        registry = clusters.ClusterRegistry(own, NS, own_urls=[cluster.url]).start()
        try:
            assert registry.secrets.wait_for_sync(30)
            other.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "only-in-b"}})
            for found in (registry.client_for(server=other.url + "/"), registry.client_for(name="b2")):
                assert found is not own
                assert found.get("v1", "Namespace", "only-in-b")["metadata"]["name"] == "only-in-b"
            assert registry.client_for(server="https://kubernetes.default.svc") is own
            assert registry.client_for(name="in-cluster") is own
            assert registry.client_for(server=cluster.url) is own
            assert sorted(c.name for c in registry.clusters()) == ["b", "b2", "c"]
            with pytest.raises(clusters.ClusterError, match=f"secret {NS}/broken: config is not valid JSON"):
                registry.client_for(name="c")
            with pytest.raises(clusters.ClusterError, match=r"cluster name 'nope' is not registered: add a Secret"):
                registry.client_for(name="nope")
        finally:
            registry.stop()
    finally:
        other.stop()
