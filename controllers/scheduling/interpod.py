"""The plugins that judge a node by the pods around it, counted per topology domain
(a node, a zone, any node label): PodTopologySpread and InterPodAffinity."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from controllers.scheduling.cache import (
    NODE_ADD,
    NODE_DELETE,
    NODE_LABEL,
    NODE_TAINT,
    POD_ADD,
    POD_DELETE,
    POD_UPDATE,
    ZONE_LABEL,
    Cache,
    NodeInfo,
)
from controllers.scheduling.framework import MAX_NODE_SCORE, Listers, Rejection
from controllers.scheduling.podinfo import (
    NO_EXECUTE,
    NO_SCHEDULE,
    AffinityTerm,
    NamespaceLabels,
    Obj,
    PodInfo,
    first_untolerated,
)
from controllers.selectors import EQUALS, LabelSelector, Requirement, label_selector_from_dict

HOSTNAME_LABEL = "kubernetes.io/hostname"
DO_NOT_SCHEDULE, SCHEDULE_ANYWAY = "DoNotSchedule", "ScheduleAnyway"
HONOR = "Honor"
HARD_POD_AFFINITY_WEIGHT = 1


class SpreadConstraint:
    """A topologySpreadConstraint, its selector parsed (matchLabelKeys folded in)."""

    __slots__ = ("max_skew", "topology_key", "selector", "min_domains", "honor_affinity", "honor_taints")

    def __init__(
        self,
        max_skew: int,
        topology_key: str,
        selector: LabelSelector,
        min_domains: int = 1,
        honor_affinity: bool = True,
        honor_taints: bool = False,
    ) -> None:
        self.max_skew, self.topology_key, self.selector = max_skew, topology_key, selector
        self.min_domains, self.honor_affinity, self.honor_taints = min_domains, honor_affinity, honor_taints

    @classmethod
    def from_spec(cls, c: Obj, pod_labels: dict[str, str]) -> SpreadConstraint:
        selector = label_selector_from_dict(c.get("labelSelector"))
        keys = [k for k in c.get("matchLabelKeys") or [] if k in pod_labels]
        if keys:
            own = [Requirement(k, EQUALS, (pod_labels[k],)) for k in keys]
            selector = LabelSelector([*selector.requirements, *own])
        return cls(
            int(c.get("maxSkew") or 1),
            str(c.get("topologyKey") or ""),
            selector,
            int(c.get("minDomains") or 1),
            (c.get("nodeAffinityPolicy") or HONOR) == HONOR,
            c.get("nodeTaintsPolicy") == HONOR,
        )

    def includes(self, pod: PodInfo, node: NodeInfo) -> bool:
        """Whether the node's domain counts at all (nodeAffinityPolicy, nodeTaintsPolicy)."""
        required = pod.node_affinity
        if self.honor_affinity and required is not None and not required.matches(node.labels, node.name):
            return False
        return not (self.honor_taints and first_untolerated(node.taints, pod.tolerations, (NO_SCHEDULE, NO_EXECUTE)))

    def count(self, node: NodeInfo, namespace: str) -> int:
        """Pods on the node that the constraint counts (terminating pods do not)."""
        selector = self.selector
        if selector.empty:
            return 0
        return sum(
            1 for p in node.pods.values() if p.namespace == namespace and not p.deleting and selector.matches(p.labels)
        )


class _SpreadState:
    __slots__ = ("constraints", "counts", "minimums", "self_match")

    def __init__(self, constraints: list[SpreadConstraint], counts: list[dict[str, int]], pod: PodInfo) -> None:
        self.constraints, self.counts = constraints, counts
        # Fewer domains than minDomains: the global minimum counts as 0.
        self.minimums = [
            min(cnt.values()) if len(cnt) >= c.min_domains else 0 for c, cnt in zip(constraints, counts, strict=True)
        ]
        self.self_match = [int(c.selector.matches(pod.labels)) for c in constraints]


class PodTopologySpread:
    """topologySpreadConstraints: DoNotSchedule constraints filter nodes whose domain
    would exceed maxSkew over the least populated domain; ScheduleAnyway constraints, or
    kube-scheduler's defaults for pods of a Service/ReplicaSet/StatefulSet (by hostname
    with maxSkew 3, by zone with maxSkew 5), score emptier domains higher."""

    name = "PodTopologySpread"
    events = frozenset({NODE_ADD, NODE_DELETE, NODE_LABEL, NODE_TAINT, POD_ADD, POD_UPDATE, POD_DELETE})
    local_filter = local_score = False
    _SKEWED = Rejection(name, ("node(s) didn't match pod topology spread constraints",))
    _NO_LABEL = Rejection(
        name, ("node(s) didn't match pod topology spread constraints (missing required label)",), unresolvable=True
    )

    def __init__(self, listers: Listers) -> None:
        self.listers = listers

    def constraints(self, pod: PodInfo, action: str) -> tuple[list[SpreadConstraint], bool]:
        """The pod's constraints for `action`, and whether they come from its spec."""
        if pod.spread_constraints:
            chosen = [c for c in pod.spread_constraints if (c.get("whenUnsatisfiable") or DO_NOT_SCHEDULE) == action]
            return [SpreadConstraint.from_spec(c, pod.labels) for c in chosen], True
        if action != SCHEDULE_ANYWAY:
            return [], False
        selector = self.listers.default_selector(pod)
        if selector.empty:
            return [], False
        return [SpreadConstraint(3, HOSTNAME_LABEL, selector), SpreadConstraint(5, ZONE_LABEL, selector)], False

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        constraints, _ = self.constraints(pod, DO_NOT_SCHEDULE)
        if not constraints:
            return None
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in cache.node_list():
            if not all(c.topology_key in node.labels for c in constraints):
                continue
            for c, domain_counts in zip(constraints, counts, strict=True):
                if c.includes(pod, node):
                    value = node.labels[c.topology_key]
                    domain_counts[value] = domain_counts.get(value, 0) + c.count(node, pod.namespace)
        return _SpreadState(constraints, counts, pod)

    def filter(self, state: _SpreadState, pod: PodInfo, node: NodeInfo) -> Rejection | None:
        rows = zip(state.constraints, state.counts, state.minimums, state.self_match, strict=True)
        for c, counts, minimum, own in rows:
            value = node.labels.get(c.topology_key)
            if value is None:
                return self._NO_LABEL
            if counts.get(value, 0) + own - minimum > c.max_skew:
                return self._SKEWED
        return None

    def score(self, pod: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int] | None:
        constraints, require_all = self.constraints(pod, SCHEDULE_ANYWAY)
        if not constraints:
            return None
        # With the pod's own constraints a node lacking a topology key is not scored;
        # the defaults let such nodes (no zone label) still spread by hostname.
        ignored = {n.name for n in nodes if require_all and not _has_keys(n, constraints)}
        scored = [n for n in nodes if n.name not in ignored]
        counts = self._domain_counts(pod, constraints, scored, cache.node_list(), require_all)
        weights = [
            # Log of the number of domains, so that a few big domains do not drown many small ones.
            math.log((len(scored) if c.topology_key == HOSTNAME_LABEL else len(cnt)) + 2)
            for c, cnt in zip(constraints, counts, strict=True)
        ]
        raw: list[int | None] = []
        for node in nodes:
            if node.name in ignored:
                raw.append(None)
                continue
            total = 0.0
            for c, domain_counts, weight in zip(constraints, counts, weights, strict=True):
                domain = node.labels.get(c.topology_key)
                if domain is not None:
                    n = c.count(node, pod.namespace) if c.topology_key == HOSTNAME_LABEL else domain_counts[domain]
                    total += n * weight + (c.max_skew - 1)
            raw.append(math.floor(total + 0.5))
        return _normalize_fewer_is_better(raw)

    @staticmethod
    def _domain_counts(
        pod: PodInfo,
        constraints: list[SpreadConstraint],
        scored: list[NodeInfo],
        every_node: list[NodeInfo],
        require_all: bool,
    ) -> list[dict[str, int]]:
        """Matching pods per domain of the scored nodes, counted over every node (per-node
        counts for hostname constraints are taken when scoring)."""
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in scored:
            for c, domain_counts in zip(constraints, counts, strict=True):
                if c.topology_key != HOSTNAME_LABEL:
                    domain_counts.setdefault(node.labels.get(c.topology_key, ""), 0)
        for node in every_node:
            if require_all and not _has_keys(node, constraints):
                continue
            for c, domain_counts in zip(constraints, counts, strict=True):
                domain = node.labels.get(c.topology_key, "")
                if domain in domain_counts and c.topology_key != HOSTNAME_LABEL and c.includes(pod, node):
                    domain_counts[domain] += c.count(node, pod.namespace)
        return counts


def _has_keys(node: NodeInfo, constraints: Iterable[SpreadConstraint]) -> bool:
    return all(c.topology_key in node.labels for c in constraints)


def _normalize_fewer_is_better(raw: list[int | None]) -> list[int]:
    """PodTopologySpread's normalization: the least crowded node gets 100; ignored (None) 0."""
    valid = [r for r in raw if r is not None]
    low, high = min(valid, default=0), max(valid, default=0)
    return [0 if r is None else MAX_NODE_SCORE if high == 0 else MAX_NODE_SCORE * (high + low - r) // high for r in raw]


class _AffinityState:
    __slots__ = ("affinity", "anti_affinity", "existing_anti_affinity")

    def __init__(self) -> None:
        self.affinity: dict[tuple[str, str], int] = {}  # domains with pods matching all affinity terms
        self.anti_affinity: dict[tuple[str, str], int] = {}  # domains with pods the pod must avoid
        self.existing_anti_affinity: dict[tuple[str, str], int] = {}  # domains whose pods avoid this pod


class InterPodAffinity:
    """Required pod affinity (the node's domain must hold a matching pod, except for the
    first of a group of pods that match themselves), required anti-affinity in both
    directions (the pod's own terms, and existing pods' terms against it); preferred terms
    (and existing pods' preferences and requirements about this pod) in scoring."""

    name = "InterPodAffinity"
    events = frozenset({NODE_ADD, NODE_LABEL, POD_ADD, POD_UPDATE, POD_DELETE})
    local_filter = local_score = False
    _AFFINITY = Rejection(name, ("node(s) didn't match pod affinity rules",), unresolvable=True)
    _ANTI_AFFINITY = Rejection(name, ("node(s) didn't match pod anti-affinity rules",))
    _EXISTING = Rejection(name, ("node(s) didn't satisfy existing pods anti-affinity rules",))

    def __init__(self, listers: Listers) -> None:
        self.listers = listers

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        own_terms = pod.required_affinity or pod.required_anti_affinity
        if not own_terms and not cache.anti_affinity_pods:
            return None
        ns_labels = self.listers.namespace_labels
        state = _AffinityState()
        for node in cache.node_list():
            labels = node.labels
            if node.anti_affinity_pods:
                for other in node.affinity_pods.values():
                    for t in other.required_anti_affinity:
                        if t.topology_key in labels and t.matches(pod, ns_labels):
                            _bump(state.existing_anti_affinity, (t.topology_key, labels[t.topology_key]))
            if not own_terms:
                continue
            for other in node.pods.values():
                if pod.required_affinity and all(t.matches(other, ns_labels) for t in pod.required_affinity):
                    for t in pod.required_affinity:
                        if t.topology_key in labels:
                            _bump(state.affinity, (t.topology_key, labels[t.topology_key]))
                for t in pod.required_anti_affinity:
                    if t.topology_key in labels and t.matches(other, ns_labels):
                        _bump(state.anti_affinity, (t.topology_key, labels[t.topology_key]))
        return state

    def filter(self, state: _AffinityState, pod: PodInfo, node: NodeInfo) -> Rejection | None:
        labels = node.labels
        if pod.required_affinity and not self._affinity_satisfied(state, pod, labels):
            return self._AFFINITY
        for t in pod.required_anti_affinity:
            value = labels.get(t.topology_key)
            if value is not None and state.anti_affinity.get((t.topology_key, value), 0) > 0:
                return self._ANTI_AFFINITY
        if state.existing_anti_affinity:
            for pair in labels.items():
                if state.existing_anti_affinity.get(pair, 0) > 0:
                    return self._EXISTING
        return None

    def _affinity_satisfied(self, state: _AffinityState, pod: PodInfo, labels: dict[str, str]) -> bool:
        found = True
        for t in pod.required_affinity:
            value = labels.get(t.topology_key)
            if value is None:
                return False
            if state.affinity.get((t.topology_key, value), 0) <= 0:
                found = False
        if found:
            return True
        # The first pod of a group that should run together: nothing matches anywhere yet,
        # and it matches its own terms, so it may go anywhere the keys exist.
        ns_labels = self.listers.namespace_labels
        return not state.affinity and all(t.matches(pod, ns_labels) for t in pod.required_affinity)

    def score(self, pod: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int] | None:
        own = pod.preferred_affinity or pod.preferred_anti_affinity
        if not own and not cache.affinity_pods:
            return None
        ns_labels = self.listers.namespace_labels
        domains: dict[tuple[str, str], int] = {}
        for node in cache.node_list():
            others = node.pods if own else node.affinity_pods
            for other in others.values():
                for terms, subject, sign in (
                    (pod.preferred_affinity, other, 1),
                    (pod.preferred_anti_affinity, other, -1),
                    (other.preferred_affinity, pod, 1),
                    (other.preferred_anti_affinity, pod, -1),
                ):
                    _weigh(domains, terms, subject, node, sign, ns_labels)
                if node.labels:
                    _weigh(domains, other.required_affinity, pod, node, 1, ns_labels, HARD_POD_AFFINITY_WEIGHT)
        if not domains:
            return None
        raw = [sum(domains.get(pair, 0) for pair in n.labels.items()) for n in nodes]
        low, high = min(raw), max(raw)
        if high == low:
            return [0] * len(raw)
        return [int(MAX_NODE_SCORE * (r - low) / (high - low)) for r in raw]


def _bump(counts: dict[tuple[str, str], int], pair: tuple[str, str]) -> None:
    counts[pair] = counts.get(pair, 0) + 1


def _weigh(
    domains: dict[tuple[str, str], int],
    terms: Iterable[AffinityTerm],
    subject: PodInfo,
    node: NodeInfo,
    sign: int,
    ns_labels: NamespaceLabels,
    weight: int | None = None,
) -> None:
    """Add each term's weight to the domain of `node` when `subject` matches the term."""
    for t in terms:
        value = node.labels.get(t.topology_key)
        if value is not None and t.matches(subject, ns_labels):
            pair = (t.topology_key, value)
            domains[pair] = domains.get(pair, 0) + sign * (t.weight if weight is None else weight)
