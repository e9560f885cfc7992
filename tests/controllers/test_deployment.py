"""The Deployment controller driven the way a user drives it, with the real kubectl
against the whole simulated stack: rollouts that keep their surge and availability
bounds at every pod event, Recreate that never overlaps, history and undo, pause and
resume, scaling (proportional in mid-rollout), history cleanup, and a rollout that
stalls on an image that never pulls ending in ProgressDeadlineExceeded."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.client import Client
from controllers.cluster import EmbeddedCluster
from controllers.workloads import rollout
from tests.conftest import Kubectl, eventually
from tests.controllers.test_replicaset import STACK, needs_stack, stack_config

Obj = dict[str, Any]

RULES = """\
rules:
- name: never-pulls
  match: {image: "*:broken"}
  pull: {fail: true, message: "pull access denied, repository does not exist"}
"""


# ---------------------------------------------------------------------------- pure rules
@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (6, "25%", "25%", (2, 1)),  # surge rounds up, unavailability down
        (10, "25%", "25%", (3, 2)),
        (10, "33%", "15%", (4, 1)),
        (6, 0, 1, (0, 1)),
        (6, 3, 0, (3, 0)),
        (3, "10%", "10%", (1, 0)),
        (4, "0%", "10%", (0, 1)),  # both zero would stall: one pod may be unavailable
    ],
)
def test_surge_and_unavailability_in_pods(replicas: int, surge: Any, unavailable: Any, expected: tuple) -> None:
    d = {
        "spec": {
            "replicas": replicas,
            "strategy": {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
        }
    }
    assert (rollout.max_surge(d), rollout.max_unavailable(d)) == expected


def test_template_hash_is_stable_and_safe() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}
    reordered = {"spec": {"containers": [{"image": "nginx", "name": "a"}]}, "metadata": {"labels": {"app": "web"}}}
    h = rollout.template_hash(template)
    assert h == rollout.template_hash(reordered), "the hash names the template, not its key order"
    assert 1 <= len(h) <= 10 and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rollout.template_hash(template, 1) != h, "a collision count gives the next name"
    changed = {**template, "spec": {"containers": [{"name": "a", "image": "nginx:2"}]}}
    assert rollout.template_hash(changed) != h


def test_proportional_shares_follow_the_last_scaled_size() -> None:
    """The Kubernetes docs' example: 10 replicas, maxSurge 3, stuck at 8 old + 5 new,
    scaled to 15: 3 more for the old ReplicaSet and 2 for the new one."""
    d = {"spec": {"replicas": 15, "strategy": {"rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}}, "status": {}}
    old = {"spec": {"replicas": 8}, "metadata": {"annotations": {rollout.MAX_REPLICAS: "13"}}}
    new = {"spec": {"replicas": 5}, "metadata": {"annotations": {rollout.MAX_REPLICAS: "13"}}}
    first = rollout.proportion(old, d, 5, 0)
    assert (first, rollout.proportion(new, d, 5, first)) == (3, 2)


# ---------------------------------------------------------------------------- the whole stack
@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """Nodes, kubelet (images tagged `broken` never pull), scheduler, ReplicaSets, Deployments."""
    c = EmbeddedCluster(None, api_port=0, config=stack_config(tmp_path, RULES), controllers=STACK).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def kubectl(stack: EmbeddedCluster, tmp_path: Path) -> Kubectl:
    return Kubectl(stack.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)


def deployment(name: str, replicas: int, image: str = "nginx:1", **spec: Any) -> str:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}], "terminationGracePeriodSeconds": 1},
            },
            **spec,
        },
    }
    return yaml.safe_dump(obj)


def rolling(surge: Any, unavailable: Any) -> dict[str, Any]:
    return {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}


def rollout_status(kubectl: Kubectl, name: str) -> str:
    out = kubectl("rollout", "status", f"deployment/{name}", "--timeout=90s", timeout=120)
    assert f'deployment "{name}" successfully rolled out' in out, out
    return out


def get(c: EmbeddedCluster, kind: str, name: str) -> Obj:
    return c.client.get("apps/v1", kind, name, "default")


def replicasets(c: EmbeddedCluster, app: str) -> list[Obj]:
    return c.client.list("apps/v1", "ReplicaSet", "default", label_selector=f"app={app}")["items"]


def rs_sizes(c: EmbeddedCluster, app: str) -> dict[str, int]:
    """Each ReplicaSet's spec.replicas by the image it runs."""
    return {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"] for rs in replicasets(c, app)
    }


def condition(c: EmbeddedCluster, name: str, ctype: str) -> Obj:
    return rollout.get_condition(get(c, "Deployment", name).get("status"), ctype) or {}


def live_images(c: EmbeddedCluster, app: str) -> list[str]:
    pods = c.client.list("v1", "Pod", "default", label_selector=f"app={app}")["items"]
    return sorted(p["spec"]["containers"][0]["image"] for p in pods if not p["metadata"].get("deletionTimestamp"))


class PodCensus:
    """Every pod event of one app, in order, from a consistent listing: after each event,
    how many pods are live (not terminating), how many of those are ready, and which images
    any pod (terminating ones included) runs."""

    def __init__(self, client: Client, app: str) -> None:
        listing = client.list("v1", "Pod", "default", label_selector=f"app={app}")
        self.pods: dict[str, Obj] = {p["metadata"]["name"]: p for p in listing["items"]}
        self.samples: list[tuple[int, int, frozenset[str]]] = [self._sample()]
        self._watch = client.watch(
            "v1", "Pod", "default", listing["metadata"]["resourceVersion"], label_selector=f"app={app}"
        )
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _sample(self) -> tuple[int, int, frozenset[str]]:
        live = [p for p in self.pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if (rollout.get_condition(p.get("status"), "Ready") or {}).get("status") == "True"]
        images = frozenset(p["spec"]["containers"][0]["image"] for p in self.pods.values())
        return len(live), len(ready), images

    def _follow(self) -> None:
        for ev in self._watch:
            name = ev.object["metadata"]["name"]
            if ev.type == "DELETED":
                self.pods.pop(name, None)
            elif ev.type in ("ADDED", "MODIFIED"):
                self.pods[name] = ev.object
            self.samples.append(self._sample())

    def stop(self) -> None:
        self._watch.stop()
        self._thread.join(timeout=5)

    @property
    def max_live(self) -> int:
        return max(s[0] for s in self.samples)

    @property
    def min_ready(self) -> int:
        return min(s[1] for s in self.samples)


@needs_stack
def test_apply_then_rollout_status(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    out = kubectl("apply", "-f", "-", input=deployment("web", 6))
    assert "deployment.apps/web created" in out
    rollout_status(kubectl, "web")
    row = kubectl("get", "deployment", "web", "--no-headers").split()
    assert row[:4] == ["web", "6/6", "6", "6"], row
    d = get(stack, "Deployment", "web")
    assert d["metadata"]["annotations"][rollout.REVISION] == "1"
    assert {c["type"]: (c["status"], c["reason"]) for c in d["status"]["conditions"]} == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }
    [rs] = replicasets(stack, "web")
    pod_hash = rs["metadata"]["labels"][rollout.POD_TEMPLATE_HASH]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", rollout.POD_TEMPLATE_HASH: pod_hash}
    assert rs["metadata"]["annotations"][rollout.DESIRED_REPLICAS] == "6"
    assert rs["metadata"]["annotations"][rollout.MAX_REPLICAS] == "8"
    events = kubectl(
        "get", "events", "--field-selector", "reason=ScalingReplicaSet", "-o", "jsonpath={.items[*].message}"
    )
    assert f"Scaled up replica set web-{pod_hash} from 0 to 6" in events


@needs_stack
@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "max_live", "min_ready"),
    [
        (6, "25%", "25%", 8, 5),
        (10, "25%", "25%", 13, 8),
        (6, 0, 1, 6, 5),
        (6, 3, 0, 9, 6),
        (10, "33%", "15%", 14, 9),
    ],
)
def test_rolling_update_keeps_its_bounds_at_every_moment(
    stack: EmbeddedCluster, kubectl: Kubectl, replicas: int, surge: Any, unavailable: Any, max_live: int, min_ready: int
) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", replicas, **rolling(surge, unavailable)))
    rollout_status(kubectl, "web")
    eventually(lambda: live_images(stack, "web") == ["nginx:1"] * replicas, what="the first rollout settled")
    census = PodCensus(stack.client, "web")
    try:
        kubectl("set", "image", "deployment/web", "app=nginx:2")
        rollout_status(kubectl, "web")
        eventually(lambda: live_images(stack, "web") == ["nginx:2"] * replicas, what="only new pods left")
    finally:
        census.stop()
    assert len(census.samples) > 3 * replicas, "the census followed the rollout"
    assert census.max_live <= max_live, f"more than replicas + maxSurge = {max_live} pods at once"
    assert census.min_ready >= min_ready, f"fewer than replicas - maxUnavailable = {min_ready} ready pods at once"
    status = get(stack, "Deployment", "web")["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (replicas,) * 3


@needs_stack
def test_recreate_never_runs_old_and_new_pods_together(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", 4, strategy={"type": "Recreate"}))
    rollout_status(kubectl, "web")
    census = PodCensus(stack.client, "web")
    try:
        kubectl("set", "image", "deployment/web", "app=nginx:2")
        rollout_status(kubectl, "web")
        eventually(lambda: live_images(stack, "web") == ["nginx:2"] * 4)
    finally:
        census.stop()
    assert all(len(images) <= 1 for _, _, images in census.samples), "old and new pods overlapped"
    assert any(not images for _, _, images in census.samples), "the old pods were all gone first"


@needs_stack
def test_history_and_undo(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", 3))
    rollout_status(kubectl, "web")
    for image in ("nginx:2", "nginx:3"):
        kubectl("set", "image", "deployment/web", f"app={image}")
        kubectl("annotate", "deployment/web", f"kubernetes.io/change-cause=image {image}", "--overwrite")
        rollout_status(kubectl, "web")
    history = kubectl("rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2", "3"], history
    assert "image nginx:3" in history
    assert "nginx:2" in kubectl("rollout", "history", "deployment/web", "--revision=2")

    assert "rolled back" in kubectl("rollout", "undo", "deployment/web")
    rollout_status(kubectl, "web")
    eventually(lambda: live_images(stack, "web") == ["nginx:2"] * 3, what="pods of revision 2")
    assert get(stack, "Deployment", "web")["metadata"]["annotations"][rollout.REVISION] == "4"
    history = kubectl("rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "3", "4"], history

    kubectl("rollout", "undo", "deployment/web", "--to-revision=1")
    rollout_status(kubectl, "web")
    eventually(lambda: live_images(stack, "web") == ["nginx:1"] * 3, what="pods of revision 1")
    first = next(
        rs for rs in replicasets(stack, "web") if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    )
    assert first["metadata"]["annotations"][rollout.REVISION] == "5"
    assert first["metadata"]["annotations"][rollout.REVISION_HISTORY] == "1"


@needs_stack
def test_a_stalled_rollout_exceeds_its_progress_deadline(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", 3, progressDeadlineSeconds=3))
    rollout_status(kubectl, "web")
    kubectl("set", "image", "deployment/web", "app=nginx:broken")
    proc = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s", check=False, timeout=90)
    assert proc.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in proc.stderr
    progressing = condition(stack, "web", "Progressing")
    new_rs = next(
        rs
        for rs in replicasets(stack, "web")
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:broken"
    )
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert progressing["message"] == f'ReplicaSet "{new_rs["metadata"]["name"]}" has timed out progressing.'
    assert condition(stack, "web", "Available")["status"] == "True", "the old pods still serve"
    assert live_images(stack, "web").count("nginx:1") == 3
    described = kubectl("describe", "deployment", "web")
    assert "ProgressDeadlineExceeded" in described


@needs_stack
def test_pause_holds_the_rollout_until_resume(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", 4))
    rollout_status(kubectl, "web")
    kubectl("rollout", "pause", "deployment/web")
    kubectl("set", "image", "deployment/web", "app=nginx:2")
    eventually(
        lambda: (
            (d := get(stack, "Deployment", "web"))["status"].get("observedGeneration") == d["metadata"]["generation"]
        ),
        what="the paused template change observed",
    )
    progressing = eventually(
        lambda: (
            condition(stack, "web", "Progressing").get("reason") == "DeploymentPaused"
            and condition(stack, "web", "Progressing")
        )
    )
    assert (progressing["status"], progressing["message"]) == ("Unknown", "Deployment is paused")
    assert len(replicasets(stack, "web")) == 1 and live_images(stack, "web") == ["nginx:1"] * 4
    kubectl("rollout", "resume", "deployment/web")
    rollout_status(kubectl, "web")
    eventually(lambda: live_images(stack, "web") == ["nginx:2"] * 4)
    assert condition(stack, "web", "Progressing")["reason"] == "NewReplicaSetAvailable"


@needs_stack
def test_scaling_and_proportional_scaling_mid_rollout(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", 6, **rolling(3, 2)))
    rollout_status(kubectl, "web")
    kubectl("scale", "deployment/web", "--replicas=3")
    eventually(lambda: live_images(stack, "web") == ["nginx:1"] * 3, what="scaled down to 3")
    kubectl("scale", "deployment/web", "--replicas=10")
    rollout_status(kubectl, "web")
    assert live_images(stack, "web") == ["nginx:1"] * 10
    # The documented example: stuck at 8 old + 5 new, scaled to 15: +3 old, +2 new.
    kubectl("set", "image", "deployment/web", "app=nginx:broken")
    eventually(lambda: rs_sizes(stack, "web") == {"nginx:1": 8, "nginx:broken": 5}, what="the rollout stuck at 8 + 5")
    kubectl("scale", "deployment/web", "--replicas=15")
    eventually(lambda: rs_sizes(stack, "web") == {"nginx:1": 11, "nginx:broken": 7}, what="15 + 3 shared 11 / 7")
    eventually(lambda: live_images(stack, "web").count("nginx:1") == 11, what="11 old pods")
    messages = kubectl(
        "get", "events", "--field-selector", "reason=ScalingReplicaSet", "-o", "jsonpath={.items[*].message}"
    )
    for change in ("from 6 to 3", "from 3 to 10", "from 8 to 11", "from 5 to 7"):
        assert change in messages, messages


@needs_stack
def test_old_replica_sets_beyond_the_history_limit_are_deleted(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", 2, revisionHistoryLimit=1))
    rollout_status(kubectl, "web")
    for image in ("nginx:2", "nginx:3"):
        kubectl("set", "image", "deployment/web", f"app={image}")
        rollout_status(kubectl, "web")
    eventually(lambda: rs_sizes(stack, "web") == {"nginx:2": 0, "nginx:3": 2}, what="only one old ReplicaSet kept")


@needs_stack
def test_adopts_a_matching_replica_set_instead_of_creating_one(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    """A ReplicaSet left behind (say by `kubectl delete --cascade=orphan`) with the same
    template is taken over with its pods: no new ReplicaSet, no pod restarted."""
    manifest = yaml.safe_load(deployment("web", 3))
    legacy = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "legacy", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": manifest["spec"]["template"]},
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump(legacy))
    eventually(lambda: len(live_images(stack, "web")) == 2, what="the orphan ReplicaSet's pods")
    before = {p["metadata"]["uid"] for p in stack.client.list("v1", "Pod", "default")["items"]}
    kubectl("apply", "-f", "-", input=deployment("web", 3))
    rollout_status(kubectl, "web")
    [rs] = replicasets(stack, "web")
    owner = rs["metadata"]["ownerReferences"][0]
    assert (rs["metadata"]["name"], owner["kind"], owner["name"], owner["controller"]) == (
        "legacy",
        "Deployment",
        "web",
        True,
    )
    assert rs["spec"]["replicas"] == 3 and rs["metadata"]["annotations"][rollout.REVISION] == "1"
    after = {p["metadata"]["uid"] for p in stack.client.list("v1", "Pod", "default")["items"]}
    assert before < after and len(after) == 3, "the two pods kept running, one was added"


@needs_stack
def test_min_ready_seconds_holds_availability_back(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment("web", 2, minReadySeconds=2))
    out = rollout_status(kubectl, "web")
    assert re.search(r'Waiting for deployment "web" rollout to finish: \d of 2 updated replicas are available', out), (
        out
    )
    [rs] = replicasets(stack, "web")
    assert rs["spec"]["minReadySeconds"] == 2
    pods = stack.client.list("v1", "Pod", "default", label_selector="app=web")["items"]
    ready_since = max(
        dt.datetime.fromisoformat((rollout.get_condition(p["status"], "Ready") or {})["lastTransitionTime"])
        for p in pods
    )
    available_since = dt.datetime.fromisoformat(condition(stack, "web", "Available")["lastTransitionTime"])
    assert (available_since - ready_since).total_seconds() >= 1, "available only after minReadySeconds of readiness"


@needs_stack
def test_a_new_template_mid_rollout_rolls_over(stack: EmbeddedCluster, kubectl: Kubectl) -> None:
    """Rollover: the half-done ReplicaSet is an old one now, and its pods go first."""
    kubectl("apply", "-f", "-", input=deployment("web", 4))
    rollout_status(kubectl, "web")
    kubectl("set", "image", "deployment/web", "app=nginx:broken")
    eventually(lambda: rs_sizes(stack, "web").get("nginx:broken", 0) > 0, what="the broken rollout under way")
    kubectl("set", "image", "deployment/web", "app=nginx:3")
    rollout_status(kubectl, "web")
    eventually(lambda: rs_sizes(stack, "web") == {"nginx:1": 0, "nginx:broken": 0, "nginx:3": 4})
    eventually(lambda: live_images(stack, "web") == ["nginx:3"] * 4, what="only the last template's pods")
    assert get(stack, "Deployment", "web")["metadata"]["annotations"][rollout.REVISION] == "3"
