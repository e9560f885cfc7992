"""The scheduler, seen from outside: pods get spec.nodeName (or a PodScheduled=False
condition and a FailedScheduling event in kube-scheduler's words) on a cluster that runs
only the scheduler, with Node objects created by the tests."""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controllers.client import Client, RemoteClient
from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig, ControllerContext
from controllers.runtime import InformerFactory
from controllers.scheduler import Scheduler, binder_for
from tests.conftest import Kubectl, eventually

Obj = dict[str, Any]
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def start_cluster(scoring: str = "LeastAllocated") -> EmbeddedCluster:
    return EmbeddedCluster(
        None, api_port=0, config=ClusterConfig(scheduler_scoring=scoring), controllers=["scheduler"]
    ).start()


@pytest.fixture
def cluster() -> Iterator[EmbeddedCluster]:
    c = start_cluster()
    try:
        yield c
    finally:
        c.stop()


def add_node(
    cluster: EmbeddedCluster,
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: int = 110,
    zone: str = "zone-a",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
) -> Obj:
    resources = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    node = cluster.client.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone, **(labels or {})},
            },
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"capacity": resources, "allocatable": resources},
        }
    )
    if cluster.manager is not None:
        # Pods and nodes come through separate watches: pods created next must not be
        # placed before the scheduler knows every node the test meant them to see.
        cache = scheduler_of(cluster).cache
        eventually(lambda: name in cache.nodes and cache.nodes[name].node is not None)
    return node


def scheduler_of(cluster: EmbeddedCluster) -> Scheduler:
    assert cluster.manager is not None
    scheduler = cluster.manager.controllers["scheduler"]
    assert isinstance(scheduler, Scheduler)
    return scheduler


def add_pod(
    client: Client,
    name: str,
    cpu: str | None = None,
    memory: str | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: Obj = {"name": "app", "image": "registry.k8s.io/pause:3.10"}
    if requests:
        container["resources"] = {"requests": requests}
    return client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"containers": [container], **spec},
        }
    )


def node_of(client: Client, pod: str) -> str | None:
    return client.get("v1", "Pod", pod, "default")["spec"].get("nodeName")


def wait_scheduled(client: Client, *pods: str) -> list[str]:
    """The nodes the pods land on, in order."""
    return [eventually(functools.partial(node_of, client, p)) for p in pods]


def unschedulable(client: Client, pod: str, expected: str, exact: bool = True) -> None:
    """Wait until the pod's PodScheduled=False/Unschedulable message is `expected` (or
    starts with it): the first attempts may have seen fewer nodes than the test made."""
    seen: list[str] = []

    def matches() -> bool:
        for cond in client.get("v1", "Pod", pod, "default")["status"].get("conditions") or []:
            if cond["type"] == "PodScheduled" and cond["status"] == "False" and cond.get("reason") == "Unschedulable":
                seen.append(cond["message"])
                return bool(cond["message"] == expected or (not exact and cond["message"].startswith(expected)))
        return False

    try:
        eventually(matches)
    except AssertionError:
        raise AssertionError(f"{pod}: wanted {expected!r}, last saw {seen[-1:]}") from None


def events_of(client: Client, pod: str, reason: str) -> list[Obj]:
    return [
        e
        for e in client.list("v1", "Event", "default")["items"]
        if e["involvedObject"]["name"] == pod and e["reason"] == reason
    ]


def no_fit(nodes: int, reasons: str, preemption: str) -> str:
    return f"0/{nodes} nodes are available: {reasons}. preemption: 0/{nodes} nodes are available: {preemption}.."


# ----------------------------------------------------------------------------- resources


def test_requests_must_fit_what_the_node_has_left(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1", cpu="2", memory="1Gi")
    add_pod(client, "too-much-cpu", cpu="3")
    add_pod(client, "too-much-memory", memory="2Gi")
    add_pod(client, "fits", cpu="1500m", memory="512Mi")
    assert wait_scheduled(client, "fits") == ["node-1"]
    unschedulable(
        client, "too-much-cpu", no_fit(1, "1 Insufficient cpu", "1 No preemption victims found for incoming pod")
    )
    unschedulable(client, "too-much-memory", "0/1 nodes are available: 1 Insufficient memory.", exact=False)
    # What `fits` holds counts at once: 600m no longer fits next to its 1500m.
    add_pod(client, "second", cpu="600m")
    unschedulable(client, "second", "0/1 nodes are available: 1 Insufficient cpu.", exact=False)


def test_the_node_pod_capacity_is_a_limit(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1", pods=2)
    for name in ("a", "b", "c"):
        add_pod(client, name)
    eventually(lambda: sum(1 for p in "abc" if node_of(client, p)) == 2)
    pending = next(p for p in "abc" if node_of(client, p) is None)
    unschedulable(client, pending, no_fit(1, "1 Too many pods", "1 No preemption victims found for incoming pod"))


def test_an_init_container_holds_its_peak_not_the_sum(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1", cpu="2")
    init = [{"name": "migrate", "image": "busybox", "resources": {"requests": {"cpu": "1500m"}}}]
    app = {"name": "app", "image": "busybox", "resources": {"requests": {"cpu": "500m"}}}
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "with-init", "namespace": "default"},
            "spec": {"initContainers": init, "containers": [app, {**app, "name": "sidecar"}]},
        }
    )
    assert wait_scheduled(client, "with-init") == ["node-1"]
    add_pod(client, "small", cpu="500m")  # 1500m (the init peak, not 2500m) + 500m = 2
    assert wait_scheduled(client, "small") == ["node-1"]
    add_pod(client, "one-more", cpu="1m")
    unschedulable(client, "one-more", "0/1 nodes are available: 1 Insufficient cpu.", exact=False)


def test_deleting_a_pod_makes_room_for_a_waiting_one(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1", cpu="1")
    add_pod(client, "first", cpu="1")
    wait_scheduled(client, "first")
    add_pod(client, "waiting", cpu="1")
    unschedulable(client, "waiting", "0/1 nodes are available: 1 Insufficient cpu.", exact=False)
    client.delete("v1", "Pod", "first", "default", grace_period_seconds=0)
    assert wait_scheduled(client, "waiting") == ["node-1"]


# ----------------------------------------------------------------------------- node affinity


def test_node_selector_and_required_node_affinity(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "ssd-1", labels={"disk": "ssd", "gpus": "2"})
    add_node(cluster, "ssd-2", labels={"disk": "ssd", "gpus": "8"})
    add_node(cluster, "hdd-1", labels={"disk": "hdd"})
    add_pod(client, "wants-ssd", nodeSelector={"disk": "ssd"})

    def required(*exprs: Obj, fields: list[Obj] | None = None) -> Obj:
        term: Obj = {"matchExpressions": list(exprs)}
        if fields:
            term["matchFields"] = fields
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}

    add_pod(client, "many-gpus", affinity=required({"key": "gpus", "operator": "Gt", "values": ["4"]}))
    add_pod(
        client,
        "no-gpu-label",
        affinity=required(
            {"key": "gpus", "operator": "DoesNotExist"}, {"key": "disk", "operator": "NotIn", "values": ["ssd"]}
        ),
    )
    add_pod(
        client,
        "by-name",
        affinity=required(fields=[{"key": "metadata.name", "operator": "In", "values": ["ssd-1"]}]),
    )
    add_pod(client, "nowhere", nodeSelector={"disk": "nvme"})
    assert wait_scheduled(client, "many-gpus", "no-gpu-label", "by-name") == ["ssd-2", "hdd-1", "ssd-1"]
    assert wait_scheduled(client, "wants-ssd")[0] in ("ssd-1", "ssd-2")
    unschedulable(
        client,
        "nowhere",
        no_fit(3, "3 node(s) didn't match Pod's node affinity/selector", "3 Preemption is not helpful for scheduling"),
    )


def test_preferred_node_affinity_wins_over_spreading(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    for i, zone in enumerate(("zone-a", "zone-b", "zone-c")):
        add_node(cluster, f"node-{i}", zone=zone)
    preferred = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {
                        "matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-b"]}
                        ]
                    },
                }
            ]
        }
    }
    for i in range(3):
        add_pod(client, f"p{i}", cpu="100m", affinity=preferred)
    assert wait_scheduled(client, "p0", "p1", "p2") == ["node-1"] * 3


# ----------------------------------------------------------------------------- taints


def test_taints_keep_out_pods_that_do_not_tolerate_them(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "gpu-1", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    add_node(cluster, "draining", taints=[{"key": "maintenance", "effect": "NoExecute"}])
    add_node(cluster, "cordoned", unschedulable=True)
    add_pod(client, "plain")
    tolerant = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    add_pod(client, "gpu-job", tolerations=tolerant)
    assert wait_scheduled(client, "gpu-job") == ["gpu-1"]
    unschedulable(
        client,
        "plain",
        no_fit(
            3,
            "1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {maintenance: }, "
            "1 node(s) were unschedulable",
            "3 Preemption is not helpful for scheduling",
        ),
    )


def test_prefer_no_schedule_taints_only_lower_the_score(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "preferred-not", taints=[{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}])
    add_node(cluster, "plain", cpu="2")  # fuller sooner, yet still preferred
    for i in range(3):
        add_pod(client, f"p{i}", cpu="500m")
    assert wait_scheduled(client, "p0", "p1", "p2") == ["plain"] * 3
    add_pod(client, "big", cpu="1")  # no room left on `plain`: the taint does not forbid
    assert wait_scheduled(client, "big") == ["preferred-not"]


# ----------------------------------------------------------------------------- ports


def test_a_host_port_is_taken_once_per_node(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1")
    add_node(cluster, "node-2")
    ports = [{"containerPort": 80, "hostPort": 8080}]
    for name in ("a", "b", "c"):
        client.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": ports}]},
            }
        )
    eventually(lambda: sum(1 for p in "abc" if node_of(client, p)) == 2)
    assert {node_of(client, p) for p in "abc"} == {"node-1", "node-2", None}
    pending = next(p for p in "abc" if node_of(client, p) is None)
    unschedulable(
        client,
        pending,
        no_fit(
            2,
            "2 node(s) didn't have free ports for the requested pod ports",
            "2 No preemption victims found for incoming pod",
        ),
    )


# ----------------------------------------------------------------------------- spreading


def test_topology_spread_evens_pods_over_zones(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    # zone-a is huge, so LeastAllocated alone would put every pod there.
    add_node(cluster, "big-a", cpu="64", memory="256Gi", zone="zone-a")
    add_node(cluster, "small-b", zone="zone-b")
    add_node(cluster, "small-c", zone="zone-c")
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ]
    names = [f"web-{i}" for i in range(6)]
    for name in names:
        add_pod(client, name, cpu="100m", labels={"app": "web"}, topologySpreadConstraints=spread)
    assert Counter(wait_scheduled(client, *names)) == {"big-a": 2, "small-b": 2, "small-c": 2}


def test_min_domains_counts_missing_zones_as_empty(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-a", zone="zone-a")
    add_node(cluster, "node-b", zone="zone-b")
    spread = [
        {
            "maxSkew": 1,
            "minDomains": 3,  # a third zone is expected: until it exists, each zone holds one pod
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "quorum"}},
        }
    ]
    for i in range(3):
        add_pod(client, f"q{i}", labels={"app": "quorum"}, topologySpreadConstraints=spread)
    eventually(lambda: sum(1 for i in range(3) if node_of(client, f"q{i}")) == 2)
    pending = next(f"q{i}" for i in range(3) if node_of(client, f"q{i}") is None)
    unschedulable(
        client,
        pending,
        no_fit(
            2,
            "2 node(s) didn't match pod topology spread constraints",
            "2 No preemption victims found for incoming pod",
        ),
    )
    add_node(cluster, "node-c", zone="zone-c")
    assert wait_scheduled(client, pending) == ["node-c"]


def test_pods_of_a_service_spread_over_nodes_by_default(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "big", cpu="64", memory="256Gi", zone="zone-a")
    add_node(cluster, "small-1", zone="zone-b")
    add_node(cluster, "small-2", zone="zone-c")
    # Not selected by anything: the roomiest node takes them all.
    loners = [f"loner-{i}" for i in range(3)]
    for name in loners:
        add_pod(client, name, cpu="100m", labels={"app": "loner"})
    assert wait_scheduled(client, *loners) == ["big"] * 3
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]},
        }
    )
    time.sleep(0.5)  # let the scheduler's Service informer see it before the pods come
    names = [f"api-{i}" for i in range(6)]
    for name in names:
        add_pod(client, name, cpu="100m", labels={"app": "api"})
    assert Counter(wait_scheduled(client, *names)) == {"big": 2, "small-1": 2, "small-2": 2}


# ----------------------------------------------------------------------------- pod affinity


def anti_affinity(app: str) -> Obj:
    term = {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def test_required_anti_affinity_puts_one_pod_per_node(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    for i in range(3):
        add_node(cluster, f"node-{i}")
    names = [f"db-{i}" for i in range(4)]
    for name in names[:3]:
        add_pod(client, name, labels={"app": "db"}, affinity=anti_affinity("db"))
    assert sorted(wait_scheduled(client, *names[:3])) == ["node-0", "node-1", "node-2"]
    add_pod(client, names[3], labels={"app": "db"}, affinity=anti_affinity("db"))
    unschedulable(
        client,
        names[3],
        no_fit(3, "3 node(s) didn't match pod anti-affinity rules", "3 No preemption victims found for incoming pod"),
    )
    # The other direction: an existing pod's anti-affinity keeps a matching newcomer away.
    add_pod(client, "noisy", labels={"app": "db"}, nodeSelector={"kubernetes.io/hostname": "node-0"})
    unschedulable(
        client,
        "noisy",
        "0/3 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules, "
        "2 node(s) didn't match Pod's node affinity/selector.",
        exact=False,
    )


def test_required_pod_affinity_follows_the_pod(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    for i in range(3):
        add_node(cluster, f"node-{i}")
    affinity = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    }
    add_pod(client, "web-early", labels={"app": "web"}, affinity=affinity)
    unschedulable(
        client, "web-early", "0/3 nodes are available: 3 node(s) didn't match pod affinity rules.", exact=False
    )
    add_pod(client, "cache", labels={"app": "cache"}, nodeSelector={"kubernetes.io/hostname": "node-2"})
    add_pod(client, "web", labels={"app": "web"}, affinity=affinity)
    assert wait_scheduled(client, "cache", "web", "web-early") == ["node-2"] * 3


def test_preferred_pod_affinity_outweighs_free_room(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1")
    add_node(cluster, "node-2")
    add_pod(client, "cache", cpu="2", labels={"app": "cache"}, nodeSelector={"kubernetes.io/hostname": "node-1"})
    wait_scheduled(client, "cache")
    near_cache = {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "cache"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    add_pod(client, "web", cpu="100m", affinity=near_cache)
    add_pod(client, "other", cpu="100m")  # no preference: the emptier node
    assert wait_scheduled(client, "web", "other") == ["node-1", "node-2"]


# ----------------------------------------------------------------------------- scoring strategy


@pytest.mark.parametrize(("scoring", "spread"), [("LeastAllocated", 3), ("MostAllocated", 1)])
def test_least_allocated_spreads_and_most_allocated_packs(scoring: str, spread: int) -> None:
    cluster = start_cluster(scoring)
    try:
        client = cluster.client
        for i in range(3):
            add_node(cluster, f"node-{i}")
        names = [f"p{i}" for i in range(3)]
        for name in names:
            add_pod(client, name, cpu="1", memory="2Gi")  # the same share of both: balance is moot
            wait_scheduled(client, name)
        assert len(set(wait_scheduled(client, *names))) == spread
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------- unschedulable


def test_unschedulable_pod_explained_then_placed_when_a_node_fits(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    client = cluster.client
    add_node(cluster, "control-plane", taints=[CONTROL_PLANE_TAINT])
    add_node(cluster, "node-2", cpu="1")
    add_node(cluster, "node-3", cpu="1")
    add_pod(client, "big", cpu="2")
    expected = no_fit(
        3,
        "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu",
        "1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod",
    )
    unschedulable(client, "big", expected)
    failed = eventually(lambda: [e for e in events_of(client, "big", "FailedScheduling") if e["message"] == expected])
    assert (failed[0]["type"], failed[0]["source"]["component"]) == ("Warning", "default-scheduler")

    kubectl = Kubectl(cluster.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    condition = kubectl("get", "pod", "big", "-o", "jsonpath={.status.conditions[?(@.type=='PodScheduled')].message}")
    assert condition == expected
    events = kubectl("describe", "pod", "big").split("Events:")[1]
    assert "Warning  FailedScheduling" in events and f"default-scheduler  {expected}" in events

    add_node(cluster, "node-4", cpu="4")  # retried on the node event, not after a minute
    assert wait_scheduled(client, "big") == ["node-4"]
    scheduled = eventually(lambda: events_of(client, "big", "Scheduled"))
    assert scheduled[0]["message"] == "Successfully assigned default/big to node-4"
    pod = client.get("v1", "Pod", "big", "default")
    assert [c["status"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"] == ["True"]


def test_an_uncordoned_node_takes_the_waiting_pod(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1", unschedulable=True)
    add_pod(client, "waiting")
    unschedulable(
        client, "waiting", no_fit(1, "1 node(s) were unschedulable", "1 Preemption is not helpful for scheduling")
    )
    node = client.get("v1", "Node", "node-1")
    node["spec"]["unschedulable"] = False
    client.update(node)
    assert wait_scheduled(client, "waiting") == ["node-1"]


def test_higher_priority_pods_get_freed_room_first(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    client.create(
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000}
    )
    add_node(cluster, "node-1", cpu="1")
    add_pod(client, "filler", cpu="1")
    wait_scheduled(client, "filler")
    add_pod(client, "low", cpu="1")
    # spec.priority spelled out: the API server does not resolve priorityClassName (yet).
    add_pod(client, "high", cpu="1", priorityClassName="high", priority=1000)
    unschedulable(client, "low", "0/1 nodes are available: 1 Insufficient cpu.", exact=False)
    unschedulable(client, "high", "0/1 nodes are available: 1 Insufficient cpu.", exact=False)
    time.sleep(2)  # both past their 1 s back-off: the next retry order is by priority alone
    client.delete("v1", "Pod", "filler", "default", grace_period_seconds=0)
    assert wait_scheduled(client, "high") == ["node-1"]
    assert node_of(client, "low") is None


def test_pods_for_another_scheduler_are_left_alone(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    add_node(cluster, "node-1")
    add_pod(client, "custom", schedulerName="my-scheduler")
    add_pod(client, "default-one")
    wait_scheduled(client, "default-one")
    pod = client.get("v1", "Pod", "custom", "default")
    assert pod["spec"].get("nodeName") is None
    assert not [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    assert not events_of(client, "custom", "FailedScheduling")


def test_binding_over_http(tmp_path: Path) -> None:
    """Against an API server reached through a kubeconfig, pods are bound by POSTing to
    their pods/NAME/binding subresource."""
    bare = EmbeddedCluster(None, api_port=0).start()
    try:
        remote = RemoteClient.from_kubeconfig(str(bare.write_kubeconfig(tmp_path / "kubeconfig")))
        ctx = ControllerContext(bare.client, InformerFactory(bare.client), ClusterConfig())
        scheduler = Scheduler(ctx, binder_for(remote))
        ctx.informers.start()
        scheduler.start()
        try:
            add_node(bare, "node-1")
            add_pod(bare.client, "p")
            assert wait_scheduled(bare.client, "p") == ["node-1"]
            assert eventually(lambda: events_of(bare.client, "p", "Scheduled"))
        finally:
            scheduler.stop()
            ctx.informers.stop()
            ctx.stop_recorders()
    finally:
        bare.stop()
