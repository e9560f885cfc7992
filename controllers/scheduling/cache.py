"""The scheduler's view of the cluster: every node with what its pods already request.

Built from the shared informers (nodes, and pods that have a node) and kept up to date
incrementally, so a scheduling cycle reads per-node totals instead of summing pods.
A pod the scheduler has just placed is "assumed" onto its node at once, before the
binding is even written, so the next pod already sees the room it takes; the informer
later confirms it (or the binding fails and it is forgotten)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from controllers.scheduling.podinfo import (
    CPU,
    EPHEMERAL,
    MEMORY,
    NO_EXECUTE,
    NO_SCHEDULE,
    PREFER_NO_SCHEDULE,
    Obj,
    PodInfo,
    Taint,
    parse_taints,
    resource_amounts,
)

ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"

# Cluster events, named as kube-scheduler names them: changes that may let a pod that
# no node fitted fit now. Each filter plugin lists the ones that can lift its rejections.
NODE_ADD, NODE_DELETE = "Node/Add", "Node/Delete"
NODE_ALLOCATABLE, NODE_LABEL, NODE_TAINT, NODE_UNSCHEDULABLE = (
    "Node/UpdateAllocatable",
    "Node/UpdateLabel",
    "Node/UpdateTaint",
    "Node/UpdateUnschedulable",
)
POD_ADD, POD_UPDATE, POD_DELETE = "AssignedPod/Add", "AssignedPod/Update", "AssignedPod/Delete"


class NodeInfo:
    """One node: its object's scheduling facts, and the sums over the pods placed on it."""

    __slots__ = (
        "name",
        "node",
        "labels",
        "taints",
        "unschedulable",
        "alloc",
        "alloc_cpu",
        "alloc_memory",
        "alloc_ephemeral",
        "alloc_pods",
        "alloc_scalar",
        "req_cpu",
        "req_memory",
        "req_ephemeral",
        "req_scalar",
        "nz_cpu",
        "nz_memory",
        "pods",
        "ports",
        "affinity_pods",
        "anti_affinity_pods",
        "memo",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: Obj | None = None  # None: pods point at a node the cache has not seen (yet)
        self.labels: dict[str, str] = {}
        self.taints: tuple[Taint, ...] = ()
        self.unschedulable = False
        self.alloc: dict[str, int] = {}
        self.alloc_cpu = self.alloc_memory = self.alloc_ephemeral = self.alloc_pods = 0
        self.alloc_scalar: dict[str, int] = {}
        self.req_cpu = self.req_memory = self.req_ephemeral = self.nz_cpu = self.nz_memory = 0
        self.req_scalar: dict[str, int] = {}
        self.pods: dict[str, PodInfo] = {}
        self.ports: dict[tuple[str, int], dict[str, int]] = {}  # (protocol, port) -> hostIP -> users
        self.affinity_pods: dict[str, PodInfo] = {}  # pods with any pod (anti-)affinity term
        self.anti_affinity_pods = 0  # pods with a required anti-affinity term
        # The framework's verdict for the last pod shape judged here; dropped by every
        # change that can alter a plugin's verdict.
        self.memo: Any = None

    def set_node(self, node: Obj) -> set[str]:
        """Read the node object; the NODE_* events this update amounts to."""
        spec, status = node.get("spec") or {}, node.get("status") or {}
        labels = (node.get("metadata") or {}).get("labels") or {}
        taints = parse_taints(spec.get("taints"))
        unschedulable = bool(spec.get("unschedulable"))
        # The API server defaults allocatable to capacity; read it the same way.
        alloc = resource_amounts(status.get("allocatable") or status.get("capacity"))
        changed = set()
        if alloc != self.alloc:
            changed.add(NODE_ALLOCATABLE)
        if labels != self.labels:
            changed.add(NODE_LABEL)
        if taints != self.taints:
            changed.add(NODE_TAINT)
        if unschedulable != self.unschedulable:
            changed.add(NODE_UNSCHEDULABLE)
        if changed:
            self.memo = None
        self.node, self.labels, self.taints, self.unschedulable = node, labels, taints, unschedulable
        self.alloc = alloc
        rest = dict(alloc)
        self.alloc_cpu = rest.pop(CPU, 0)
        self.alloc_memory = rest.pop(MEMORY, 0)
        self.alloc_ephemeral = rest.pop(EPHEMERAL, 0)
        self.alloc_pods = rest.pop("pods", 0)
        self.alloc_scalar = rest
        return changed

    def add_pod(self, pod: PodInfo) -> None:
        self._account(pod, 1)
        self.pods[pod.key] = pod
        for ip, proto, port in pod.ports:
            users = self.ports.setdefault((proto, port), {})
            users[ip] = users.get(ip, 0) + 1
        if pod.has_affinity:
            self.affinity_pods[pod.key] = pod
        if pod.required_anti_affinity:
            self.anti_affinity_pods += 1

    def remove_pod(self, pod: PodInfo) -> None:
        self._account(pod, -1)
        self.pods.pop(pod.key, None)
        for ip, proto, port in pod.ports:
            users = self.ports.get((proto, port), {})
            users[ip] = users.get(ip, 1) - 1
            if users[ip] <= 0:
                del users[ip]
            if not users:
                self.ports.pop((proto, port), None)
        self.affinity_pods.pop(pod.key, None)
        if pod.required_anti_affinity:
            self.anti_affinity_pods -= 1

    def _account(self, pod: PodInfo, sign: int) -> None:
        self.memo = None
        self.req_cpu += sign * pod.cpu
        self.req_memory += sign * pod.memory
        self.req_ephemeral += sign * pod.ephemeral
        self.nz_cpu += sign * pod.nz_cpu
        self.nz_memory += sign * pod.nz_memory
        for name, amount in pod.scalar.items():
            self.req_scalar[name] = self.req_scalar.get(name, 0) + sign * amount

    def has_taint_effect(self, *effects: str) -> bool:
        return any(t[2] in effects for t in self.taints)


class Cache:
    """Nodes and the pods assigned (or assumed) to them. Callers hold `lock` around a
    scheduling cycle; informer handlers take it for each change."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.nodes: dict[str, NodeInfo] = {}
        self._order: list[NodeInfo] = []
        self._order_dirty = False
        self._pods: dict[str, tuple[PodInfo, str]] = {}  # key -> (pod, node name)
        self._assumed: set[str] = set()
        # Cluster-wide counts that let a plugin skip a cycle when nothing can concern it.
        self.unschedulable_nodes = 0
        self.no_schedule_nodes = 0  # nodes with a NoSchedule or NoExecute taint
        self.prefer_no_schedule_nodes = 0
        self.affinity_pods = 0
        self.anti_affinity_pods = 0

    # -- nodes ---------------------------------------------------------------------------
    def set_node(self, node: Obj) -> set[str] | None:
        """Add or update a node; None when it is new, else what changed."""
        name = str((node.get("metadata") or {}).get("name") or "")
        with self.lock:
            info = self.nodes.get(name)
            is_new = info is None or info.node is None
            if info is None:
                info = self.nodes[name] = NodeInfo(name)
            else:
                self._count_node(info, -1)
            changed = info.set_node(node)
            self._count_node(info, 1)
            if is_new or NODE_LABEL in changed:
                self._order_dirty = True
            return None if is_new else changed

    def remove_node(self, name: str) -> None:
        with self.lock:
            info = self.nodes.get(name)
            if info is None or info.node is None:
                return
            self._count_node(info, -1)
            info.node = None
            if not info.pods:
                del self.nodes[name]
            self._order_dirty = True

    def _count_node(self, info: NodeInfo, sign: int) -> None:
        if info.node is None:
            return
        self.unschedulable_nodes += sign * info.unschedulable
        self.no_schedule_nodes += sign * info.has_taint_effect(NO_SCHEDULE, NO_EXECUTE)
        self.prefer_no_schedule_nodes += sign * info.has_taint_effect(PREFER_NO_SCHEDULE)

    def node_list(self) -> list[NodeInfo]:
        """The nodes in the order a cycle visits them: zone by zone in turn, as
        kube-scheduler's node tree does, so that sampling a part of a big cluster still
        sees every zone."""
        with self.lock:
            if self._order_dirty:
                self._order = _interleave_zones(i for i in self.nodes.values() if i.node is not None)
                self._order_dirty = False
            return self._order

    # -- pods ----------------------------------------------------------------------------
    def set_pod(self, pod: Obj) -> str | None:
        """Add or update an assigned pod: POD_ADD for a new one (or an assumed one now
        confirmed), POD_UPDATE when its labels changed, else None."""
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        with self.lock:
            current = self._pods.get(key)
            if current is not None:
                info, on = current
                if on == node_name and info.uid == meta.get("uid"):
                    confirmed = key in self._assumed
                    self._assumed.discard(key)
                    relabeled = info.labels != (meta.get("labels") or {})
                    info.refresh(pod)
                    return POD_ADD if confirmed else POD_UPDATE if relabeled else None
                self._remove(key)
            self._add(PodInfo(pod), node_name)
            return POD_ADD

    def remove_pod(self, key: str) -> bool:
        with self.lock:
            return self._remove(key)

    def assume(self, pod: PodInfo, node_name: str) -> None:
        """Place a pod on a node before its binding is written."""
        with self.lock:
            self._add(pod, node_name)
            self._assumed.add(pod.key)

    def forget(self, key: str) -> None:
        """Undo `assume` when the binding failed."""
        with self.lock:
            if key in self._assumed:
                self._remove(key)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def has_pod(self, key: str) -> bool:
        return key in self._pods

    def _add(self, pod: PodInfo, node_name: str) -> None:
        if pod.key in self._pods:
            self._remove(pod.key)
        info = self.nodes.get(node_name)
        if info is None:
            info = self.nodes[node_name] = NodeInfo(node_name)
        info.add_pod(pod)
        self._pods[pod.key] = (pod, node_name)
        self.affinity_pods += pod.has_affinity
        self.anti_affinity_pods += bool(pod.required_anti_affinity)

    def _remove(self, key: str) -> bool:
        current = self._pods.pop(key, None)
        self._assumed.discard(key)
        if current is None:
            return False
        pod, node_name = current
        info = self.nodes.get(node_name)
        if info is not None:
            info.remove_pod(pod)
            if info.node is None and not info.pods:
                del self.nodes[node_name]
        self.affinity_pods -= pod.has_affinity
        self.anti_affinity_pods -= bool(pod.required_anti_affinity)
        return True


def _interleave_zones(infos: Iterable[NodeInfo]) -> list[NodeInfo]:
    zones: dict[tuple[str, str], list[NodeInfo]] = {}
    for info in infos:
        zones.setdefault((info.labels.get(REGION_LABEL, ""), info.labels.get(ZONE_LABEL, "")), []).append(info)
    lists = list(zones.values())
    out: list[NodeInfo] = []
    for i in range(max((len(lst) for lst in lists), default=0)):
        out.extend(lst[i] for lst in lists if i < len(lst))
    return out
