"""The registry of resource types the API serves: built-in kinds and the ones CRDs add.

Everything that needs to know "what is a deployment" (discovery, REST routing, OpenAPI,
tables, defaulting) looks it up here, so a CRD that starts serving is visible everywhere
at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "binding"
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    # For CRDs: the openAPIV3Schema of this version, the printer columns, the scale paths.
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    scale: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    selectable_fields: tuple[str, ...] = field(default=(), compare=False, hash=False)
    crd: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    api_version = group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def group_resource(self) -> str:
        """`deployments.apps` style name used in error messages and store keys."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


_ALL = ("all",)
_BUILTIN: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ("ns",),
        subresources=("status",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceType("", "v1", "Pod", "pods", True, ("po",), _ALL, ("status", "binding")),
    ResourceType("", "v1", "Service", "services", True, ("svc",), _ALL, ("status",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    ResourceType("", "v1", "Event", "events", True, ("ev",)),
    ResourceType("", "v1", "Node", "nodes", False, ("no",), subresources=("status",)),
    ResourceType("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), subresources=("status",)),
    ResourceType("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), subresources=("status",)),
    ResourceType("", "v1", "ReplicationController", "replicationcontrollers", True, ("rc",), _ALL, ("status", "scale")),
    ResourceType("", "v1", "LimitRange", "limitranges", True, ("limits",)),
    ResourceType("", "v1", "ResourceQuota", "resourcequotas", True, ("quota",), subresources=("status",)),
    ResourceType("apps", "v1", "Deployment", "deployments", True, ("deploy",), _ALL, ("status", "scale")),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), _ALL, ("status", "scale")),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), _ALL, ("status", "scale")),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), _ALL, ("status",)),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    ResourceType("batch", "v1", "Job", "jobs", True, (), _ALL, ("status",)),
    ResourceType("batch", "v1", "CronJob", "cronjobs", True, ("cj",), _ALL, ("status",)),
    ResourceType(
        "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ("hpa",), _ALL, ("status",)
    ),
    ResourceType(
        "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), subresources=("status",)
    ),
    ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), subresources=("status",)),
    ResourceType("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ("netpol",)),
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
    ResourceType("events.k8s.io", "v1", "Event", "events", True, ("ev",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    ResourceType("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",)),
    ResourceType("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ("pc",)),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        subresources=("status",),
    ),
    ResourceType(
        "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", False
    ),
    ResourceType(
        "admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", False
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        False,
        subresources=("status",),
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        False,
    ),
)

# Groups whose preferred version differs from the only one we serve are not modelled:
# each group serves exactly the versions listed above or declared by its CRDs.


class Registry:
    """Thread-safe lookup of resource types by (group, version, plural) and by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_plural: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_owned: dict[str, list[ResourceType]] = {}
        self.generation = 0  # bumped on every change, so derived documents can be cached
        for rt in _BUILTIN:
            self._by_plural[(rt.group, rt.version, rt.plural)] = rt

    def add_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        with self._lock:
            self._drop_crd_locked(crd_name)
            for rt in types:
                self._by_plural[(rt.group, rt.version, rt.plural)] = rt
            self._crd_owned[crd_name] = types
            self.generation += 1

    def remove_crd(self, crd_name: str) -> None:
        with self._lock:
            self._drop_crd_locked(crd_name)
            self.generation += 1

    def _drop_crd_locked(self, crd_name: str) -> None:
        for rt in self._crd_owned.pop(crd_name, []):
            self._by_plural.pop((rt.group, rt.version, rt.plural), None)

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_plural.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for rt in self._by_plural.values():
                if rt.group == group and rt.version == version and rt.kind == kind:
                    return rt
        return None

    def by_group_resource(self, group: str, plural: str) -> list[ResourceType]:
        """Every served version of a resource (they share one storage)."""
        with self._lock:
            return [rt for rt in self._by_plural.values() if rt.group == group and rt.plural == plural]

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._by_plural.values())

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self.all())

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, preferred first (the core group is "")."""
        out: dict[str, list[str]] = {}
        for rt in self.all():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for versions in out.values():
            versions.sort(key=_version_priority)
        return out


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor)


def builtin_types() -> tuple[ResourceType, ...]:
    return _BUILTIN
