"""Where container images sit in workload objects, and pinning them to digests.

Pods and every pod-template owner (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
ReplicationController, CronJob) are found by shape, so autogen'd rules and ClusterImagePolicy
see the same images a kubelet would pull."""

from __future__ import annotations

import copy
from typing import Any

from policies.images.reference import ReferenceError, parse
from policies.types import Obj

_POD_SPECS: tuple[tuple[str, ...], ...] = (
    ("spec",),
    ("spec", "template", "spec"),
    ("spec", "jobTemplate", "spec", "template", "spec"),
)
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

Path = tuple[str | int, ...]


def container_images(obj: Obj | None) -> list[tuple[Path, str]]:
    """(path to the `image` field, image) for every container of the object's pod spec."""
    out: list[tuple[Path, str]] = []
    for spec_path in _POD_SPECS:
        spec: Any = obj
        for key in spec_path:
            spec = spec.get(key) if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not any(isinstance(spec.get(k), list) for k in _CONTAINER_LISTS):
            continue
        for field in _CONTAINER_LISTS:
            for i, container in enumerate(spec.get(field) or []):
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    out.append(((*spec_path, field, i, "image"), container["image"]))
        break
    return out


def pinned(image: str, digest: str) -> str:
    """`registry/repo:tag@digest` (as Kyverno writes it): the tag for people, the digest for the runtime."""
    ref = parse(image)
    return str(ref.with_digest(digest))


def patch_images(obj: Obj, digests: dict[Path, str]) -> Obj:
    """A copy of `obj` with the image at each path pinned to its digest."""
    out = copy.deepcopy(obj)
    for path, digest in digests.items():
        parent: Any = out
        for key in path[:-1]:
            parent = parent[key]
        try:
            parent[path[-1]] = pinned(parent[path[-1]], digest)
        except ReferenceError:
            continue
    return out
