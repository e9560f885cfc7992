"""Simulated nodes and the node lifecycle controller.

Two halves, as in Kubernetes:

- node agents (the node-facing half of each simulated kubelet): register the Node of
  every `ClusterConfig.nodes` entry, renew its Lease in `kube-node-lease` every
  `heartbeat_seconds`, and post the Ready condition;
- the node lifecycle controller (kube-controller-manager's): a node whose Lease goes
  unrenewed for `node_monitor_grace_seconds` turns Ready=Unknown and gets the
  `node.kubernetes.io/unreachable` taints; NoExecute taints evict the pods that do not
  tolerate them (at once, or after their tolerationSeconds); pods of a dead node are
  force-deleted, since no kubelet will finish them, so their controllers replace them.

A node is killed (heartbeat and kubelet both stop) and revived with `stop_node(name)` and
`start_node(name)` on the object `new()` returns (the cluster's
`manager.controllers["nodes"]`), or from kubectl with
`kubectl annotate node NAME gitops.dev/kubelet-stopped=true` (and `...-stopped-` to undo).
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import math
import time
import uuid

from controllers import errors
from controllers.clock import now_rfc3339
from controllers.manager import ClusterConfig, ControllerContext, NodeSpec
from controllers.runtime import Controller, Informer, Obj, Result
from controllers.workloads.common import parse_time, pod_condition, set_condition

STOPPED_ANNOTATION = "gitops.dev/kubelet-stopped"
LEASE_NAMESPACE = "kube-node-lease"
POD_NODE_INDEX = "nodeName"  # pods informer index: spec.nodeName -> pod keys

KUBELET_VERSION = "v1.32.0"
REGION = "local"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MANAGED_TAINTS = (NOT_READY, UNREACHABLE, UNSCHEDULABLE)
PRESSURE_CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)
WAKEUP_SLACK_SECONDS = 0.001  # a wake-up this close to when it was due is on time
STATUS_HEARTBEATS = 5  # the Ready condition's heartbeat is refreshed every 5 lease renewals


def pod_node_index(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


def pods_informer(ctx: ControllerContext) -> Informer:
    """The shared pods informer, indexed by spec.nodeName."""
    informer = ctx.informers.informer("v1", "Pod")
    informer.cache.add_index(POD_NODE_INDEX, pod_node_index)
    return informer


def is_stopped(node: Obj | None) -> bool:
    """Whether the simulated kubelet of `node` is switched off (a dead node)."""
    annotations = ((node or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(STOPPED_ANNOTATION, "").lower() == "true"


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def micro_time() -> str:
    """A MicroTime, as Lease.spec.renewTime is written."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------- node objects
class NodeLayout:
    """Addresses of the simulated nodes: node N (1-based) has InternalIP 172.18.0.(N+1) and
    pod CIDR 10.244.N.0/24 (a larger block for every node when any allows more pods)."""

    def __init__(self, specs: list[NodeSpec]) -> None:
        most = max((s.pods for s in specs), default=110)
        self.block = max(256, 2 ** math.ceil(math.log2(most + 3)))  # network, gateway, broadcast
        self.index = {s.name: i + 1 for i, s in enumerate(specs)}

    def internal_ip(self, name: str) -> str:
        return str(ipaddress.IPv4Address("172.18.0.1") + self.index[name])

    def pod_cidr(self, name: str) -> str:
        base = ipaddress.IPv4Address("10.244.0.0") + self.index[name] * self.block
        return str(ipaddress.IPv4Network(f"{base}/{32 - int(math.log2(self.block))}"))


def node_object(spec: NodeSpec, layout: NodeLayout) -> Obj:
    """The Node a kubelet registers for `spec`."""
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": f"sim.{spec.cpu}cpu-{spec.memory.lower()}",
        "topology.kubernetes.io/region": REGION,
    }
    if spec.zone:
        labels["topology.kubernetes.io/zone"] = spec.zone
    labels.update(spec.labels)
    now = now_rfc3339()
    taints = [dict(t) for t in spec.taints]
    for taint in taints:
        if taint.get("effect") == "NoExecute":
            taint.setdefault("timeAdded", now)
    resources = {"cpu": str(spec.cpu), "memory": str(spec.memory), "pods": str(spec.pods), "ephemeral-storage": "100Gi"}
    ids = uuid.uuid5(uuid.NAMESPACE_DNS, f"{spec.name}.nodes.gitops.dev")
    cidr = layout.pod_cidr(spec.name)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], **({"taints": taints} if taints else {})},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": layout.internal_ip(spec.name)},
                {"type": "Hostname", "address": spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": ids.hex,
                "systemUUID": str(ids),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": "6.8.0-gitops",
                "osImage": "gitops simulated node",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "conditions": healthy_conditions([], now),
        },
    }


def healthy_conditions(current: list[Obj], now: str) -> list[Obj]:
    """The conditions a live kubelet posts, keeping transition times that did not move."""
    out = current
    for ctype, reason, message in PRESSURE_CONDITIONS:
        out = set_condition(
            out,
            {"type": ctype, "status": "False", "reason": reason, "message": message, "lastHeartbeatTime": now},
            now,
        )
    return set_condition(
        out,
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now,
        },
        now,
    )


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration matches one taint (key, operator, value, effect)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    return operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_wait(pod: Obj, taints: list[Obj], now: dt.datetime) -> float | None:
    """Seconds until `pod` must leave a node with these NoExecute taints: 0 for a taint it
    does not tolerate, the shortest tolerationSeconds left otherwise, None for never."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    wait: float | None = None
    for taint in taints:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        bounded = [float(t["tolerationSeconds"]) for t in matching if t.get("tolerationSeconds") is not None]
        if not bounded:
            continue
        added = parse_time(taint.get("timeAdded")) or now
        left = max(0.0, (added - now).total_seconds() + min(bounded))
        wait = left if wait is None else min(wait, left)
    return wait


# ---------------------------------------------------------------------- node agents
class NodeAgents:
    """The node half of each simulated kubelet: registration, Lease renewal, Ready."""

    def __init__(self, ctx: ControllerContext, nodes: Informer) -> None:
        self.client = ctx.client
        self.config: ClusterConfig = ctx.config
        self.layout = NodeLayout(ctx.config.nodes)
        self.specs = {s.name: s for s in ctx.config.nodes}
        self.nodes = nodes
        self.ctx = ctx
        self._renewed: dict[str, float] = {}
        self.controller = Controller("node-agent", self.reconcile, workers=2)
        self.controller.watch(nodes, lambda n: [n["metadata"]["name"]] if n["metadata"]["name"] in self.specs else [])

    def start(self) -> None:
        self.controller.start()
        for name in self.specs:  # nodes that do not exist yet have no event to wake them
            self.controller.queue.add(name)

    def stop(self) -> None:
        self.controller.stop()

    def reconcile(self, name: str) -> Result | None:
        spec = self.specs.get(name)
        if spec is None:
            return None
        node = self.nodes.cache.get(name)
        if node is None:
            self._register(spec)
            return None  # the Node's ADDED event brings us back
        if is_stopped(node):
            self._renewed.pop(name, None)
            return None
        heartbeat = self.config.heartbeat_seconds
        now = time.monotonic()
        last = self._renewed.get(name)
        if last is None or now - last >= heartbeat - WAKEUP_SLACK_SECONDS:
            self._renew_lease(node)
            self._renewed[name] = last = now
        self._post_status(node)
        return Result(requeue_after=last + heartbeat - now)

    def _register(self, spec: NodeSpec) -> None:
        try:
            node = self.client.create(node_object(spec, self.layout), field_manager="kubelet")
        except errors.AlreadyExists:
            return
        rec = self.ctx.recorder("kubelet", spec.name)
        rec.event(node, "Normal", "Starting", "Starting kubelet.")
        rec.event(node, "Normal", "NodeReady", f"Node {spec.name} status is now: NodeReady")

    def _renew_lease(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": max(1, math.ceil(self.config.node_monitor_grace_seconds)),
                "renewTime": micro_time(),
            },
        }
        self.client.apply(lease, field_manager="kubelet", force=True)

    def _post_status(self, node: Obj) -> None:
        """Post Ready=True when it is not (a revived node), and refresh its heartbeat time
        every STATUS_HEARTBEATS renewals."""
        ready = pod_condition(node, "Ready")
        beat = parse_time((ready or {}).get("lastHeartbeatTime"))
        age = (dt.datetime.now(dt.UTC) - beat).total_seconds() if beat else math.inf
        was_ready = ready is not None and ready.get("status") == "True"
        if was_ready and age < self.config.heartbeat_seconds * STATUS_HEARTBEATS:
            return
        status = dict(node.get("status") or {})
        status["conditions"] = healthy_conditions(list(status.get("conditions") or []), now_rfc3339())
        meta = node["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": meta["name"], "resourceVersion": meta["resourceVersion"]},
            "status": status,
        }
        updated = self.client.update_status(body, field_manager="kubelet")
        if not was_ready:
            self.ctx.recorder("kubelet", meta["name"]).event(
                updated, "Normal", "NodeReady", f"Node {meta['name']} status is now: NodeReady"
            )


# ---------------------------------------------------------------------- node lifecycle
class NodeLifecycle:
    """kube-controller-manager's node lifecycle and taint-eviction controllers."""

    def __init__(self, ctx: ControllerContext, nodes: Informer, leases: Informer, pods: Informer) -> None:
        self.client = ctx.client
        self.grace = ctx.config.node_monitor_grace_seconds
        self.nodes, self.leases, self.pods = nodes, leases, pods
        self.events = ctx.recorder("node-controller")
        self.evictions = ctx.recorder("taint-eviction-controller")
        self._observed: dict[str, tuple[str, float]] = {}  # node -> (lease renewTime, when first seen)
        self.controller = Controller("node-lifecycle", self.reconcile, workers=2)
        self.controller.watch(nodes)
        self.controller.watch(leases, lambda lease: [lease["metadata"]["name"]])  # named after its node
        self.controller.watch(pods, self._tainted_node_of)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def _tainted_node_of(self, pod: Obj) -> list[str]:
        """Pods matter here only on nodes with NoExecute taints (eviction)."""
        name = (pod.get("spec") or {}).get("nodeName")
        node = self.nodes.cache.get(name) if name else None
        if node and any(t.get("effect") == "NoExecute" for t in (node.get("spec") or {}).get("taints") or []):
            return [name]  # type: ignore[list-item]
        return []

    def reconcile(self, name: str) -> Result | None:
        node = self.nodes.cache.get(name)
        if node is None:
            self._observed.pop(name, None)
            return None
        silent = self._silence(name)
        ready = pod_condition(node, "Ready")
        unknown = ready is None or ready.get("status") == "Unknown"
        if silent >= self.grace and not (ready is not None and unknown):
            node = self._mark_unknown(node)
            ready, unknown = pod_condition(node, "Ready"), True
        if ready is not None and unknown:
            self._mark_pods_not_ready(name)
        node = self._sync_taints(node, ready)
        waits = [self.grace - silent] if silent < self.grace else []
        evict_in = self._evict(node, dead=ready is not None and unknown)
        if evict_in is not None:
            waits.append(evict_in)
        return Result(requeue_after=min(waits)) if waits else None

    def _silence(self, name: str) -> float:
        """Seconds since this controller saw the node's Lease renewed (its own clock, as
        Kubernetes does, so a skewed kubelet clock cannot fake a heartbeat)."""
        lease = self.leases.cache.get(f"{LEASE_NAMESPACE}/{name}")
        renew = ((lease or {}).get("spec") or {}).get("renewTime") or ""
        now = time.monotonic()
        seen = self._observed.get(name)
        if seen is None or seen[0] != renew:
            seen = self._observed[name] = (renew, now)
        return now - seen[1]

    def _mark_unknown(self, node: Obj) -> Obj:
        name = node["metadata"]["name"]
        now = now_rfc3339()
        status = dict(node.get("status") or {})
        conditions = list(status.get("conditions") or [])
        message = "Kubelet stopped posting node status." if conditions else "Kubelet never posted node status."
        types = [c.get("type") for c in conditions if c.get("type") in {p[0] for p in PRESSURE_CONDITIONS}]
        for ctype in [*types, "Ready"]:
            cond = {"type": ctype, "status": "Unknown", "reason": "NodeStatusUnknown", "message": message}
            conditions = set_condition(conditions, cond, now)
        status["conditions"] = conditions
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "resourceVersion": node["metadata"]["resourceVersion"]},
            "status": status,
        }
        updated = self.client.update_status(body, field_manager="node-controller")
        self.events.event(updated, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        return updated

    def _mark_pods_not_ready(self, name: str) -> None:
        """Pods of an unreachable node stop being Ready, so Services stop sending them traffic."""
        for pod in self.pods.cache.by_index(POD_NODE_INDEX, name):
            ready = pod_condition(pod, "Ready")
            if is_terminal(pod) or pod["metadata"].get("deletionTimestamp") or not ready:
                continue
            if ready.get("status") != "True":
                continue
            status = dict(pod.get("status") or {})
            status["conditions"] = set_condition(list(status.get("conditions") or []), {**ready, "status": "False"})
            meta = pod["metadata"]
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "resourceVersion": meta["resourceVersion"],
                },
                "status": status,
            }
            try:
                self.client.update_status(body, field_manager="node-controller")
            except errors.NotFound:
                continue
            self.events.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    def _sync_taints(self, node: Obj, ready: Obj | None) -> Obj:
        """Taints follow the Ready condition and spec.unschedulable; other taints are kept,
        and NoExecute taints get the timeAdded their tolerationSeconds count from."""
        spec = node.get("spec") or {}
        now = now_rfc3339()
        wanted: list[tuple[str, str]] = []
        if ready is not None and ready.get("status") == "Unknown":
            wanted += [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
        elif ready is not None and ready.get("status") == "False":
            wanted += [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
        if spec.get("unschedulable"):
            wanted.append((UNSCHEDULABLE, "NoSchedule"))
        current = spec.get("taints") or []
        taints = [t for t in current if t.get("key") not in MANAGED_TAINTS]
        for key, effect in wanted:
            existing = next((t for t in current if t.get("key") == key and t.get("effect") == effect), None)
            taints.append(existing or {"key": key, "effect": effect, "timeAdded": now})
        taints = [
            {**t, "timeAdded": now} if t.get("effect") == "NoExecute" and not t.get("timeAdded") else t for t in taints
        ]
        if taints == current:
            return node
        updated = copy.deepcopy(node)
        if taints:
            updated["spec"]["taints"] = taints
        else:
            updated.get("spec", {}).pop("taints", None)
        return self.client.update(updated, field_manager="node-controller")

    def _evict(self, node: Obj, dead: bool) -> float | None:
        """Delete the pods NoExecute taints no longer allow; seconds until the next one."""
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return None
        name = node["metadata"]["name"]
        now = dt.datetime.now(dt.UTC)
        next_in: float | None = None
        for pod in self.pods.cache.by_index(POD_NODE_INDEX, name):
            deleting = bool(pod["metadata"].get("deletionTimestamp"))
            if is_terminal(pod) or (deleting and not dead):
                continue
            wait = 0.0 if deleting else eviction_wait(pod, taints, now)
            if wait is None:
                continue
            if wait > 0:
                next_in = wait if next_in is None else min(next_in, wait)
                continue
            self._delete(pod, force=dead, announce=not deleting)
        return next_in

    def _delete(self, pod: Obj, force: bool, announce: bool) -> None:
        """Evict one pod; on a dead node no kubelet will finish a graceful delete, so force it."""
        meta = pod["metadata"]
        if announce:
            self.evictions.event(
                pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {meta['namespace']}/{meta['name']}"
            )
        try:
            self.client.delete(
                "v1",
                "Pod",
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0 if force else None,
                precondition_uid=meta.get("uid"),
            )
        except (errors.NotFound, errors.Conflict):
            pass  # already gone, or replaced by a new pod of the same name


# ---------------------------------------------------------------------- the controller
class Nodes:
    """The simulated nodes and their lifecycle, started and stopped together."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        nodes = ctx.informers.informer("v1", "Node")
        leases = ctx.informers.informer("coordination.k8s.io/v1", "Lease", LEASE_NAMESPACE)
        self.agents = NodeAgents(ctx, nodes)
        self.lifecycle = NodeLifecycle(ctx, nodes, leases, pods_informer(ctx))

    def start(self) -> Nodes:
        self.agents.start()
        self.lifecycle.start()
        return self

    def stop(self) -> None:
        self.lifecycle.stop()
        self.agents.stop()

    def stop_node(self, name: str) -> None:
        """Kill a simulated node: its heartbeat and its kubelet stop until start_node."""
        self._annotate(name, "true")

    def start_node(self, name: str) -> None:
        """Revive a node stopped with stop_node: heartbeat and kubelet resume."""
        self._annotate(name, None)

    def _annotate(self, name: str, value: str | None) -> None:
        patch = {"metadata": {"annotations": {STOPPED_ANNOTATION: value}}}
        self.client.patch("v1", "Node", name, patch, field_manager="gitops")


def new(ctx: ControllerContext) -> Nodes:
    return Nodes(ctx)
