"""The JSON context a Kyverno rule's variables read: `request.*`, `images`,
`serviceAccountName`, the rule's `context` entries (variable, configMap, apiCall via a
Lookup) and, in `gitops policy test`, values supplied by the test file."""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from policies.kyverno.jmes import VariableError, search, substitute
from policies.types import Lookup, Obj, Request

_POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_TEMPLATE_PATH = ("spec", "template", "spec")
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64}|[a-z0-9]+:[0-9a-fA-F]+)$")


def pod_spec(resource: Obj) -> Obj | None:
    """The pod spec inside a Pod or a pod controller (Deployment, Job, CronJob, ...)."""
    path = _POD_SPEC_PATHS.get(str(resource.get("kind", "")), _TEMPLATE_PATH)
    node: Any = resource
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def parse_image(image: str) -> dict[str, str]:
    """Registry, path, name, tag and digest of an image reference, Docker Hub defaults
    applied (a new dict each time: callers may change it)."""
    return dict(_parse_image(image))


@lru_cache(maxsize=4096)
def _parse_image(image: str) -> dict[str, str]:
    """`parse_image`, once per image: every request's context lists its images, and a
    cluster runs the same few again and again."""
    digest = ""
    m = _DIGEST.search(image)
    rest = image
    if m:
        digest = m.group(1)
        rest = image[: m.start()]
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = "docker.io", rest
    if not tag and not digest:
        tag = "latest"
    reference = f"{registry}/{path}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return {
        "registry": registry,
        "path": path,
        "name": path.rsplit("/", 1)[-1],
        "tag": tag,
        "digest": digest,
        "reference": reference,
        "referenceWithTag": f"{registry}/{path}:{tag}" if tag else f"{registry}/{path}",
    }


def images_of(resource: Obj) -> dict[str, dict[str, Any]]:
    spec = pod_spec(resource)
    if spec is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for field in ("containers", "initContainers", "ephemeralContainers"):
        items = spec.get(field)
        if not isinstance(items, list):
            continue
        group: dict[str, Any] = {}
        for c in items:
            if isinstance(c, dict) and isinstance(c.get("image"), str):
                group[str(c.get("name", ""))] = parse_image(c["image"])
        if group:
            out[field] = group
    return out


def group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


_last = threading.local()


def request_context(request: Request) -> dict[str, Any]:
    """The `request` document and the top-level variables Kyverno always provides.

    Every rule of every policy reads the same document for one request, so the last one
    built (per thread) is reused; callers copy before they add their own variables."""
    cached = getattr(_last, "entry", None)
    if cached is not None and cached[0] is request:
        return cached[1]
    ctx = _build_request_context(request)
    _last.entry = (request, ctx)
    return ctx


def _build_request_context(request: Request) -> dict[str, Any]:
    resource = request.resource
    group, version = group_version(str(resource.get("apiVersion", "")))
    username = request.username
    ctx: dict[str, Any] = {
        "request": {
            "operation": request.operation,
            "object": request.object if request.operation != "DELETE" else None,
            "oldObject": request.old_object,
            "userInfo": {"username": username, "groups": list(request.groups)},
            "roles": list(request.roles),
            "clusterRoles": list(request.cluster_roles),
            "namespace": request.namespace,
            "name": request.name,
            "kind": {"group": group, "version": version, "kind": request.kind},
            "subResource": request.subresource,
            "dryRun": request.dry_run,
        },
        "images": images_of(resource),
    }
    if username.startswith("system:serviceaccount:"):
        parts = username.split(":")
        if len(parts) == 4:
            ctx["serviceAccountNamespace"], ctx["serviceAccountName"] = parts[2], parts[3]
    return ctx


def set_path(ctx: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested document (how test values name context variables)."""
    parts = dotted.split(".")
    node = ctx
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        else:
            nxt = dict(nxt)
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def load_context_entries(
    entries: list[Obj], ctx: dict[str, Any], lookup: Lookup | None, preset: frozenset[str], where: str
) -> None:
    """Resolve a rule's `context` entries into `ctx`, in order (later entries may use
    earlier ones). Names in `preset` were supplied by the test file and are kept."""
    for entry in entries:
        name = str(entry.get("name", ""))
        if not name or name in preset:
            continue
        if "variable" in entry:
            ctx[name] = _variable(entry["variable"] or {}, ctx, f"{where}.context[{name}]")
        elif "configMap" in entry:
            ctx[name] = _config_map(entry["configMap"] or {}, ctx, lookup, f"{where}.context[{name}]")
        elif "apiCall" in entry:
            ctx[name] = _api_call(entry["apiCall"] or {}, ctx, lookup, f"{where}.context[{name}]")
        elif "globalReference" in entry or "imageRegistry" in entry:
            ctx[name] = None


def _variable(spec: Obj, ctx: dict[str, Any], where: str) -> Any:
    value: Any = None
    if "value" in spec:
        value = substitute(spec["value"], ctx)
    if spec.get("jmesPath"):
        expr = substitute(str(spec["jmesPath"]), ctx)
        base = value if "value" in spec else ctx
        try:
            value = search(str(expr), base)
        except VariableError:
            value = None
    if value is None and "default" in spec:
        value = substitute(spec["default"], ctx)
    if value is None and "default" not in spec:
        raise VariableError(f"{where}: variable resolved to null and has no default")
    return value


def _config_map(spec: Obj, ctx: dict[str, Any], lookup: Lookup | None, where: str) -> Any:
    name = str(substitute(spec.get("name", ""), ctx))
    namespace = str(substitute(spec.get("namespace", "") or "default", ctx))
    obj = lookup.get("v1", "ConfigMap", name, namespace) if lookup is not None else None
    if obj is None:
        raise VariableError(f"{where}: ConfigMap {namespace}/{name} not found")
    return {"data": obj.get("data") or {}, "metadata": obj.get("metadata") or {}}


def _api_call(spec: Obj, ctx: dict[str, Any], lookup: Lookup | None, where: str) -> Any:
    url = str(substitute(spec.get("urlPath", ""), ctx))
    result: Any = None
    try:
        result = _get_url(url, lookup)
    except VariableError:
        if "default" not in spec:
            raise
    if spec.get("jmesPath") and result is not None:
        result = search(str(substitute(spec["jmesPath"], ctx)), result)
    if result is None and "default" in spec:
        result = substitute(spec["default"], ctx)
    if result is None:
        raise VariableError(f"{where}: apiCall {url} gave no data")
    return result


def _get_url(url: str, lookup: Lookup | None) -> Any:
    """`/api/v1/namespaces/ns/pods`, `/apis/apps/v1/deployments`, ... through the Lookup."""
    if lookup is None:
        raise VariableError(f"apiCall {url}: no cluster to read from")
    parts = [p for p in urlsplit(url).path.split("/") if p]
    query = parse_qs(urlsplit(url).query)
    if parts[:1] == ["api"] and len(parts) >= 2:
        api_version, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise VariableError(f"apiCall {url}: not a Kubernetes API path")
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        raise VariableError(f"apiCall {url}: no resource in the path")
    kind = _kind_of_plural(rest[0])
    if len(rest) >= 2:
        return lookup.get(api_version, kind, rest[1], namespace)
    items = lookup.list(api_version, kind, namespace)
    selector = (query.get("labelSelector") or [""])[0]
    if selector:
        wanted = dict(p.split("=", 1) for p in selector.split(",") if "=" in p)
        items = [
            i
            for i in items
            if all(((i.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
    return {"apiVersion": api_version, "kind": f"{kind}List", "items": items}


def _kind_of_plural(plural: str) -> str:
    """The kind a lowercase plural resource names (a Lookup speaks kinds)."""
    from controllers.kinds import builtin_types

    for rt in builtin_types():
        if rt.plural == plural:
            return rt.kind
    raise VariableError(f"apiCall: unknown resource {plural!r}")
