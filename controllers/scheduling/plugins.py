"""The plugins that judge a node by itself: its spec, labels, taints, ports and room.

Reasons are worded exactly as kube-scheduler's, since users read them in
`kubectl describe pod` and search for them."""

from __future__ import annotations

from typing import Any

from controllers.scheduling.cache import (
    NODE_ADD,
    NODE_ALLOCATABLE,
    NODE_LABEL,
    NODE_TAINT,
    NODE_UNSCHEDULABLE,
    POD_DELETE,
    Cache,
    NodeInfo,
)
from controllers.scheduling.framework import MAX_NODE_SCORE, Rejection, default_normalize
from controllers.scheduling.podinfo import (
    ANY_IP,
    NO_EXECUTE,
    NO_SCHEDULE,
    PREFER_NO_SCHEDULE,
    UNSCHEDULABLE_TAINT,
    PodInfo,
    RequiredNodeAffinity,
    Toleration,
    first_untolerated,
    tolerates,
)

LEAST_ALLOCATED, MOST_ALLOCATED = "LeastAllocated", "MostAllocated"


class NodeUnschedulable:
    """Cordoned nodes (spec.unschedulable) take no new pods, unless the pod tolerates the
    node.kubernetes.io/unschedulable:NoSchedule taint (as DaemonSet pods do)."""

    name = "NodeUnschedulable"
    events = frozenset({NODE_ADD, NODE_UNSCHEDULABLE})
    local_filter = True
    _REJECTED = Rejection(name, ("node(s) were unschedulable",), unresolvable=True)

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        if not cache.unschedulable_nodes or tolerates(pod.tolerations, (UNSCHEDULABLE_TAINT, "", NO_SCHEDULE)):
            return None
        return True

    def filter(self, state: Any, pod: PodInfo, node: NodeInfo) -> Rejection | None:
        return self._REJECTED if node.unschedulable else None


class TaintToleration:
    """NoSchedule and NoExecute taints keep out pods that do not tolerate them; nodes with
    untolerated PreferNoSchedule taints score lower."""

    name = "TaintToleration"
    events = frozenset({NODE_ADD, NODE_TAINT})
    local_filter, local_score = True, False

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        return pod.tolerations if cache.no_schedule_nodes else None

    def filter(self, state: tuple[Toleration, ...], pod: PodInfo, node: NodeInfo) -> Rejection | None:
        taint = first_untolerated(node.taints, state, (NO_SCHEDULE, NO_EXECUTE))
        if taint is None:
            return None
        return Rejection(self.name, (f"node(s) had untolerated taint {{{taint[0]}: {taint[1]}}}",), unresolvable=True)

    def score(self, pod: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int] | None:
        if not cache.prefer_no_schedule_nodes:
            return None
        tolerations = [t for t in pod.tolerations if t[3] in ("", PREFER_NO_SCHEDULE)]
        counts = [
            sum(1 for taint in n.taints if taint[2] == PREFER_NO_SCHEDULE and not tolerates(tolerations, taint))
            for n in nodes
        ]
        return default_normalize(counts, reverse=True)


class NodeAffinity:
    """spec.nodeSelector and required node affinity must match the node's labels (and
    name, for matchFields); preferred terms add their weight to the score."""

    name = "NodeAffinity"
    events = frozenset({NODE_ADD, NODE_LABEL})
    local_filter, local_score = True, False
    _REJECTED = Rejection(name, ("node(s) didn't match Pod's node affinity/selector",), unresolvable=True)

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        return pod.node_affinity

    def filter(self, state: RequiredNodeAffinity, pod: PodInfo, node: NodeInfo) -> Rejection | None:
        return None if state.matches(node.labels, node.name) else self._REJECTED

    def score(self, pod: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int] | None:
        terms = pod.preferred_node_terms
        if not terms:
            return None
        return default_normalize([sum(w for w, t in terms if t.matches(n.labels, n.name)) for n in nodes])


class NodePorts:
    """A hostPort can be bound once per node, protocol and address (0.0.0.0 means all)."""

    name = "NodePorts"
    events = frozenset({NODE_ADD, POD_DELETE})
    local_filter = True
    _REJECTED = Rejection(name, ("node(s) didn't have free ports for the requested pod ports",))

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        return pod.ports or None

    def filter(self, state: Any, pod: PodInfo, node: NodeInfo) -> Rejection | None:
        for ip, protocol, port in pod.ports:
            users = node.ports.get((protocol, port))
            if users and (ip == ANY_IP or ANY_IP in users or ip in users):
                return self._REJECTED
        return None


class NodeResourcesFit:
    """The pod's requests must fit in what the node's pods leave of its allocatable, and
    the node must have a pod slot left. Scoring prefers the emptiest nodes (LeastAllocated,
    spreading load) or the fullest (MostAllocated, bin packing), by cpu and memory, counting
    pods without requests at 100m cpu / 200Mi memory."""

    name = "NodeResourcesFit"
    events = frozenset({NODE_ADD, NODE_ALLOCATABLE, POD_DELETE})
    local_filter = local_score = True

    def __init__(self, strategy: str = LEAST_ALLOCATED) -> None:
        if strategy not in (LEAST_ALLOCATED, MOST_ALLOCATED):
            raise ValueError(f"scheduler scoring strategy {strategy!r}: use {LEAST_ALLOCATED} or {MOST_ALLOCATED}")
        self.strategy = strategy

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        return True

    def filter(self, state: Any, pod: PodInfo, node: NodeInfo) -> Rejection | None:
        if (
            len(node.pods) < node.alloc_pods
            and pod.cpu <= node.alloc_cpu - node.req_cpu
            and pod.memory <= node.alloc_memory - node.req_memory
            and pod.ephemeral <= node.alloc_ephemeral - node.req_ephemeral
            and not pod.scalar
        ):
            return None
        reasons = self.insufficient(pod, node)
        return Rejection(self.name, reasons) if reasons else None

    @staticmethod
    def insufficient(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
        """Every resource that does not fit, in kube-scheduler's order and words."""
        reasons = []
        if len(node.pods) + 1 > node.alloc_pods:
            reasons.append("Too many pods")
        if pod.cpu > 0 and pod.cpu > node.alloc_cpu - node.req_cpu:
            reasons.append("Insufficient cpu")
        if pod.memory > 0 and pod.memory > node.alloc_memory - node.req_memory:
            reasons.append("Insufficient memory")
        if pod.ephemeral > 0 and pod.ephemeral > node.alloc_ephemeral - node.req_ephemeral:
            reasons.append("Insufficient ephemeral-storage")
        for name, amount in sorted(pod.scalar.items()):
            if amount > 0 and amount > node.alloc_scalar.get(name, 0) - node.req_scalar.get(name, 0):
                reasons.append(f"Insufficient {name}")
        return tuple(reasons)

    def score(self, pod: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int] | None:
        cpu, memory = pod.nz_cpu, pod.nz_memory
        fn = _least_allocated if self.strategy == LEAST_ALLOCATED else _most_allocated
        return [fn(n.nz_cpu + cpu, n.alloc_cpu, n.nz_memory + memory, n.alloc_memory) for n in nodes]


class BalancedAllocation:
    """Prefers nodes whose cpu and memory would be used in equal shares (by requests)."""

    name = "NodeResourcesBalancedAllocation"
    local_score = True

    def score(self, pod: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int] | None:
        cpu, memory = pod.cpu, pod.memory
        return [_balanced(n.req_cpu + cpu, n.alloc_cpu, n.req_memory + memory, n.alloc_memory) for n in nodes]


def _least_allocated(cpu: int, cpu_alloc: int, memory: int, memory_alloc: int) -> int:
    """The mean free share of cpu and memory after placing the pod, 0-100 (resources the
    node does not have are left out)."""
    total = weights = 0
    if cpu_alloc:
        total += (cpu_alloc - cpu) * MAX_NODE_SCORE // cpu_alloc if cpu <= cpu_alloc else 0
        weights += 1
    if memory_alloc:
        total += (memory_alloc - memory) * MAX_NODE_SCORE // memory_alloc if memory <= memory_alloc else 0
        weights += 1
    return total // weights if weights else 0


def _most_allocated(cpu: int, cpu_alloc: int, memory: int, memory_alloc: int) -> int:
    """The mean used share of cpu and memory after placing the pod, 0-100."""
    total = weights = 0
    if cpu_alloc:
        total += min(cpu, cpu_alloc) * MAX_NODE_SCORE // cpu_alloc
        weights += 1
    if memory_alloc:
        total += min(memory, memory_alloc) * MAX_NODE_SCORE // memory_alloc
        weights += 1
    return total // weights if weights else 0


def _balanced(cpu: int, cpu_alloc: int, memory: int, memory_alloc: int) -> int:
    """100 × (1 - the standard deviation of the cpu and memory shares)."""
    if not cpu_alloc or not memory_alloc:
        return MAX_NODE_SCORE
    spread = abs(min(cpu / cpu_alloc, 1.0) - min(memory / memory_alloc, 1.0)) / 2
    return int((1 - spread) * MAX_NODE_SCORE)
