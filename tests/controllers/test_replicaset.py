"""The ReplicaSet controller: pods kept at spec.replicas, adoption and release, the order
surplus pods are removed in, failures surfaced as ReplicaFailure and events, and on the
whole simulated stack (nodes, kubelet, scheduler) pods that really run."""

from __future__ import annotations

import datetime as dt
import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers import errors
from controllers.admission import CREATE, AdmissionRequest
from controllers.clock import now_rfc3339
from controllers.cluster import EmbeddedCluster
from controllers.manager import DEFAULT_CONTROLLERS, ClusterConfig
from controllers.workloads.replicaset import Expectations, pods_to_delete, slow_start_batch
from tests.conftest import Kubectl, eventually

Obj = dict[str, Any]

STACK = ["nodes", "kubelet", "scheduler", "replicaset", "deployment"]
MISSING = [n for n in STACK if importlib.util.find_spec(DEFAULT_CONTROLLERS[n].partition(":")[0]) is None]
needs_stack = pytest.mark.skipif(
    bool(MISSING),
    reason="needs the whole simulated stack; not in the tree yet: "
    + ", ".join(DEFAULT_CONTROLLERS[n].partition(":")[0].replace(".", "/") + ".py" for n in MISSING),
)


def stack_config(tmp_path: Path, rules: str = "") -> ClusterConfig:
    """Three fast simulated nodes; `rules` is a kubelet rules file's text."""
    config = ClusterConfig.default(3, cpu="64", memory="256Gi", pods=500)
    config.heartbeat_seconds = 0.5
    config.node_monitor_grace_seconds = 5
    if rules:
        path = tmp_path / "kubelet-rules.yaml"
        path.write_text(rules)
        config.kubelet_rules = path
    return config


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A cluster with nodes, kubelet, scheduler and the ReplicaSet and Deployment controllers."""
    c = EmbeddedCluster(None, api_port=0, config=stack_config(tmp_path), controllers=STACK).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def rs_only() -> Iterator[EmbeddedCluster]:
    """Only the ReplicaSet controller: the test plays the kubelet by writing pod status."""
    c = EmbeddedCluster(None, api_port=0, config=ClusterConfig(nodes=[]), controllers=["replicaset"]).start()
    try:
        yield c
    finally:
        c.stop()


def replicaset(name: str, replicas: int, min_ready: int = 0, image: str = "nginx:1.27") -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def pods_of(c: EmbeddedCluster, app: str, live: bool = True) -> list[Obj]:
    items = c.client.list("v1", "Pod", "default", label_selector=f"app={app}")["items"]
    return [p for p in items if not (live and p["metadata"].get("deletionTimestamp"))]


def rs_status(c: EmbeddedCluster, name: str) -> Obj:
    return c.client.get("apps/v1", "ReplicaSet", name, "default").get("status") or {}


def owner_uids(pod: Obj) -> list[str]:
    return [r["uid"] for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]


def mark_ready(c: EmbeddedCluster, pod: Obj) -> None:
    """What the kubelet would write for a running, ready pod."""
    live = c.client.get("v1", "Pod", pod["metadata"]["name"], "default")
    now = now_rfc3339()
    live["status"].update(
        phase="Running",
        conditions=[{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    )
    c.client.update_status(live)


def events_for(c: EmbeddedCluster, name: str, reason: str) -> list[str]:
    items = c.client.list("v1", "Event", "default")["items"]
    return [e["message"] for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


# ---------------------------------------------------------------------------- pure rules
def _pod(name: str, *, node: str = "", phase: str = "Pending", ready_ago: float | None = None, **extra: Any) -> Obj:
    now = dt.datetime.now(dt.UTC)
    created = (now - dt.timedelta(seconds=extra.get("age", 100))).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod: Obj = {
        "metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": extra.get("ann", {})},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, "containerStatuses": [{"restartCount": extra.get("restarts", 0)}]},
    }
    if ready_ago is not None:
        since = (now - dt.timedelta(seconds=ready_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
        pod["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": since}]
    return pod


_READY: dict[str, Any] = {"node": "n1", "phase": "Running", "ready_ago": 50}
_COST = {"controller.kubernetes.io/pod-deletion-cost": "-5"}


@pytest.mark.parametrize(
    ("pods", "siblings", "first"),
    [
        ([_pod("on-node", node="n1"), _pod("unscheduled")], [], "unscheduled"),
        ([_pod("running", node="n1", phase="Running"), _pod("pending", node="n1")], [], "pending"),
        ([_pod("ready", **_READY), _pod("not-ready", node="n1", phase="Running")], [], "not-ready"),
        ([_pod("normal", **_READY), _pod("cheap", ann=_COST, **_READY)], [], "cheap"),
        (
            [_pod("alone", **_READY), _pod("crowded", **{**_READY, "node": "n2"})],
            [_pod("sibling", node="n2", phase="Running")],
            "crowded",
        ),
        ([_pod("long-ready", **{**_READY, "ready_ago": 5000}), _pod("just-ready", **_READY)], [], "just-ready"),
        (
            [_pod("calm", node="n1", phase="Running"), _pod("crashy", node="n1", phase="Running", restarts=4)],
            [],
            "crashy",
        ),
        ([_pod("old", node="n1", age=5000), _pod("young", node="n1", age=2)], [], "young"),
    ],
    ids=["unscheduled", "pending", "not-ready", "deletion-cost", "doubled-up", "ready-recently", "restarts", "young"],
)
def test_scale_down_removes_the_pod_that_matters_least(pods: list[Obj], siblings: list[Obj], first: str) -> None:
    for order in (pods, pods[::-1]):
        assert pods_to_delete(order, [*pods, *siblings], 1)[0]["metadata"]["name"] == first


def test_expectations_hold_back_until_the_cache_has_seen_every_write() -> None:
    exp = Expectations()
    exp.expect_creations("default/web", 2)
    assert not exp.satisfied("default/web")
    exp.creation_observed("default/web")
    exp.creation_observed("default/web")
    assert exp.satisfied("default/web")
    exp.expect_deletions("default/web", {"default/a", "default/b"})
    exp.deletion_observed("default/web", "default/a")
    assert exp.pending_deletions("default/web") == {"default/b"}
    assert not exp.satisfied("default/web")
    stale = Expectations(ttl=0.0)
    stale.expect_creations("default/web", 5)
    time.sleep(0.01)
    assert stale.satisfied("default/web"), "a lost event must not block the owner forever"
    assert stale.pending_deletions("default/web") == set()


def test_slow_start_stops_after_the_first_failing_batch() -> None:
    from concurrent.futures import ThreadPoolExecutor

    calls: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        with lock:
            calls.append(1)
            n = len(calls)
        if n > 3:
            raise errors.Forbidden("quota exceeded")

    with ThreadPoolExecutor(4) as pool:
        done, failure = slow_start_batch(100, create, pool)
        assert (done, len(calls)) == (3, 7), "batches of 1, 2, then 4 that fail: no fourth batch"
        assert isinstance(failure, errors.Forbidden)
        calls.clear()
        assert slow_start_batch(0, create, pool) == (0, None)


# ---------------------------------------------------------------------------- with the API
def test_creates_the_missing_pods_from_the_template(rs_only: EmbeddedCluster) -> None:
    rs = rs_only.client.create(replicaset("web", 5))
    pods = eventually(lambda: len(pods_of(rs_only, "web")) == 5 and pods_of(rs_only, "web"))
    for pod in pods:
        assert pod["metadata"]["name"].startswith("web-") and pod["metadata"]["generateName"] == "web-"
        assert owner_uids(pod) == [rs["metadata"]["uid"]]
        assert pod["metadata"]["labels"] == {"app": "web", "tier": "web"}
    eventually(lambda: rs_status(rs_only, "web") == {"replicas": 5, "fullyLabeledReplicas": 5, "observedGeneration": 1})
    names = eventually(
        lambda: (
            len(events_for(rs_only, "web", "SuccessfulCreate")) == 5 and events_for(rs_only, "web", "SuccessfulCreate")
        )
    )
    assert sorted(names) == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)


def test_a_burst_is_created_exactly_once(rs_only: EmbeddedCluster) -> None:
    """Expectations: the informer lags behind 300 creations, yet none is issued twice."""
    rs_only.client.create(replicaset("burst", 300))
    eventually(lambda: rs_status(rs_only, "burst").get("replicas") == 300, what="300 pods counted")
    time.sleep(0.5)  # would-be duplicates have had time to appear
    assert len(pods_of(rs_only, "burst")) == 300


def test_adopts_matching_orphans_and_releases_strays(rs_only: EmbeddedCluster) -> None:
    orphan = rs_only.client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "handmade", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        }
    )
    rs = rs_only.client.create(replicaset("web", 3))
    uid = rs["metadata"]["uid"]
    eventually(lambda: owner_uids(rs_only.client.get("v1", "Pod", "handmade", "default")) == [uid], what="adoption")
    eventually(lambda: len(pods_of(rs_only, "web")) == 3)
    time.sleep(0.3)
    assert len(pods_of(rs_only, "web")) == 3, "the adopted pod counts: only two were created"
    assert orphan["metadata"]["uid"] in {p["metadata"]["uid"] for p in pods_of(rs_only, "web")}

    rs_only.client.patch("v1", "Pod", "handmade", {"metadata": {"labels": {"app": "debug"}}}, "default")
    eventually(lambda: owner_uids(rs_only.client.get("v1", "Pod", "handmade", "default")) == [], what="release")
    eventually(lambda: len(pods_of(rs_only, "web")) == 3, what="a replacement for the released pod")
    assert all(owner_uids(p) == [uid] for p in pods_of(rs_only, "web"))


def test_scale_down_removes_not_ready_pods_first(rs_only: EmbeddedCluster) -> None:
    rs_only.client.create(replicaset("web", 4))
    pods = eventually(lambda: len(pods_of(rs_only, "web")) == 4 and pods_of(rs_only, "web"))
    ready = {p["metadata"]["name"] for p in pods[:2]}
    for pod in pods[:2]:
        mark_ready(rs_only, pod)
    eventually(lambda: rs_status(rs_only, "web").get("readyReplicas") == 2)
    rs_only.client.patch("apps/v1", "ReplicaSet", "web", {"spec": {"replicas": 2}}, "default")
    eventually(lambda: {p["metadata"]["name"] for p in pods_of(rs_only, "web", live=False)} == ready)
    eventually(lambda: rs_status(rs_only, "web").get("availableReplicas") == 2)
    eventually(lambda: len(events_for(rs_only, "web", "SuccessfulDelete")) == 2, what="SuccessfulDelete events")


def test_min_ready_seconds_delays_availability(rs_only: EmbeddedCluster) -> None:
    rs_only.client.create(replicaset("slow", 1, min_ready=3))
    pod = eventually(lambda: pods_of(rs_only, "slow") and pods_of(rs_only, "slow")[0])
    marked = time.monotonic()
    mark_ready(rs_only, pod)
    eventually(lambda: rs_status(rs_only, "slow").get("readyReplicas") == 1)
    eventually(lambda: rs_status(rs_only, "slow").get("availableReplicas") == 1, timeout=15)
    # Ready times have whole seconds: available between 2 and 3 s after it turned ready.
    assert time.monotonic() - marked >= 2.0, "available only once ready for minReadySeconds"


class _DenyPods:
    name = "deny-pods"

    def validate(self, req: AdmissionRequest) -> None:
        if req.operation == CREATE and req.kind == "Pod":
            raise errors.Forbidden('pods "web-" is forbidden: exceeded quota: pods')


def test_create_failures_show_as_replica_failure(rs_only: EmbeddedCluster) -> None:
    rs_only.api.admission.add_validating(_DenyPods())
    rs_only.client.create(replicaset("web", 3))
    cond = eventually(lambda: (rs_status(rs_only, "web").get("conditions") or [None])[0], what="ReplicaFailure")
    assert (cond["type"], cond["status"], cond["reason"]) == ("ReplicaFailure", "True", "FailedCreate")
    assert "exceeded quota" in cond["message"]
    assert any("Error creating: " in m for m in eventually(lambda: events_for(rs_only, "web", "FailedCreate")))
    rs_only.api.admission.remove("deny-pods")
    eventually(lambda: len(pods_of(rs_only, "web")) == 3, what="pods once creation is allowed")
    eventually(lambda: "conditions" not in rs_status(rs_only, "web"), what="ReplicaFailure cleared")


# ---------------------------------------------------------------------------- the whole stack
@needs_stack
def test_pods_run_and_a_deleted_pod_is_replaced(stack: EmbeddedCluster, tmp_path: Path) -> None:
    kubectl = Kubectl(stack.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    kubectl("apply", "-f", "-", input=yaml.safe_dump(replicaset("web", 3)))
    eventually(lambda: rs_status(stack, "web").get("availableReplicas") == 3, what="3 available pods")
    out = kubectl("get", "rs", "web", "--no-headers")
    assert out.split()[:4] == ["web", "3", "3", "3"], out
    victim = pods_of(stack, "web")[0]["metadata"]["name"]
    kubectl("delete", "pod", victim, "--wait=false")
    eventually(
        lambda: (
            victim not in {p["metadata"]["name"] for p in pods_of(stack, "web")} and len(pods_of(stack, "web")) == 3
        ),
        what="a replacement pod",
    )
    eventually(lambda: rs_status(stack, "web").get("availableReplicas") == 3, what="3 available again")
    assert all(p["status"]["phase"] == "Running" and p["spec"].get("nodeName") for p in pods_of(stack, "web"))
    described = kubectl("describe", "rs", "web")
    assert "SuccessfulCreate" in described and "Pods Status:" in described
