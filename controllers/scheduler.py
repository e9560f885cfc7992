"""The scheduler: puts pending pods on nodes, as kube-scheduler's default profile does.

Shared informers feed a cache of nodes and assigned pods and a scheduling queue of
pending pods (spec.schedulerName default-scheduler, no node yet). One thread takes the
next pod, runs the filter and score plugins against the cache, assumes the pod onto the
chosen node (so the next pod already sees it there) and hands the binding to a small
pool of writers: the pods/binding subresource, then a `Scheduled` event. A pod no node
fits gets PodScheduled=False/Unschedulable with kube-scheduler's message and a
`FailedScheduling` event, and waits until a node or pod change could let it fit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from controllers import errors
from controllers.apiserver import WriteOptions
from controllers.client import Client, LocalClient, RemoteClient
from controllers.manager import ControllerContext
from controllers.runtime import Informer, object_key
from controllers.scheduling.cache import NODE_ADD, NODE_DELETE, POD_DELETE, Cache
from controllers.scheduling.framework import FilterPlugin, FitError, Framework, NoNodesAvailable, ScorePlugin
from controllers.scheduling.interpod import InterPodAffinity, PodTopologySpread
from controllers.scheduling.plugins import (
    BalancedAllocation,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    TaintToleration,
)
from controllers.scheduling.podinfo import PodInfo
from controllers.scheduling.queue import QueuedPod, SchedulingQueue
from controllers.selectors import EQUALS, LabelSelector, Requirement, label_selector_from_dict

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
Obj = dict[str, Any]
# bind(namespace, pod name, pod uid, node name)
Binder = Callable[[str, str, str, str], None]


def new(ctx: ControllerContext) -> Scheduler:
    return Scheduler(ctx, binder_for(ctx.client))


# ----------------------------------------------------------------------------- binding


def binding(namespace: str, name: str, uid: str, node: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def binder_for(client: Client) -> Binder:
    """How to write pods/binding through `client`. The Client protocol has no verb for
    subresources other than status and scale, so this reaches for what each client has:
    the API server itself in-process, the HTTP path of the remote one."""
    if isinstance(client, LocalClient):
        server = client.server
        opts = WriteOptions(field_manager=SCHEDULER_NAME)

        def bind_local(namespace: str, name: str, uid: str, node: str) -> None:
            server.bind(namespace, name, binding(namespace, name, uid, node), opts)

        return bind_local
    if isinstance(client, RemoteClient):

        def bind_remote(namespace: str, name: str, uid: str, node: str) -> None:
            path = client._path(client.resource_info("v1", "Pod"), namespace, name, "binding")
            client._call("POST", path, [("fieldManager", SCHEDULER_NAME)], binding(namespace, name, uid, node))

        return bind_remote
    raise TypeError(f"cannot bind pods through a {type(client).__name__}")


# ----------------------------------------------------------------------------- listers


class InformerListers:
    """Namespaces, Services and workload selectors, read from the shared informers."""

    def __init__(self, namespaces: Informer, services: Informer, owners: Mapping[tuple[str, str], Informer]) -> None:
        self.namespaces, self.services, self.owners = namespaces, services, owners

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        ns = self.namespaces.cache.get(namespace)
        return ((ns or {}).get("metadata") or {}).get("labels") or {}

    def default_selector(self, pod: PodInfo) -> LabelSelector:
        """As kube-scheduler's DefaultSelector: the selectors of the Services that select
        the pod, and that of its controller if it is a ReplicaSet, StatefulSet or RC."""
        labels: dict[str, str] = {}
        for svc in self.services.cache.list(pod.namespace):
            selector = (svc.get("spec") or {}).get("selector") or {}
            if selector and all(pod.labels.get(k) == v for k, v in selector.items()):
                labels.update(selector)
        requirements = [Requirement(k, EQUALS, (v,)) for k, v in labels.items()]
        ref = pod.controller
        informer = self.owners.get((ref.get("apiVersion", ""), ref.get("kind", ""))) if ref else None
        owner = informer.cache.get(f"{pod.namespace}/{ref['name']}") if informer and ref else None
        if owner is not None:
            selector = (owner.get("spec") or {}).get("selector")
            if owner.get("kind") == "ReplicationController":
                merged = {**labels, **(selector or {})}
                requirements = [Requirement(k, EQUALS, (v,)) for k, v in merged.items()]
            elif selector is not None:
                requirements += label_selector_from_dict(selector).requirements
        return LabelSelector(requirements)


# ----------------------------------------------------------------------------- scheduler


class SchedulerStats:
    """Counters for benchmarks and metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = 0
        self.unschedulable = 0
        self.bound = 0
        self.bind_errors = 0
        self.first_bound_at: float | None = None
        self.last_bound_at: float | None = None

    def record_bound(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.bound += 1
            if self.first_bound_at is None:
                self.first_bound_at = now
            self.last_bound_at = now

    def record_bind_error(self) -> None:
        with self._lock:
            self.bind_errors += 1


class Scheduler:
    """kube-scheduler's loop: one pod at a time against the cache, bindings written in the
    background so the next pod is scheduled while the last one is being bound."""

    def __init__(self, ctx: ControllerContext, bind: Binder, bind_workers: int = 4) -> None:
        self.client = ctx.client
        self.recorder = ctx.recorder(SCHEDULER_NAME)
        self.cache = Cache()
        self.queue = SchedulingQueue()
        self.stats = SchedulerStats()
        self._bind = bind
        inf = ctx.informers
        self.pods = inf.informer("v1", "Pod")
        self.nodes = inf.informer("v1", "Node")
        owners = {
            ("v1", "ReplicationController"): inf.informer("v1", "ReplicationController"),
            ("apps/v1", "ReplicaSet"): inf.informer("apps/v1", "ReplicaSet"),
            ("apps/v1", "StatefulSet"): inf.informer("apps/v1", "StatefulSet"),
        }
        listers = InformerListers(inf.informer("v1", "Namespace"), inf.informer("v1", "Service"), owners)
        self._informers = [self.pods, self.nodes, listers.namespaces, listers.services, *owners.values()]
        self.framework = default_framework(self.cache, listers, ctx.config.scheduler_scoring)
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)
        self._writers = ThreadPoolExecutor(max_workers=bind_workers, thread_name_prefix="scheduler-bind")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._writers.shutdown(wait=True, cancel_futures=True)

    # -- informer handlers ---------------------------------------------------------------
    def _on_pod(self, etype: str, pod: Obj, _old: Obj | None) -> None:
        key = object_key(pod)
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if etype == "DELETED" or (spec.get("nodeName") and status.get("phase") in ("Succeeded", "Failed")):
            self.queue.delete(key)
            if self.cache.remove_pod(key):
                self._moved({POD_DELETE})
            return
        if spec.get("nodeName"):
            self.queue.delete(key)
            event = self.cache.set_pod(pod)
            if event is not None:
                self._moved({event})
            return
        if self.cache.is_assumed(key):
            return  # placed; its binding is on the way
        if is_pending(pod):
            self.queue.add(key, pod)
        else:
            self.queue.delete(key)

    def _on_node(self, etype: str, node: Obj, _old: Obj | None) -> None:
        if etype == "DELETED":
            self.cache.remove_node(object_key(node))
            self._moved({NODE_DELETE})
            return
        changed = self.cache.set_node(node)
        events = {NODE_ADD} if changed is None else changed
        if events:
            self._moved(events)

    def _moved(self, events: set[str]) -> None:
        self.queue.move(self.framework.plugins_for(events))

    # -- the scheduling loop -------------------------------------------------------------
    def _run(self) -> None:
        for informer in self._informers:  # never schedule against a half-listed cluster
            while not informer.wait_for_sync(0.5):
                if self._stop.is_set():
                    return
        while (qp := self.queue.pop()) is not None:
            try:
                self._schedule_one(qp)
            except Exception:
                log.exception("scheduling %s failed", qp.key)
                self.queue.requeue_backoff(qp, qp.pod)

    def _schedule_one(self, qp: QueuedPod) -> None:
        pod = self.pods.cache.get(qp.key)  # the latest state, not the queued one
        if pod is None or not is_pending(pod) or self.cache.has_pod(qp.key):
            self.queue.done(qp.key)
            return
        info = PodInfo(pod)
        self.stats.attempts += 1
        try:
            with self.cache.lock:
                node = self.framework.schedule(info)
                self.cache.assume(info, node.name)
        except FitError as unfit:
            self.stats.unschedulable += 1
            self.queue.requeue_unschedulable(qp, pod, unfit.plugins)
            self._report_failure(info, "Unschedulable", unfit.message)
            return
        except NoNodesAvailable as error:  # an error to kube-scheduler: retried with back-off
            self.stats.unschedulable += 1
            self.queue.requeue_backoff(qp, pod)
            self._report_failure(info, "SchedulerError", str(error))
            return
        self.queue.done(qp.key)
        self._writers.submit(self._bind_one, qp, info, node.name)

    def _bind_one(self, qp: QueuedPod, pod: PodInfo, node: str) -> None:
        try:
            self._bind(pod.namespace, pod.name, pod.uid, node)
        except Exception as exc:
            self.stats.record_bind_error()
            self.cache.forget(pod.key)
            self._moved({POD_DELETE})  # the room it held is free again
            if isinstance(exc, errors.NotFound):
                return
            log.info("binding %s to %s failed: %s", pod.key, node, exc)
            latest = self.pods.cache.get(pod.key)
            if latest is not None and is_pending(latest):
                self.queue.requeue_backoff(qp, latest)
            return
        self.stats.record_bound()
        self.recorder.event(pod.obj, "Normal", "Scheduled", f"Successfully assigned {pod.key} to {node}")

    def _report_failure(self, pod: PodInfo, reason: str, message: str) -> None:
        """FailedScheduling event, and PodScheduled=False on the pod unless it says so already."""
        self.recorder.event(pod.obj, "Warning", "FailedScheduling", message)
        conditions = (pod.obj.get("status") or {}).get("conditions") or []
        current: Obj = next((c for c in conditions if c.get("type") == "PodScheduled"), {})
        if (current.get("status"), current.get("reason"), current.get("message")) == ("False", reason, message):
            return
        condition = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}
        if current.get("status") == "False" and current.get("lastTransitionTime"):
            condition["lastTransitionTime"] = current["lastTransitionTime"]
        else:
            condition["lastTransitionTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self.client.patch(
                "v1",
                "Pod",
                pod.name,
                {"status": {"conditions": [condition]}},
                pod.namespace,
                "strategic",
                field_manager=SCHEDULER_NAME,
                subresource="status",
            )
        except errors.NotFound:
            pass
        except errors.APIError as exc:
            log.info("recording why %s is unschedulable failed: %s", pod.key, exc)


def is_pending(pod: Obj) -> bool:
    """Whether this scheduler should place the pod: Pending, not bound, not terminating,
    and asking for the default scheduler."""
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def default_framework(cache: Cache, listers: InformerListers, scoring: str) -> Framework:
    """kube-scheduler's default profile: its filter order and score weights."""
    fit = NodeResourcesFit(scoring)
    taints, affinity = TaintToleration(), NodeAffinity()
    spread, interpod = PodTopologySpread(listers), InterPodAffinity(listers)
    filters: list[FilterPlugin] = [NodeUnschedulable(), taints, affinity, NodePorts(), fit, spread, interpod]
    scorers: list[tuple[ScorePlugin, int]] = [
        (taints, 3),
        (affinity, 2),
        (fit, 1),
        (spread, 2),
        (interpod, 2),
        (BalancedAllocation(), 1),
    ]
    return Framework(cache, filters, scorers)
