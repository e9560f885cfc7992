"""The StatefulSet controller driven with the real kubectl on the whole simulated stack
(nodes, kubelet, scheduler): pods created in ordinal order each Ready before the next,
removed from the highest ordinal down, claims per ordinal, a partitioned rolling update
from the highest ordinal down, `kubectl rollout status`, Parallel vs OrderedReady, and
OnDelete.

The small stack helpers here are shared by the DaemonSet, Job and CronJob tests."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.cluster import EmbeddedCluster
from controllers.manager import DEFAULT_CONTROLLERS, ClusterConfig, Factory, NodeSpec
from tests.conftest import Kubectl, eventually

Obj = dict[str, Any]

STACK = ["nodes", "kubelet", "scheduler", "gc"]


def needs(*names: str) -> pytest.MarkDecorator:
    """Skip unless the named controllers' modules are in the tree."""
    missing = [
        DEFAULT_CONTROLLERS[n].partition(":")[0]
        for n in names
        if importlib.util.find_spec(DEFAULT_CONTROLLERS[n].partition(":")[0]) is None
    ]
    reason = "needs the simulated stack; not in the tree yet: " + ", ".join(
        m.replace(".", "/") + ".py" for m in missing
    )
    return pytest.mark.skipif(bool(missing), reason=reason)


@contextmanager
def stack(
    tmp_path: Path,
    controllers: list[str],
    *,
    rules: str = "",
    nodes: list[NodeSpec] | None = None,
    extra: dict[str, Factory] | None = None,
) -> Iterator[tuple[EmbeddedCluster, Kubectl]]:
    """A cluster of fast simulated nodes running `controllers` (and the `extra` ones,
    built by the given factories), with kubectl pointed at it. `rules` is the text of a
    kubelet rules file."""
    config = ClusterConfig.default(3)
    if nodes is not None:
        config.nodes = nodes
    config.heartbeat_seconds = 0.5
    config.node_monitor_grace_seconds = 5
    if rules:
        config.kubelet_rules = tmp_path / "kubelet-rules.yaml"
        config.kubelet_rules.write_text(rules)
    cluster = EmbeddedCluster(None, api_port=0, config=config, controllers=controllers)
    assert cluster.manager is not None
    for name, factory in (extra or {}).items():
        cluster.manager.add(name, factory)
    cluster.start()
    try:
        yield cluster, Kubectl(cluster.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    finally:
        cluster.stop()


def apply(kubectl: Kubectl, *objects: Obj) -> str:
    return kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


@dataclass(frozen=True)
class PodEvent:
    at: float  # time.monotonic() when the test saw it
    type: str
    name: str
    phase: str
    ready: bool
    deleting: bool
    node: str
    image: str
    labels: dict[str, str]

    @property
    def available(self) -> bool:
        return self.phase == "Running" and self.ready and not self.deleting and self.type != "DELETED"


def _pod_event(etype: str, pod: Obj) -> PodEvent:
    conds = (pod.get("status") or {}).get("conditions") or []
    return PodEvent(
        time.monotonic(),
        etype,
        pod["metadata"]["name"],
        (pod.get("status") or {}).get("phase", ""),
        any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds),
        bool(pod["metadata"].get("deletionTimestamp")),
        pod["spec"].get("nodeName") or "",
        pod["spec"]["containers"][0].get("image", ""),
        dict(pod["metadata"].get("labels") or {}),
    )


class PodLog:
    """The pods of a namespace when the log starts (`initial`) and every change after
    that (`events`), in order, as a watching user sees them."""

    def __init__(self, cluster: EmbeddedCluster, namespace: str = "default") -> None:
        listing = cluster.client.list("v1", "Pod", namespace)
        self.initial = [_pod_event("ADDED", p) for p in listing["items"]]
        self.events: list[PodEvent] = []
        self._watch = cluster.client.watch("v1", "Pod", namespace, listing["metadata"]["resourceVersion"])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for ev in self._watch:
            self.events.append(_pod_event(ev.type, ev.object))

    def stop(self) -> None:
        self._watch.stop()

    def first(self, name: str, pred: Callable[[PodEvent], bool]) -> float:
        """When pod `name` first matched `pred`."""
        return next(e.at for e in list(self.events) if e.name == name and pred(e))

    def order(self, pred: Callable[[PodEvent], bool]) -> list[str]:
        """Pod names in the order each first matched `pred`."""
        seen: list[str] = []
        for e in list(self.events):
            if pred(e) and e.name not in seen:
                seen.append(e.name)
        return seen


def _added(e: PodEvent) -> bool:
    return e.type == "ADDED"


def _ready(e: PodEvent) -> bool:
    return e.available


def _leaving(e: PodEvent) -> bool:
    return e.deleting or e.type == "DELETED"


def _gone(e: PodEvent) -> bool:
    return e.type == "DELETED"


# ---------------------------------------------------------------------------- StatefulSets
SETS = [*STACK, "statefulset"]
needs_stack = needs(*SETS)


def statefulset(name: str, replicas: int, image: str = "nginx:1.27", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "nginx", "image": image}]},
            },
            **spec,
        },
    }


def pods(cluster: EmbeddedCluster, app: str) -> dict[str, Obj]:
    items = cluster.client.list("v1", "Pod", "default", label_selector=f"app={app}")["items"]
    return {p["metadata"]["name"]: p for p in items}


def ready_replicas(kubectl: Kubectl, name: str) -> str:
    return kubectl("get", "statefulset", name, "-o", "jsonpath={.status.readyReplicas}")


@needs_stack
def test_pods_start_in_order_and_leave_from_the_highest_ordinal(tmp_path: Path) -> None:
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    with stack(tmp_path, SETS) as (cluster, kubectl):
        log = PodLog(cluster)
        apply(kubectl, statefulset("web", 3, volumeClaimTemplates=[claim]))
        eventually(lambda: ready_replicas(kubectl, "web") == "3", what="3 ready replicas")
        assert log.order(_ready) == ["web-0", "web-1", "web-2"]
        for prev, nxt in (("web-0", "web-1"), ("web-1", "web-2")):
            assert log.first(nxt, _added) >= log.first(prev, _ready), f"{nxt} was created before {prev} was Ready"
        assert kubectl("get", "statefulset", "web", "--no-headers").split()[1] == "3/3"

        web1 = pods(cluster, "web")["web-1"]
        assert (web1["spec"]["hostname"], web1["spec"]["subdomain"]) == ("web-1", "web")
        labels = web1["metadata"]["labels"]
        assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
        assert labels["apps.kubernetes.io/pod-index"] == "1"
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in web1["spec"]["volumes"]
        claims = kubectl("get", "pvc", "-o", "jsonpath={.items[*].metadata.name}").split()
        assert sorted(claims) == ["data-web-0", "data-web-1", "data-web-2"]

        kubectl("scale", "statefulset", "web", "--replicas=1")
        eventually(lambda: list(pods(cluster, "web")) == ["web-0"], what="scaled down to web-0")
        assert log.order(_leaving) == ["web-2", "web-1"]
        assert log.first("web-1", _leaving) >= log.first("web-2", _gone), "web-1 went before web-2 was gone"
        claims = kubectl("get", "pvc", "-o", "jsonpath={.items[*].metadata.name}").split()
        assert len(claims) == 3, "the default retention policy keeps the claims of removed pods"
        log.stop()


@needs_stack
def test_partitioned_rolling_update_from_the_highest_ordinal(tmp_path: Path) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    with stack(tmp_path, SETS) as (cluster, kubectl):
        apply(kubectl, statefulset("web", 3, updateStrategy=strategy))
        out = kubectl("rollout", "status", "statefulset/web", "--timeout=60s", timeout=90)
        assert "partitioned roll out complete: 3 new pods have been updated" in out

        log = PodLog(cluster)
        kubectl("set", "image", "statefulset/web", "nginx=nginx:1.28")
        out = kubectl("rollout", "status", "statefulset/web", "--timeout=60s", timeout=90)
        assert "partitioned roll out complete: 1 new pods have been updated" in out
        images = {n: p["spec"]["containers"][0]["image"] for n, p in pods(cluster, "web").items()}
        assert images == {"web-0": "nginx:1.27", "web-1": "nginx:1.27", "web-2": "nginx:1.28"}

        kubectl("patch", "statefulset", "web", "-p", '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')
        out = kubectl("rollout", "status", "statefulset/web", "--timeout=60s", timeout=90)
        assert "partitioned roll out complete: 3 new pods have been updated" in out
        revisions = kubectl(
            "get", "statefulset", "web", "-o", "jsonpath={.status.currentRevision} {.status.updateRevision}"
        )
        current, update = revisions.split()
        assert current == update, "a finished roll makes the update revision current"
        assert log.order(_leaving) == ["web-2", "web-1", "web-0"]
        for prev, nxt in (("web-2", "web-1"), ("web-1", "web-0")):
            left = log.first(prev, _leaving)
            back = next(e.at for e in log.events if e.name == prev and e.available and e.at > left)
            assert log.first(nxt, _leaving) >= back, f"{nxt} was replaced before the new {prev} was Ready"
        final = pods(cluster, "web")
        assert {p["spec"]["containers"][0]["image"] for p in final.values()} == {"nginx:1.28"}
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in final.values()} == {update}
        assert revision_numbers(kubectl) == ["1", "2"]

        kubectl("rollout", "undo", "statefulset/web")
        kubectl("rollout", "status", "statefulset/web", "--timeout=60s", timeout=90)
        eventually(
            lambda: {p["spec"]["containers"][0]["image"] for p in pods(cluster, "web").values()} == {"nginx:1.27"}
        )
        assert revision_numbers(kubectl) == ["2", "3"], "the undone-to revision is renumbered, not duplicated"
        log.stop()


def revision_numbers(kubectl: Kubectl) -> list[str]:
    history = kubectl("rollout", "history", "statefulset/web")
    return [line.split()[0] for line in history.splitlines()[2:] if line.strip()]


UNREADY = """\
rules:
- name: never-ready
  match: {image: "*:unready"}
  readiness: {fail: true}
"""


@needs_stack
def test_ordered_ready_waits_for_readiness_and_parallel_does_not(tmp_path: Path) -> None:
    probe = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    with stack(tmp_path, SETS, rules=UNREADY) as (cluster, kubectl):
        sets = [statefulset(n, 3, image="app:unready") for n in ("ordered", "parallel")]
        for s in sets:
            s["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = probe
        sets[1]["spec"]["podManagementPolicy"] = "Parallel"
        apply(kubectl, *sets)
        eventually(
            lambda: [p["status"].get("phase") for p in pods(cluster, "parallel").values()] == ["Running"] * 3,
            what="three running Parallel pods",
        )
        eventually(lambda: pods(cluster, "ordered").get("ordered-0", {}).get("status", {}).get("phase") == "Running")
        time.sleep(1)  # the OrderedReady set had as long as the Parallel one: it must still wait
        assert list(pods(cluster, "ordered")) == ["ordered-0"]
        rows = kubectl("get", "statefulsets", "--no-headers").splitlines()
        assert sorted(r.split()[:2] for r in rows) == [["ordered", "0/3"], ["parallel", "0/3"]]


@needs_stack
def test_on_delete_replaces_only_the_pods_a_user_deletes(tmp_path: Path) -> None:
    with stack(tmp_path, SETS) as (cluster, kubectl):
        apply(kubectl, statefulset("od", 2, updateStrategy={"type": "OnDelete"}))
        eventually(lambda: ready_replicas(kubectl, "od") == "2")
        kubectl("set", "image", "statefulset/od", "nginx=nginx:1.28")

        def status() -> Obj:
            return cluster.client.get("apps/v1", "StatefulSet", "od", "default")["status"]

        eventually(lambda: status()["updateRevision"] != status()["currentRevision"], what="a new update revision")
        assert {p["spec"]["containers"][0]["image"] for p in pods(cluster, "od").values()} == {"nginx:1.27"}
        kubectl("delete", "pod", "od-1")
        eventually(
            lambda: (
                pods(cluster, "od").get("od-1", {}).get("spec", {}).get("containers", [{}])[0].get("image")
                == "nginx:1.28"
            ),
            what="od-1 recreated from the new template",
        )
        assert pods(cluster, "od")["od-0"]["spec"]["containers"][0]["image"] == "nginx:1.27"
        eventually(lambda: status().get("updatedReplicas") == 1 and status().get("readyReplicas") == 2)


@needs_stack
def test_min_ready_seconds_holds_the_next_ordinal(tmp_path: Path) -> None:
    with stack(tmp_path, SETS) as (cluster, kubectl):
        log = PodLog(cluster)
        apply(kubectl, statefulset("slow", 2, minReadySeconds=2))
        eventually(
            lambda: kubectl("get", "statefulset", "slow", "-o", "jsonpath={.status.availableReplicas}") == "2",
            what="two available replicas",
        )
        # Ready times have whole seconds (as in Kubernetes): available 1 to 2 s after Ready.
        assert log.first("slow-1", _added) - log.first("slow-0", _ready) >= 0.9, "slow-0 had to be available first"
        log.stop()


@needs_stack
def test_claim_retention_policy_delete(tmp_path: Path) -> None:
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    policy = {"whenScaled": "Delete", "whenDeleted": "Delete"}
    with stack(tmp_path, SETS) as (cluster, kubectl):
        apply(
            kubectl,
            statefulset("db", 2, volumeClaimTemplates=[claim], persistentVolumeClaimRetentionPolicy=policy),
        )
        eventually(lambda: ready_replicas(kubectl, "db") == "2")

        def claims() -> list[str]:
            return sorted(kubectl("get", "pvc", "-o", "jsonpath={.items[*].metadata.name}").split())

        assert claims() == ["data-db-0", "data-db-1"]
        kubectl("scale", "statefulset", "db", "--replicas=1")
        eventually(lambda: claims() == ["data-db-0"], what="the claim of the removed pod deleted")
        kubectl("delete", "statefulset", "db")
        eventually(lambda: claims() == [], what="the claims deleted with the set")
