"""The controller manager: builds every controller of the embedded cluster on one shared
informer factory and starts and stops them together (kube-controller-manager,
kube-scheduler and the kubelets in one place)."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from controllers.client import Client
from controllers.events import EventRecorder
from controllers.runtime import InformerFactory

log = logging.getLogger(__name__)


@dataclass
class NodeSpec:
    """One simulated node, as `gitops up --nodes` or a cluster file describes it."""

    name: str
    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 110
    zone: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClusterConfig:
    """How the embedded cluster behaves; defaults suit a laptop demo."""

    nodes: list[NodeSpec] = field(default_factory=list)
    # Simulated kubelet behaviour rules (see controllers/kubelet_rules.py); None: defaults.
    kubelet_rules: Path | None = None
    heartbeat_seconds: float = 2.0  # node Lease renewal
    node_monitor_grace_seconds: float = 10.0  # no heartbeat for this long: NotReady
    pod_eviction_seconds: int = 30  # default not-ready/unreachable toleration (Kubernetes: 300)
    scheduler_scoring: str = "LeastAllocated"  # or MostAllocated (bin packing)

    @classmethod
    def default(cls, nodes: int = 3, cpu: str = "4", memory: str = "8Gi", pods: int = 110) -> ClusterConfig:
        zones = ("zone-a", "zone-b", "zone-c")
        return cls(nodes=[NodeSpec(f"node-{i + 1}", cpu, memory, pods, zones[i % 3]) for i in range(nodes)])

    @classmethod
    def from_file(cls, path: Path) -> ClusterConfig:
        """A cluster file: `nodes: [{name, cpu, memory, pods, zone, labels, taints}]` plus
        any of the scalar settings above."""
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a cluster file is a mapping with a `nodes` list")
        nodes = [NodeSpec(**n) for n in data.pop("nodes", [])]
        rules = data.pop("kubeletRules", None)
        cfg = cls(nodes=nodes, **{_snake(k): v for k, v in data.items()})
        if rules:
            cfg.kubelet_rules = (path.parent / rules).resolve()
        return cfg


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


class Startable(Protocol):
    def start(self) -> Any: ...

    def stop(self) -> None: ...


@dataclass
class ControllerContext:
    """What every controller is built from."""

    client: Client
    informers: InformerFactory
    config: ClusterConfig
    _recorders: dict[tuple[str, str], EventRecorder] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def recorder(self, component: str, host: str = "") -> EventRecorder:
        with self._lock:
            key = (component, host)
            if key not in self._recorders:
                self._recorders[key] = EventRecorder(self.client, component, host)
            return self._recorders[key]

    def stop_recorders(self) -> None:
        for rec in self._recorders.values():
            rec.stop()


Factory = Callable[[ControllerContext], Startable]

# name -> "module:function" building the controller from a ControllerContext.
DEFAULT_CONTROLLERS: dict[str, str] = {
    "nodes": "controllers.nodes:new",  # simulated nodes (registration, heartbeat) and node lifecycle
    "kubelet": "controllers.kubelet:new",  # pod lifecycle on the simulated nodes
    "scheduler": "controllers.scheduler:new",
    "replicaset": "controllers.workloads.replicaset:new",
    "deployment": "controllers.workloads.deployment:new",
    "statefulset": "controllers.workloads.statefulset:new",
    "daemonset": "controllers.workloads.daemonset:new",
    "job": "controllers.workloads.job:new",
    "cronjob": "controllers.workloads.cronjob:new",
    "endpoints": "controllers.endpoints:new",  # Endpoints and EndpointSlices
    "servicelb": "controllers.servicelb:new",  # LoadBalancer Services and Ingresses get an address
    "gc": "controllers.gc:new",  # ownerReference garbage collection
    "namespace": "controllers.namespace:new",  # deleting a namespace deletes its contents
}


class ControllerManager:
    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self._factories: list[tuple[str, Factory]] = []
        self.controllers: dict[str, Startable] = {}

    def add(self, name: str, factory: Factory) -> None:
        self._factories.append((name, factory))

    def add_defaults(self, names: list[str] | None = None) -> None:
        for name, target in DEFAULT_CONTROLLERS.items():
            if names is None or name in names:
                module, _, func = target.partition(":")
                self.add(name, getattr(importlib.import_module(module), func))

    def start(self) -> None:
        for name, factory in self._factories:
            self.controllers[name] = factory(self.ctx)
        self.ctx.informers.start()
        for ctrl in self.controllers.values():
            ctrl.start()

    def stop(self) -> None:
        for ctrl in reversed(list(self.controllers.values())):
            try:
                ctrl.stop()
            except Exception:
                log.exception("stopping a controller failed")
        self.ctx.informers.stop()
        self.ctx.stop_recorders()
