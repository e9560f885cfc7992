"""`matchConstraints` / `matchResources` of admission policies (admissionregistration v1):
which requests a policy or binding is about, before any CEL runs."""

from __future__ import annotations

from functools import lru_cache

from controllers.kinds import builtin_types
from controllers.selectors import label_selector_from_dict
from policies.types import Lookup, Obj, Request


@lru_cache(maxsize=1)
def _builtin_plurals() -> dict[str, str]:
    return {rt.kind: rt.plural for rt in builtin_types()}


@lru_cache(maxsize=1024)
def resource_of(kind: str) -> str:
    """The plural resource name of `kind`, as the API server names it."""
    known = _builtin_plurals().get(kind)
    if known:
        return known
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + "s"


def _listed(values: list[str] | None, value: str) -> bool:
    return bool(values) and ("*" in values or value in values)  # type: ignore[operator]


def _resource_listed(patterns: list[str] | None, resource: str, subresource: str) -> bool:
    """`*` is every resource but no subresource, `*/*` everything, `pods/*` every
    subresource of pods, `*/scale` the scale subresource of anything."""
    for pattern in patterns or []:
        name, slash, sub = pattern.partition("/")
        if name not in ("*", resource):
            continue
        if not slash and not subresource:
            return True
        if slash and (sub == subresource or (sub == "*" and subresource) or pattern == "*/*"):
            return True
    return False


def rule_matches(rule: Obj, request: Request) -> bool:
    """One NamedRuleWithOperations against the request."""
    obj = request.resource
    group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
    if not _listed(rule.get("operations"), request.operation):
        return False
    if not _listed(rule.get("apiGroups"), group) or not _listed(rule.get("apiVersions"), version):
        return False
    if not _resource_listed(rule.get("resources"), resource_of(request.kind), request.subresource):
        return False
    scope = rule.get("scope") or "*"
    if scope == "Namespaced" and not request.namespace or scope == "Cluster" and request.namespace:
        return False
    names = rule.get("resourceNames")
    return not names or request.name in names


def _labels(obj: Obj | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def namespace_labels(request: Request, lookup: Lookup | None) -> dict[str, str] | None:
    """Labels namespaceSelector sees; None when it does not apply (cluster-scoped objects
    other than Namespaces always match)."""
    if request.kind == "Namespace" and not request.namespace:
        return _labels(request.resource)
    if not request.namespace:
        return None
    if request.namespace_labels:
        return dict(request.namespace_labels)
    found = lookup.get("v1", "Namespace", request.namespace) if lookup is not None else None
    return _labels(found)


def possible_resources(constraints: list[Obj | None]) -> frozenset[str] | None:
    """The resources (plural names) some `resourceRules` entry of every constraint names,
    None when any resource may match: a request for another resource matches none."""
    allowed: frozenset[str] | None = None
    for match in constraints:
        if not match or "resourceRules" not in match:
            continue
        names = {str(p).partition("/")[0] for r in match.get("resourceRules") or [] for p in r.get("resources") or []}
        if "*" in names:
            continue
        allowed = frozenset(names) if allowed is None else allowed & names
    return allowed


def constraints_match(match: Obj | None, request: Request, lookup: Lookup | None) -> bool:
    """A MatchResources: some resourceRule, no excludeResourceRule, both selectors."""
    if not match:
        return True
    if "resourceRules" in match and not any(rule_matches(r, request) for r in match.get("resourceRules") or []):
        return False
    if any(rule_matches(r, request) for r in match.get("excludeResourceRules") or []):
        return False
    selector = match.get("objectSelector")
    if selector:
        sel = label_selector_from_dict(selector)
        if not (sel.matches(_labels(request.object)) or sel.matches(_labels(request.old_object))):
            return False
    selector = match.get("namespaceSelector")
    if selector:
        labels = namespace_labels(request, lookup)
        if labels is not None and not label_selector_from_dict(selector).matches(labels):
            return False
    return True
