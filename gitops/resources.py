"""Resource identity and the annotations the engine reads on manifests: tracking, sync
waves, hooks and sync options (Argo CD's annotations, and Helm's hooks mapped as Argo CD
maps them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

TRACKING = "gitops.dev/tracking-id"
SYNC_WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
COMPARE_OPTIONS = "argocd.argoproj.io/compare-options"
HELM_HOOK = "helm.sh/hook"
HELM_HOOK_WEIGHT = "helm.sh/hook-weight"
HELM_HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"

PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL = "PreSync", "Sync", "PostSync", "SyncFail"
PHASES = (PRE_SYNC, SYNC, POST_SYNC)
HOOK_TYPES = (PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL, "Skip")

_HELM_HOOKS = {
    "pre-install": PRE_SYNC,
    "pre-upgrade": PRE_SYNC,
    "post-install": POST_SYNC,
    "post-upgrade": POST_SYNC,
}
_HELM_DELETE = {
    "before-hook-creation": "BeforeHookCreation",
    "hook-succeeded": "HookSucceeded",
    "hook-failed": "HookFailed",
}

# Helm's install order, which Argo CD also uses within one wave.
KIND_ORDER = (
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PodDisruptionBudget",
    "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition",
    # Admission policies before what they gate (ours: policies delivered by an app apply first).
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ClusterPolicy", "Policy", "ValidatingPolicy",
    "MutatingPolicy", "ClusterImagePolicy",
    "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job",
    "CronJob", "IngressClass", "Ingress", "APIService",
)  # fmt: skip
_KIND_INDEX = {k: i for i, k in enumerate(KIND_ORDER)}


@dataclass(frozen=True, order=True)
class ResourceKey:
    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Obj) -> ResourceKey:
        meta = obj.get("metadata") or {}
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        return cls(group, str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def __str__(self) -> str:
        gk = f"{self.group}/{self.kind}" if self.group else self.kind
        return f"{gk}:{self.namespace}/{self.name}" if self.namespace else f"{gk}:{self.name}"

    def as_status(self) -> Obj:
        return {"group": self.group, "kind": self.kind, "namespace": self.namespace, "name": self.name}


def annotations_of(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def tracking_id(app_namespace: str, app_name: str, key: ResourceKey) -> str:
    """Which app owns an object, as Argo CD's annotation tracking writes it."""
    return f"{app_namespace}_{app_name}:{key.group}/{key.kind}:{key.namespace}/{key.name}"


def tracked_app(obj: Obj) -> str | None:
    """`namespace/name` of the app that owns obj according to its tracking annotation."""
    tid = annotations_of(obj).get(TRACKING)
    if not tid:
        return None
    app, _, _ = tid.partition(":")
    ns, _, name = app.partition("_")
    return f"{ns}/{name}" if name else None


def sync_wave(obj: Obj) -> int:
    ann = annotations_of(obj)
    raw = ann.get(SYNC_WAVE, ann.get(HELM_HOOK_WEIGHT, "0") if ann.get(HELM_HOOK) else "0")
    try:
        return int(str(raw).strip())
    except ValueError:
        return 0


def hook_types(obj: Obj) -> list[str]:
    """The sync hooks an object is, [] for an ordinary resource (Helm hooks mapped)."""
    ann = annotations_of(obj)
    if ann.get(HOOK):
        return [h.strip() for h in ann[HOOK].split(",") if h.strip()]
    helm = [_HELM_HOOKS[h.strip()] for h in ann.get(HELM_HOOK, "").split(",") if h.strip() in _HELM_HOOKS]
    return sorted(set(helm), key=HOOK_TYPES.index)


def hook_delete_policies(obj: Obj) -> set[str]:
    """Argo CD deletes a hook before re-creating it unless told otherwise."""
    ann = annotations_of(obj)
    if ann.get(HOOK_DELETE_POLICY):
        return {p.strip() for p in ann[HOOK_DELETE_POLICY].split(",") if p.strip()}
    helm = {
        _HELM_DELETE[p.strip()] for p in ann.get(HELM_HOOK_DELETE_POLICY, "").split(",") if p.strip() in _HELM_DELETE
    }
    return helm or {"BeforeHookCreation"}


def resource_options(obj: Obj, annotation: str = SYNC_OPTIONS) -> dict[str, str]:
    """`argocd.argoproj.io/sync-options: Prune=false,ServerSideApply=true` as a dict."""
    out: dict[str, str] = {}
    for part in annotations_of(obj).get(annotation, "").split(","):
        key, _, value = part.partition("=")
        if key.strip():
            out[key.strip()] = value.strip() or "true"
    return out


def kind_rank(kind: str) -> int:
    """Position of a kind in the apply order; unknown kinds (custom resources) go last."""
    return _KIND_INDEX.get(kind, len(KIND_ORDER))
