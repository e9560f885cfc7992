"""One scheduling cycle, as kube-scheduler's framework runs it: filter, then score.

Filter plugins each get a `prefilter` look at the pod (returning the state their filter
needs, or None when the pod gives them nothing to check, so they are skipped for every
node), then every node is checked plugin by plugin until one rejects it. Like
kube-scheduler, a cycle stops once it has found enough feasible nodes (all of them in a
small cluster; 50 - nodes/125 percent, at least 5 % and 100 nodes, in a big one),
starting where the previous cycle stopped so that every node gets its turn. Score
plugins then rate the feasible nodes 0-100 each; the weighted sum picks the node, ties
broken at random. When no node fits, the rejections are summed up in kube-scheduler's
words: "0/3 nodes are available: 1 node(s) had untolerated taint {...}, 2 Insufficient cpu."
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from itertools import chain, islice
from typing import Any, NamedTuple, Protocol

from controllers.scheduling.cache import Cache, NodeInfo
from controllers.scheduling.podinfo import PodInfo
from controllers.selectors import LabelSelector

MAX_NODE_SCORE = 100
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


class Rejection(NamedTuple):
    """Why a plugin rejected a node. `unresolvable`: evicting pods could not help (the
    node's labels, taints or spec are the problem), which the preemption part of the
    message reports."""

    plugin: str
    reasons: tuple[str, ...]
    unresolvable: bool = False


class Listers(Protocol):
    """What plugins read about objects other than nodes and pods."""

    def namespace_labels(self, namespace: str) -> Mapping[str, str]: ...

    def default_selector(self, pod: PodInfo) -> LabelSelector:
        """The pods of the pod's Services and owning ReplicaSet/StatefulSet/RC (for the
        default topology spreading); an empty selector when nothing selects it."""
        ...


class FilterPlugin(Protocol):
    name: str
    events: frozenset[str]  # what may make a pod it rejected fit
    # Judges a node by that node alone and only reads the pod's `shape` fields, so its
    # verdict can be reused for the next pod of the same shape while the node is unchanged.
    local_filter: bool

    def prefilter(self, pod: PodInfo, cache: Cache) -> Any:
        """The state `filter` needs for this pod, or None when there is nothing to check."""
        ...

    def filter(self, state: Any, pod: PodInfo, node: NodeInfo) -> Rejection | None: ...


class ScorePlugin(Protocol):
    name: str
    # Scores a node by that node alone (no normalization across nodes), reading only the
    # pod's `shape` fields: its score is reused like a node-local filter's verdict.
    local_score: bool

    def score(self, pod: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int] | None:
        """Normalized scores (0-100) for `nodes`, or None when the plugin has nothing to
        say about this pod (the same score for every node would not change the choice)."""
        ...


class FitError(Exception):
    """No node fits the pod."""

    def __init__(self, pod: PodInfo, num_nodes: int, rejections: Mapping[str, Rejection]) -> None:
        self.pod = pod
        self.num_nodes = num_nodes
        self.rejections = rejections
        super().__init__(self.message)

    @property
    def plugins(self) -> frozenset[str]:
        """The plugins that rejected nodes: only events they care about retry the pod."""
        return frozenset(r.plugin for r in self.rejections.values())

    @property
    def message(self) -> str:
        """kube-scheduler's message, reasons counted over nodes and sorted as strings.

        Preemption is not implemented; its part of the message says what kube-scheduler
        says when no lower-priority pod could make room."""
        text = f"0/{self.num_nodes} nodes are available:"
        reasons = _histogram(reason for r in self.rejections.values() for reason in r.reasons)
        if reasons:
            text += f" {reasons}."
        return f"{text} preemption: {self._preemption()}."

    def _preemption(self) -> str:
        if self.pod.preempt_never:
            return "not eligible due to preemptionPolicy=Never."
        helps = _histogram(NOT_HELPFUL if r.unresolvable else NO_VICTIMS for r in self.rejections.values())
        return f"0/{self.num_nodes} nodes are available: {helps}."


class NoNodesAvailable(Exception):
    def __init__(self) -> None:
        super().__init__("no nodes available to schedule pods")


def _histogram(reasons: Iterable[str]) -> str:
    return ", ".join(sorted(f"{n} {reason}" for reason, n in Counter(reasons).items()))


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes a cycle looks for (kube-scheduler's percentageOfNodesToScore;
    0 means adaptive)."""
    if num_nodes < MIN_FEASIBLE_NODES:
        return num_nodes
    if percentage <= 0:
        percentage = max(50 - num_nodes // 125, MIN_FEASIBLE_PERCENTAGE)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES)


class Framework:
    """Runs the plugins for one pod at a time. The caller holds `cache.lock`.

    The verdicts of node-local plugins are memoized on each node for the last pod shape
    judged there (until the node changes): a stream of pods from one template is judged
    against the few nodes that changed, not against hundreds each time."""

    def __init__(
        self,
        cache: Cache,
        filters: list[FilterPlugin],
        scorers: list[tuple[ScorePlugin, int]],
        percentage_of_nodes_to_score: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        flags = [p.local_filter for p in filters]
        if flags != sorted(flags, reverse=True):
            raise ValueError("node-local filter plugins must come before the others")
        self.cache = cache
        self.filters = filters
        self.scorers = scorers
        self.percentage = percentage_of_nodes_to_score
        self._rng = rng or random.Random()  # noqa: S311 - tie-breaking, not security
        self._next_start = 0
        self._shapes: dict[tuple[Any, ...], int] = {}
        self._last_shape = 0
        self._by_event: dict[str, set[str]] = {}
        for p in filters:
            for event in p.events:
                self._by_event.setdefault(event, set()).add(p.name)

    def plugins_for(self, events: Collection[str]) -> frozenset[str]:
        """The filter plugins whose rejections these cluster events may lift."""
        return frozenset().union(*(self._by_event.get(e, ()) for e in events))

    def schedule(self, pod: PodInfo) -> NodeInfo:
        nodes = self.cache.node_list()
        if not nodes:
            raise NoNodesAvailable()
        feasible, scores, rejections = self._feasible(pod, nodes)
        if not feasible:
            raise FitError(pod, len(nodes), rejections)
        if len(feasible) == 1:
            return feasible[0]
        return self._best(pod, feasible, scores)

    def _shape_id(self, pod: PodInfo) -> int:
        """A small number per pod shape; never reused, so a stale memo cannot match."""
        shape_id = self._shapes.get(pod.shape)
        if shape_id is None:
            if len(self._shapes) > 10_000:
                self._shapes.clear()  # forget old templates
            self._last_shape += 1
            shape_id = self._shapes[pod.shape] = self._last_shape
        return shape_id

    def _feasible(self, pod: PodInfo, nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[int], dict[str, Rejection]]:
        """The first feasible nodes from where the last cycle stopped, with the weighted
        sum of their node-local scores, and why the others were rejected."""
        checks = [(p, state) for p in self.filters if (state := p.prefilter(pod, self.cache)) is not None]
        local = [(p.filter, state) for p, state in checks if p.local_filter]
        others = [(p.filter, state) for p, state in checks if not p.local_filter]
        shape = self._shape_id(pod)
        left = num_feasible_nodes_to_find(len(nodes), self.percentage)
        start = self._next_start if self._next_start < len(nodes) else 0
        feasible: list[NodeInfo] = []
        scores: list[int] = []
        rejections: dict[str, Rejection] = {}
        processed = 0
        for processed, node in enumerate(chain(islice(nodes, start, None), islice(nodes, start)), 1):  # noqa: B007
            memo = node.memo
            if memo is None or memo[0] != shape:
                memo = node.memo = (shape, *self._judge(pod, node, local))
            rejection = memo[1]
            if rejection is None and others:
                rejection = self._check(others, pod, node)
            if rejection is not None:
                rejections[node.name] = rejection
                continue
            feasible.append(node)
            scores.append(memo[2])
            left -= 1
            if not left:
                break
        self._next_start = (start + processed) % len(nodes)
        return feasible, scores, rejections

    @staticmethod
    def _check(checks: list[tuple[Any, Any]], pod: PodInfo, node: NodeInfo) -> Rejection | None:
        for check, state in checks:
            rejection = check(state, pod, node)
            if rejection is not None:
                return rejection
        return None

    def _judge(self, pod: PodInfo, node: NodeInfo, local: list[tuple[Any, Any]]) -> tuple[Rejection | None, int]:
        """The node-local plugins' verdict on a node: a rejection, or their weighted score."""
        rejection = self._check(local, pod, node)
        if rejection is not None:
            return rejection, 0
        score = 0
        for plugin, weight in self.scorers:
            if plugin.local_score:
                scores = plugin.score(pod, [node], self.cache)
                score += weight * scores[0] if scores else 0
        return None, score

    def _best(self, pod: PodInfo, nodes: list[NodeInfo], totals: list[int]) -> NodeInfo:
        for plugin, weight in self.scorers:
            if not plugin.local_score:
                scores = plugin.score(pod, nodes, self.cache)
                if scores is not None:
                    totals = [t + weight * s for t, s in zip(totals, scores, strict=True)]
        best = max(totals)
        index = totals.index(best)
        for _ in range(self._rng.randrange(totals.count(best))):  # a random one of the ties
            index = totals.index(best, index + 1)
        return nodes[index]


def default_normalize(scores: list[int], reverse: bool = False) -> list[int]:
    """kube-scheduler's DefaultNormalizeScore: scale to 0-100 by the maximum (reversed:
    100 minus that, so fewer is better)."""
    top = max(scores, default=0)
    if top == 0:
        return [MAX_NODE_SCORE if reverse else 0] * len(scores)
    if reverse:
        return [MAX_NODE_SCORE - MAX_NODE_SCORE * s // top for s in scores]
    return [MAX_NODE_SCORE * s // top for s in scores]
