"""Which requests a Kyverno rule applies to: `match` and `exclude` blocks.

A block is `any` (one filter suffices), `all` (every filter), or the legacy single
filter. A filter combines `resources` (kinds as Kind, Version/Kind or Group/Version/Kind
with wildcards, names, namespaces, operations, annotations, selector, namespaceSelector)
with `subjects`, `roles` and `clusterRoles` (who is asking)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.kyverno.values import has_wildcard, wildcard_match
from policies.types import Obj, Request


class MatchError(ValueError):
    """A match/exclude block that cannot be compiled."""


@dataclass(frozen=True, slots=True)
class KindSelector:
    group: str  # "*" when any
    version: str
    kind: str
    subresource: str = ""

    def matches(self, group: str, version: str, kind: str, subresource: str) -> bool:
        if self.kind != "*" and not wildcard_match(self.kind, kind):
            return False
        if self.group != "*" and not wildcard_match(self.group, group):
            return False
        if self.version != "*" and not wildcard_match(self.version, version):
            return False
        if self.subresource:
            return self.subresource == "*" or wildcard_match(self.subresource, subresource)
        return not subresource


def parse_kind(text: str) -> KindSelector:
    """`Pod`, `v1/Pod`, `apps/v1/Deployment`, `batch/*/CronJob`, `Pod/exec`, `*`."""
    parts = text.split("/")
    if len(parts) == 1:
        return KindSelector("*", "*", parts[0])
    if len(parts) == 2:
        if parts[1][:1].islower():  # Kind/subresource
            return KindSelector("*", "*", parts[0], parts[1])
        return KindSelector("*", parts[0], parts[1])
    if len(parts) == 3:
        if parts[2][:1].islower():  # Version/Kind/subresource
            return KindSelector("*", parts[0], parts[1], parts[2])
        return KindSelector(parts[0], parts[1], parts[2])
    return KindSelector(parts[0], parts[1], parts[2], parts[3])


class LabelSelector:
    """A metav1.LabelSelector whose matchLabels values may carry wildcards (as Kyverno allows)."""

    __slots__ = ("labels", "expressions")

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self.labels = {str(k): str(v) for k, v in (raw.get("matchLabels") or {}).items()}
        self.expressions: list[tuple[str, str, list[str]]] = []
        for i, expr in enumerate(raw.get("matchExpressions") or []):
            op = str(expr.get("operator", ""))
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise MatchError(f"{where}.matchExpressions[{i}]: unknown operator {op!r}")
            self.expressions.append((str(expr.get("key", "")), op, [str(v) for v in expr.get("values") or []]))

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, want in self.labels.items():
            if has_wildcard(key):
                if not any(wildcard_match(key, k) and wildcard_match(want, v) for k, v in labels.items()):
                    return False
            elif key not in labels or not wildcard_match(want, labels[key]):
                return False
        for key, op, values in self.expressions:
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
            if op == "In" and (key not in labels or labels[key] not in values):
                return False
            if op == "NotIn" and key in labels and labels[key] in values:
                return False
        return True


@dataclass
class Filter:
    """One entry of `any`/`all` (or the legacy single block)."""

    kinds: list[KindSelector] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    subjects: list[Obj] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    cluster_roles: list[str] = field(default_factory=list)
    empty: bool = True
    static: bool = True  # decided by kind, group/version, subresource and operation alone

    def matches(self, req: Request, subresource: str, group: str, version: str) -> bool:
        obj = req.resource
        meta = obj.get("metadata") or {}
        kind = str(obj.get("kind", ""))
        if self.kinds and not any(k.matches(group, version, kind, subresource) for k in self.kinds):
            return False
        if self.names:
            name = str(meta.get("name") or meta.get("generateName") or "")
            if not any(wildcard_match(n, name) for n in self.names):
                return False
        if self.namespaces:
            ns = str(meta.get("name", "")) if kind == "Namespace" else str(meta.get("namespace") or "")
            if not any(wildcard_match(n, ns) for n in self.namespaces):
                return False
        if self.operations and req.operation not in self.operations:
            return False
        if self.annotations:
            annotations = meta.get("annotations") or {}
            for k, v in self.annotations.items():
                if not any(wildcard_match(k, ak) and wildcard_match(v, str(av)) for ak, av in annotations.items()):
                    return False
        if self.selector is not None and not self.selector.matches(meta.get("labels") or {}):
            return False
        if self.namespace_selector is not None:
            labels = req.namespace_labels
            if kind == "Namespace":
                labels = meta.get("labels") or {}
            if not self.namespace_selector.matches(labels):
                return False
        if self.subjects or self.roles or self.cluster_roles:
            return self._who_matches(req)
        return True

    def _who_matches(self, req: Request) -> bool:
        roles = set(req.roles)
        cluster_roles = set(req.cluster_roles)
        if any(r in roles for r in self.roles) or any(r in cluster_roles for r in self.cluster_roles):
            return True
        for subject in self.subjects:
            kind, name = subject.get("kind"), str(subject.get("name", ""))
            if kind == "User" and wildcard_match(name, req.username):
                return True
            if kind == "Group" and any(wildcard_match(name, g) for g in req.groups):
                return True
            if kind == "ServiceAccount":
                sa = f"system:serviceaccount:{subject.get('namespace', '')}:{name}"
                if wildcard_match(sa, req.username):
                    return True
        return False


def _filter(raw: Any, where: str) -> Filter:
    if not isinstance(raw, dict):
        raise MatchError(f"{where}: expected an object")
    res = raw.get("resources") or {}
    f = Filter()
    kinds = res.get("kinds") or []
    f.kinds = [parse_kind(str(k)) for k in kinds]
    names = list(res.get("names") or [])
    if res.get("name"):
        names.append(res["name"])
    f.names = [str(n) for n in names]
    f.namespaces = [str(n) for n in res.get("namespaces") or []]
    f.operations = [str(o) for o in res.get("operations") or []]
    f.annotations = {str(k): str(v) for k, v in (res.get("annotations") or {}).items()}
    if res.get("selector") is not None:
        f.selector = LabelSelector(res["selector"], f"{where}.resources.selector")
    if res.get("namespaceSelector") is not None:
        f.namespace_selector = LabelSelector(res["namespaceSelector"], f"{where}.resources.namespaceSelector")
    f.subjects = list(raw.get("subjects") or [])
    f.roles = [str(r) for r in raw.get("roles") or []]
    f.cluster_roles = [str(r) for r in raw.get("clusterRoles") or []]
    f.empty = not (
        f.kinds
        or f.names
        or f.namespaces
        or f.operations
        or f.annotations
        or f.selector
        or f.namespace_selector
        or f.subjects
        or f.roles
        or f.cluster_roles
    )
    f.static = not (
        f.names
        or f.namespaces
        or f.annotations
        or f.selector
        or f.namespace_selector
        or f.subjects
        or f.roles
        or f.cluster_roles
    )
    return f


class Block:
    """A compiled `match` or `exclude`."""

    __slots__ = ("any", "all")

    def __init__(self, raw: Any, where: str) -> None:
        self.any: list[Filter] = []
        self.all: list[Filter] = []
        if not raw:
            return
        if not isinstance(raw, dict):
            raise MatchError(f"{where}: expected an object")
        if raw.get("any"):
            self.any = [_filter(f, f"{where}.any[{i}]") for i, f in enumerate(raw["any"])]
        if raw.get("all"):
            self.all = [_filter(f, f"{where}.all[{i}]") for i, f in enumerate(raw["all"])]
        legacy = {k: raw[k] for k in ("resources", "subjects", "roles", "clusterRoles") if raw.get(k)}
        if legacy:
            self.all.append(_filter(legacy, where))

    def __bool__(self) -> bool:
        return bool(self.any or self.all)

    def filters(self) -> list[Filter]:
        return self.any + self.all

    @property
    def static(self) -> bool:
        """Whether the block's verdict depends only on what the kind, group/version,
        subresource and operation of a request are (so it can be cached by those)."""
        return all(f.static for f in self.filters())

    def matches(self, req: Request, subresource: str, group: str, version: str) -> bool:
        if self.any and not any(f.matches(req, subresource, group, version) for f in self.any):
            return False
        return all(f.matches(req, subresource, group, version) for f in self.all)

    def excludes(self, req: Request, subresource: str, group: str, version: str) -> bool:
        """An exclude block excludes when it matches; an empty filter excludes nothing."""
        if not self:
            return False
        if self.any and not any(not f.empty and f.matches(req, subresource, group, version) for f in self.any):
            return False
        return all(not f.empty and f.matches(req, subresource, group, version) for f in self.all)

    def kind_names(self) -> set[str]:
        """The bare kind names a block can match ("*" when any kind may)."""
        names: set[str] = set()
        for f in self.filters():
            if not f.kinds:
                names.add("*")
            for k in f.kinds:
                names.add("*" if has_wildcard(k.kind) else k.kind)
        return names
