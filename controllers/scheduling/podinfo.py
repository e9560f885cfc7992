"""What the scheduler needs to know about a pod, read from its manifest once.

Scheduling one pod asks the same questions of hundreds of nodes (how much does it
request, which taints does it tolerate, which node labels must match), and every node
sums up the pods assigned to it; so the answers are parsed from the JSON once into a
`PodInfo`, never per node and never per scheduling attempt of another pod."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from controllers import errors
from controllers.quantity import parse_quantity
from controllers.selectors import (
    DOES_NOT_EXIST,
    EXISTS,
    GT,
    IN,
    LT,
    NOT_IN,
    LabelSelector,
    Requirement,
    label_selector_from_dict,
    new_requirement,
)

Obj = dict[str, Any]
NamespaceLabels = Callable[[str], Mapping[str, str]]

# What scoring assumes for a container that does not say (kube-scheduler's defaults), so
# that pods without requests still spread instead of piling onto one node.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024

CPU, MEMORY, EPHEMERAL = "cpu", "memory", "ephemeral-storage"
NO_SCHEDULE, NO_EXECUTE, PREFER_NO_SCHEDULE = "NoSchedule", "NoExecute", "PreferNoSchedule"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
ANY_IP = "0.0.0.0"  # noqa: S104 - a host port bound on every address, not a listener here

_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST, "Gt": GT, "Lt": LT}


@functools.lru_cache(maxsize=4096)
def milli_value(quantity: str | int | float) -> int:
    """`resource.Quantity.MilliValue()`: thousandths, rounded up ("100m" -> 100, "1" -> 1000)."""
    return math.ceil(parse_quantity(quantity) * 1000)


@functools.lru_cache(maxsize=4096)
def whole_value(quantity: str | int | float) -> int:
    """`resource.Quantity.Value()`: units, rounded up ("64Mi" -> 67108864)."""
    return math.ceil(parse_quantity(quantity))


def is_scalar_resource(name: str) -> bool:
    """Extended resources (`vendor/name`) and hugepages are counted like cpu; anything
    else the scheduler does not know about is ignored, as kube-scheduler does."""
    return "/" in name or name.startswith("hugepages-")


def resource_amounts(resources: Mapping[str, Any] | None) -> dict[str, int]:
    """A ResourceList as integers: cpu in millicores, everything else in units."""
    out: dict[str, int] = {}
    for name, quantity in (resources or {}).items():
        if name == CPU:
            out[name] = milli_value(quantity)
        elif name in (MEMORY, EPHEMERAL, "pods") or is_scalar_resource(name):
            out[name] = whole_value(quantity)
    return out


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        into[name] = into.get(name, 0) + amount


def _max_into(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        if amount > into.get(name, 0):
            into[name] = amount


def _container_requests(container: Obj, non_zero: bool) -> dict[str, int]:
    reqs = resource_amounts((container.get("resources") or {}).get("requests"))
    reqs.pop("pods", None)
    if non_zero:
        reqs.setdefault(CPU, DEFAULT_MILLI_CPU)
        reqs.setdefault(MEMORY, DEFAULT_MEMORY)
    return reqs


def pod_requests(spec: Obj, non_zero: bool = False) -> dict[str, int]:
    """What a pod occupies on its node: the sum of its containers, or the largest init
    container if that is bigger (they run one at a time; sidecar init containers with
    restartPolicy Always keep running, so they add up), plus the pod overhead.

    `non_zero` fills in the scoring defaults for containers that request no cpu/memory."""
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add(total, _container_requests(c, non_zero))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        reqs = _container_requests(c, non_zero)
        if c.get("restartPolicy") == "Always":
            _add(total, reqs)
            _add(sidecars, reqs)
            reqs = dict(sidecars)
        else:
            _add(reqs, sidecars)
        _max_into(init_peak, reqs)
    _max_into(total, init_peak)
    _add(total, {k: v for k, v in resource_amounts(spec.get("overhead")).items() if k != "pods"})
    return total


# ------------------------------------------------------------------------------ tolerations

Toleration = tuple[str, str, str, str]  # key, operator, value, effect
Taint = tuple[str, str, str]  # key, value, effect


def parse_tolerations(items: Iterable[Obj] | None) -> tuple[Toleration, ...]:
    return tuple(
        (_text(t, "key"), _text(t, "operator") or "Equal", _text(t, "value"), _text(t, "effect")) for t in items or ()
    )


def parse_taints(items: Iterable[Obj] | None) -> tuple[Taint, ...]:
    return tuple((_text(t, "key"), _text(t, "value"), _text(t, "effect")) for t in items or ())


def _text(obj: Obj, field: str) -> str:
    return str(obj.get(field) or "")


def tolerates(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    """Whether any toleration matches the taint (an empty key with Exists matches all keys,
    an empty effect matches all effects)."""
    key, value, effect = taint
    for t_key, operator, t_value, t_effect in tolerations:
        if t_effect and t_effect != effect:
            continue
        if t_key and t_key != key:
            continue
        if operator == "Exists" or (operator == "Equal" and t_value == value):
            return True
    return False


def first_untolerated(
    taints: Iterable[Taint], tolerations: Iterable[Toleration], effects: tuple[str, ...]
) -> Taint | None:
    for taint in taints:
        if taint[2] in effects and not tolerates(tolerations, taint):
            return taint
    return None


# ------------------------------------------------------------------------------ node affinity


class NodeSelectorTerm:
    """One `nodeSelectorTerms` entry: its label expressions AND its field expressions
    (only metadata.name exists). An empty or malformed term matches no node."""

    __slots__ = ("labels", "fields", "valid")

    def __init__(self, term: Obj) -> None:
        self.labels: tuple[Requirement, ...] = ()
        self.fields: tuple[Requirement, ...] = ()
        try:
            self.labels = tuple(_requirement(e) for e in term.get("matchExpressions") or [])
            self.fields = tuple(_requirement(e) for e in term.get("matchFields") or [])
            self.valid = bool(self.labels or self.fields) and all(f.key == "metadata.name" for f in self.fields)
        except errors.APIError:
            self.valid = False

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        if not self.valid:
            return False
        if not all(r.matches(labels) for r in self.labels):
            return False
        return not self.fields or all(r.matches({"metadata.name": name}) for r in self.fields)


def _requirement(expr: Obj) -> Requirement:
    op = _OPERATORS.get(str(expr.get("operator")))
    if op is None:
        raise errors.BadRequest(f"{expr.get('operator')!r} is not a valid node selector operator")
    return new_requirement(str(expr.get("key", "")), op, [str(v) for v in expr.get("values") or []])


class RequiredNodeAffinity:
    """`spec.nodeSelector` and the required node affinity: both must hold; the terms are ORed."""

    __slots__ = ("selector", "terms")

    def __init__(self, selector: Mapping[str, str], terms: tuple[NodeSelectorTerm, ...] | None) -> None:
        self.selector = dict(selector)
        self.terms = terms

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        for key, value in self.selector.items():
            if labels.get(key) != value:
                return False
        return self.terms is None or any(t.matches(labels, name) for t in self.terms)


# ------------------------------------------------------------------------------ pod affinity


class AffinityTerm:
    """A pod (anti-)affinity term: pods matching `selector` in `namespaces` (or in
    namespaces whose labels match `namespace_selector`), counted per `topology_key` domain."""

    __slots__ = ("namespaces", "namespace_selector", "selector", "topology_key", "weight")

    def __init__(self, term: Obj, own_namespace: str, weight: int = 0) -> None:
        names = term.get("namespaces") or []
        ns_selector = term.get("namespaceSelector")
        self.namespaces = frozenset(names) if names or ns_selector is not None else frozenset((own_namespace,))
        self.namespace_selector = None if ns_selector is None else _selector_or_nothing(ns_selector)
        self.selector = _selector_or_nothing(term.get("labelSelector"))
        self.topology_key = str(term.get("topologyKey") or "")
        self.weight = weight

    def matches(self, pod: PodInfo, namespace_labels: NamespaceLabels) -> bool:
        if pod.namespace not in self.namespaces and (
            self.namespace_selector is None or not self.namespace_selector.matches(namespace_labels(pod.namespace))
        ):
            return False
        return self.selector.matches(pod.labels)


def _selector_or_nothing(selector: Obj | None) -> LabelSelector:
    try:
        return label_selector_from_dict(selector)
    except errors.APIError:
        return LabelSelector.nothing()


def _required_terms(affinity: Obj, namespace: str) -> tuple[AffinityTerm, ...]:
    return tuple(
        AffinityTerm(t, namespace) for t in affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    )


def _preferred_terms(affinity: Obj, namespace: str) -> tuple[AffinityTerm, ...]:
    return tuple(
        AffinityTerm(p.get("podAffinityTerm") or {}, namespace, int(p.get("weight") or 0))
        for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    )


# ------------------------------------------------------------------------------ the pod


class PodInfo:
    """A pod as the scheduler reads it. `obj` is the informer's (shared, never mutated) object."""

    __slots__ = (
        "obj",
        "key",
        "namespace",
        "name",
        "uid",
        "labels",
        "preempt_never",
        "deleting",
        "controller",
        "cpu",
        "memory",
        "ephemeral",
        "scalar",
        "nz_cpu",
        "nz_memory",
        "ports",
        "tolerations",
        "node_affinity",
        "preferred_node_terms",
        "spread_constraints",
        "required_affinity",
        "required_anti_affinity",
        "preferred_affinity",
        "preferred_anti_affinity",
        "shape",
    )

    def __init__(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.obj = pod
        self.namespace = str(meta.get("namespace") or "")
        self.name = str(meta.get("name") or "")
        self.key = f"{self.namespace}/{self.name}"
        self.uid = str(meta.get("uid") or "")
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.preempt_never = spec.get("preemptionPolicy") == "Never"
        self.deleting = bool(meta.get("deletionTimestamp"))
        self.controller = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
        requests = pod_requests(spec)
        self.cpu = requests.pop(CPU, 0)
        self.memory = requests.pop(MEMORY, 0)
        self.ephemeral = requests.pop(EPHEMERAL, 0)
        self.scalar = requests
        non_zero = pod_requests(spec, non_zero=True)
        self.nz_cpu, self.nz_memory = non_zero.get(CPU, 0), non_zero.get(MEMORY, 0)
        self.ports = _host_ports(spec)
        self.tolerations = parse_tolerations(spec.get("tolerations"))
        affinity = spec.get("affinity") or {}
        self._read_node_affinity(spec, affinity.get("nodeAffinity") or {})
        self.spread_constraints: list[Obj] = spec.get("topologySpreadConstraints") or []
        pod_affinity = affinity.get("podAffinity") or {}
        anti_affinity = affinity.get("podAntiAffinity") or {}
        self.required_affinity = _required_terms(pod_affinity, self.namespace)
        self.required_anti_affinity = _required_terms(anti_affinity, self.namespace)
        self.preferred_affinity = _preferred_terms(pod_affinity, self.namespace)
        self.preferred_anti_affinity = _preferred_terms(anti_affinity, self.namespace)
        # Everything node-local plugins read: pods of one template share a shape, so a
        # node's verdict for one of them holds for the next until the node changes.
        self.shape = (
            self.cpu,
            self.memory,
            self.ephemeral,
            tuple(sorted(self.scalar.items())),
            self.nz_cpu,
            self.nz_memory,
            self.ports,
            self.tolerations,
            orjson.dumps([spec.get("nodeSelector"), affinity.get("nodeAffinity")], option=orjson.OPT_SORT_KEYS),
        )

    def _read_node_affinity(self, spec: Obj, node_affinity: Obj) -> None:
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        terms = None
        if required is not None:
            terms = tuple(NodeSelectorTerm(t) for t in required.get("nodeSelectorTerms") or [])
        selector = spec.get("nodeSelector") or {}
        self.node_affinity = RequiredNodeAffinity(selector, terms) if selector or terms is not None else None
        self.preferred_node_terms = tuple(
            (int(p.get("weight") or 0), NodeSelectorTerm(p.get("preference") or {}))
            for p in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        )

    @property
    def has_affinity(self) -> bool:
        """Whether other pods' scheduling must look at this pod's own affinity terms."""
        return bool(
            self.required_affinity
            or self.required_anti_affinity
            or self.preferred_affinity
            or self.preferred_anti_affinity
        )

    def refresh(self, pod: Obj) -> None:
        """Take in an update that cannot change what the pod requests (its binding, status,
        labels, deletion): the parsed spec is kept, the metadata is re-read."""
        meta = pod.get("metadata") or {}
        self.obj = pod
        self.labels = meta.get("labels") or {}
        self.deleting = bool(meta.get("deletionTimestamp"))


def _host_ports(spec: Obj) -> tuple[tuple[str, str, int], ...]:
    """(hostIP, protocol, hostPort) of every container port bound on the node."""
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            port = int(p.get("hostPort") or 0)
            if port > 0:
                ports.append((str(p.get("hostIP") or ANY_IP), str(p.get("protocol") or "TCP"), port))
    return tuple(ports)
