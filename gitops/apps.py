"""Applications: the CRD, the spec as the engine reads it, and Argo CD compatibility.

An Application has Argo CD's spec shape, so Argo CD manifests work as they are: objects of
`argoproj.io/v1alpha1` are served too and reconciled the same way, and Argo CD
Applications found in a rendered repository (app-of-apps) are converted to ours."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

GROUP = "gitops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
ARGO_API_VERSION = "argoproj.io/v1alpha1"
KIND = "Application"
APP_API_VERSIONS = (API_VERSION, ARGO_API_VERSION)

IN_CLUSTER = "https://kubernetes.default.svc"
REFRESH_ANNOTATION = "gitops.dev/refresh"  # normal | hard, as argocd.argoproj.io/refresh
ARGO_REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"

Obj = dict[str, Any]


def application_crd(group: str = GROUP) -> Obj:
    """The Application CRD (ours, or Argo CD's group for compatibility), with status as a
    subresource and the columns `kubectl get applications` shows."""
    columns = [
        {"name": "Sync Status", "type": "string", "jsonPath": ".status.sync.status"},
        {"name": "Health Status", "type": "string", "jsonPath": ".status.health.status"},
        {"name": "Revision", "type": "string", "jsonPath": ".status.sync.revision", "priority": 10},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"applications.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "applications",
                "singular": "application",
                "kind": KIND,
                "listKind": "ApplicationList",
                "shortNames": ["app", "apps"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": free,
                                "status": free,
                                "operation": free,
                            },
                        }
                    },
                }
            ],
        },
    }


@dataclass(frozen=True)
class Source:
    repo_url: str
    target_revision: str
    path: str
    raw: Obj  # the whole source spec (directory, kustomize, helm options) for the renderer

    @classmethod
    def parse(cls, spec: Obj) -> Source:
        return cls(
            repo_url=str(spec.get("repoURL") or ""),
            target_revision=str(spec.get("targetRevision") or "HEAD"),
            path=str(spec.get("path") or "."),
            raw=spec,
        )


@dataclass
class AppSpec:
    """The parts of `spec` the engine acts on, with Argo CD's defaults filled in."""

    sources: list[Source]
    dest_server: str
    dest_name: str
    dest_namespace: str
    project: str = "default"
    automated: bool = False
    prune: bool = False
    self_heal: bool = False
    allow_empty: bool = False
    sync_options: dict[str, str] = field(default_factory=dict)
    retry_limit: int = 0
    retry_backoff: Obj = field(default_factory=dict)
    ignore_differences: list[Obj] = field(default_factory=list)
    revision_history_limit: int = 10

    def option(self, name: str, default: str = "") -> str:
        return self.sync_options.get(name, default)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.sync_options.get(name)
        return default if value is None else value.lower() == "true"


class SpecError(ValueError):
    """An Application whose spec cannot be acted on (InvalidSpecError)."""


def parse_spec(app: Obj) -> AppSpec:
    spec = app.get("spec") or {}
    if not isinstance(spec, dict):
        raise SpecError("spec must be an object")
    raw_sources = spec.get("sources") or ([spec["source"]] if spec.get("source") else [])
    if not raw_sources:
        raise SpecError("spec.source (or spec.sources) is required")
    sources = [Source.parse(s) for s in raw_sources if isinstance(s, dict)]
    for i, src in enumerate(sources):
        if not src.repo_url:
            field_name = "spec.source.repoURL" if spec.get("source") else f"spec.sources[{i}].repoURL"
            raise SpecError(f"{field_name} is required")
    dest = spec.get("destination") or {}
    server, name = str(dest.get("server") or ""), str(dest.get("name") or "")
    if not server and not name:
        raise SpecError("spec.destination.server or spec.destination.name is required")
    if server and name:
        raise SpecError("spec.destination: give server or name, not both")
    policy = spec.get("syncPolicy") or {}
    automated = policy.get("automated")
    retry = policy.get("retry") or {}
    options: dict[str, str] = {}
    for opt in policy.get("syncOptions") or []:
        key, _, value = str(opt).partition("=")
        options[key.strip()] = value.strip() or "true"
    return AppSpec(
        sources=sources,
        dest_server=server,
        dest_name=name,
        dest_namespace=str(dest.get("namespace") or ""),
        project=str(spec.get("project") or "default"),
        automated=automated is not None and automated is not False,
        prune=bool((automated or {}).get("prune")) if isinstance(automated, dict) else False,
        self_heal=bool((automated or {}).get("selfHeal")) if isinstance(automated, dict) else False,
        allow_empty=bool((automated or {}).get("allowEmpty")) if isinstance(automated, dict) else False,
        sync_options=options,
        retry_limit=int(retry.get("limit") or 0),
        retry_backoff=dict(retry.get("backoff") or {}),
        ignore_differences=list(spec.get("ignoreDifferences") or []),
        revision_history_limit=int(spec.get("revisionHistoryLimit") or 10),
    )


def is_in_cluster(spec: AppSpec) -> bool:
    """`https://kubernetes.default.svc` or the name `in-cluster` mean the cluster the
    engine runs against, as in Argo CD."""
    return spec.dest_server.rstrip("/") == IN_CLUSTER or spec.dest_name == "in-cluster"


def convert_argo(app: Obj) -> Obj:
    """An argoproj.io Application as ours (same spec shape; Argo-only fields kept)."""
    out = copy.deepcopy(app)
    out["apiVersion"] = API_VERSION
    meta = out.setdefault("metadata", {})
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
        meta.pop(key, None)
    out.pop("status", None)
    return out


def is_application(obj: Obj) -> bool:
    return obj.get("kind") == KIND and obj.get("apiVersion") in APP_API_VERSIONS


def app_key(app: Obj) -> str:
    meta = app.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
