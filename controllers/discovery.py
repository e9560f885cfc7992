"""Discovery documents: what kubectl and client-go read to learn which resources exist.

Two shapes are served from the same registry. The legacy documents (`/api`, `/apis`,
`/apis/<group>`, and one `APIResourceList` per group-version) cost a client one request per
group-version; aggregated discovery (`apidiscovery.k8s.io/v2`, asked for through the Accept
header on `/api` and `/apis`) hands over every group, version and resource in one answer,
which is what kubectl 1.32 tries first. Everything here is a pure function of the registry,
cheap enough to compute per request, so a CRD that starts serving shows up at once."""

from __future__ import annotations

import base64
import hashlib
import platform
import sys
from typing import Any

from controllers.kinds import Registry, ResourceType

# The Kubernetes release this server says it is. /usr/bin/kubectl is the gcloud dispatcher,
# which runs the kubectl whose minor version matches the server's: claiming 1.32 gets kubectl 1.32.
KUBE_MAJOR, KUBE_MINOR, KUBE_PATCH = "1", "32", "0"
GIT_VERSION = f"v{KUBE_MAJOR}.{KUBE_MINOR}.{KUBE_PATCH}"

# The media type of an aggregated discovery answer. client-go decides between the aggregated
# and the legacy format by this exact Content-Type (the parameters g, v and as, in any order).
AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# Built-in groups in the order a real API server lists them. Order matters: when a resource
# name exists in two groups (events, for one) kubectl picks the one discovered first.
_GROUP_ORDER = (
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    # The engine's own group before other CRD groups: `kubectl get applications` means
    # ours even when Argo CD's argoproj.io Application CRD is served too.
    "gitops.dev",
)

# subresource -> (kind it answers with as (group, version, kind), or None for the parent's kind; verbs)
_SUBRESOURCES: dict[str, tuple[tuple[str, str, str] | None, tuple[str, ...]]] = {
    "status": (None, ("get", "patch", "update")),
    "scale": (("autoscaling", "v1", "Scale"), ("get", "patch", "update")),
    "binding": (("", "v1", "Binding"), ("create",)),
    "eviction": (("policy", "v1", "Eviction"), ("create",)),
    "finalize": (None, ("update",)),
    "log": (("", "v1", "Pod"), ("get",)),
    "ephemeralcontainers": (None, ("get", "patch", "update")),
}


def version_info() -> dict[str, Any]:
    """`/version`: kubectl compares major/minor with its own to warn about version skew."""
    return {
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-08-13T00:00:00Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": _platform(),
    }


def _platform() -> str:
    """GOOS/GOARCH spelling of the machine we run on (`linux/amd64`, `darwin/arm64`)."""
    os_name = {"win32": "windows", "cygwin": "windows"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{os_name}/{arch}"


def api_versions(server_address: str = "127.0.0.1:6443") -> dict[str, Any]:
    """`/api` (legacy): the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _ordered_groups(registry: Registry) -> list[tuple[str, list[str]]]:
    """Named groups (not the core group) with their versions, preferred version first."""
    by_group = registry.group_versions()
    by_group.pop("", None)
    rank = {g: i for i, g in enumerate(_GROUP_ORDER)}
    names = sorted(by_group, key=lambda g: (rank.get(g, len(rank)), g))
    return [(g, by_group[g]) for g in names]


def _group_doc(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    """`/apis` (legacy): every named group with its versions and preferred version."""
    groups = [_group_doc(g, versions) for g, versions in _ordered_groups(registry)]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    """`/apis/<group>`, or None when no version of that group is served (answer 404)."""
    versions = registry.group_versions().get(group) if group else None
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}


def storage_version_hash(rt: ResourceType) -> str:
    """An opaque token that changes when the stored group/version/kind changes; clients
    (the storage-version migrator, some caches) only compare it for equality."""
    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _subresource(sub: str) -> tuple[tuple[str, str, str] | None, tuple[str, ...]]:
    return _SUBRESOURCES.get(sub, (None, ("get",)))


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    """The legacy APIResource entries for one type: itself, then `<plural>/<sub>` entries."""
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    main["storageVersionHash"] = storage_version_hash(rt)
    out = [main]
    for sub in rt.subresources:
        gvk, verbs = _subresource(sub)
        entry: dict[str, Any] = {
            "name": f"{rt.plural}/{sub}",
            "singularName": "",
            "namespaced": rt.namespaced,
        }
        if gvk is None:
            entry["kind"] = rt.kind
        else:
            group, version, kind = gvk
            if (group, version) != (rt.group, rt.version):
                entry["group"], entry["version"] = group, version
            entry["kind"] = kind
        entry["verbs"] = list(verbs)
        out.append(entry)
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """`/api/v1` or `/apis/<group>/<version>`, or None when that group-version is not served."""
    types = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not types:
        return None
    resources = [entry for rt in types for entry in _resource_entries(rt)]
    resources.sort(key=lambda r: r["name"])
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


# ---------------------------------------------------------------- aggregated discovery


def wants_aggregated(accept_header: str) -> bool:
    """True when the client accepts `apidiscovery.k8s.io/v2` APIGroupDiscoveryList.

    kubectl 1.32 sends `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
    application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`;
    a client that only accepts v2beta1 or plain JSON gets the legacy documents."""
    for media_type in accept_header.split(","):
        base, *params = (p.strip() for p in media_type.split(";"))
        if base not in ("application/json", "*/*", "application/*"):
            continue
        values = dict(p.partition("=")[::2] for p in params)
        if (values.get("g"), values.get("v"), values.get("as")) == (
            "apidiscovery.k8s.io",
            "v2",
            "APIGroupDiscoveryList",
        ):
            return True
    return False


def _response_kind(rt: ResourceType, gvk: tuple[str, str, str] | None) -> dict[str, str]:
    # A kind in the resource's own group-version is written with empty group and version,
    # as the real server does; client-go fills them in from the group-version.
    if gvk is None or gvk[:2] == (rt.group, rt.version):
        return {"group": "", "version": "", "kind": gvk[2] if gvk else rt.kind}
    return {"group": gvk[0], "version": gvk[1], "kind": gvk[2]}


def _resource_discovery(rt: ResourceType) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": _response_kind(rt, None),
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        doc["shortNames"] = list(rt.short_names)
    if rt.categories:
        doc["categories"] = list(rt.categories)
    subs = []
    for sub in rt.subresources:
        gvk, verbs = _subresource(sub)
        subs.append({"subresource": sub, "responseKind": _response_kind(rt, gvk), "verbs": list(verbs)})
    if subs:
        doc["subresources"] = subs
    return doc


def _group_discovery(registry: Registry, group: str, versions: list[str]) -> dict[str, Any]:
    types = registry.all()
    version_docs = []
    for version in versions:
        resources = sorted(
            (_resource_discovery(rt) for rt in types if rt.group == group and rt.version == version),
            key=lambda r: r["resource"],
        )
        version_docs.append({"version": version, "resources": resources, "freshness": "Current"})
    metadata: dict[str, Any] = {"name": group} if group else {}
    return {"metadata": metadata, "versions": version_docs}


def aggregated_discovery(registry: Registry, legacy_core: bool) -> tuple[dict[str, Any], str]:
    """The APIGroupDiscoveryList for `/api` (legacy_core: the core group only) or `/apis`
    (every named group), and the Content-Type it must be answered with."""
    if legacy_core:
        core = registry.group_versions().get("", [])
        items = [_group_discovery(registry, "", core)] if core else []
    else:
        items = [_group_discovery(registry, g, versions) for g, versions in _ordered_groups(registry)]
    body = {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
    return body, AGGREGATED_CONTENT_TYPE
