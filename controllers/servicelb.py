"""A laptop cluster's load balancer and ingress controller, as k3s's ServiceLB and its
bundled ingress controller behave: a LoadBalancer Service, and an Ingress of a class this
cluster serves, get the InternalIPs of the Ready nodes as their address. Nothing is
proxied (the API already allocates nodePorts); what matters is that `kubectl get svc`
shows an EXTERNAL-IP and that tools waiting for an address (Argo CD health checks, Helm
`--wait`) see one.

Ingress classes served: Ingresses with no class (this cluster's default), and classes
whose IngressClass names this controller (`gitops.dev/ingress`). The controller installs
the IngressClass `gitops`, annotated as the default class, when it starts."""

from __future__ import annotations

import logging
from typing import Any

from controllers import errors
from controllers.events import NORMAL
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Handler, Result, object_key

log = logging.getLogger(__name__)

Obj = dict[str, Any]

INGRESS_CLASS = "gitops"
INGRESS_CONTROLLER = "gitops.dev/ingress"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
NO_NODE_RETRY_SECONDS = 2.0  # node events wake us too; this is the safety net


def node_ips(nodes: list[Obj]) -> list[str]:
    """InternalIPs of the Ready nodes, in node-name order (what k3s publishes: the nodes
    running its load-balancer pods)."""
    out = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        ready, ip, deleting = _node_view(node)
        if ready and ip and not deleting:
            out.append(ip)
    return out


def _node_view(node: Obj) -> tuple[bool, str, bool]:
    status = node.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    ip = next((a.get("address", "") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "")
    return ready, ip, bool(node["metadata"].get("deletionTimestamp"))


def ingress_class_of(ingress: Obj) -> str:
    """spec.ingressClassName, or the annotation that preceded it."""
    name = (ingress.get("spec") or {}).get("ingressClassName")
    return str(name or (ingress["metadata"].get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION) or "")


def _lb_ingress(obj: Obj) -> list[Obj]:
    return list(((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


class ServiceLB:
    """Two reconcilers on the shared caches: LoadBalancer Services and served Ingresses.
    Both re-run when the set of Ready node IPs changes."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.recorder = ctx.recorder("service-lb-controller")
        self.services = ctx.informers.informer("v1", "Service")
        self.ingresses = ctx.informers.informer("networking.k8s.io/v1", "Ingress")
        self.classes = ctx.informers.informer("networking.k8s.io/v1", "IngressClass")
        self.nodes = ctx.informers.informer("v1", "Node")
        self.service_controller = Controller("service-lb-controller", self.sync_service)
        self.ingress_controller = Controller("ingress-controller", self.sync_ingress)
        self.service_controller.watch(self.services)
        self.ingress_controller.watch(self.ingresses)
        self.classes.add_handler(lambda *_: self._requeue_ingresses())
        self.nodes.add_handler(self._node_handler())

    def start(self) -> ServiceLB:
        self._install_ingress_class()
        self.service_controller.start()
        self.ingress_controller.start()
        return self

    def stop(self) -> None:
        self.service_controller.stop()
        self.ingress_controller.stop()

    def _install_ingress_class(self) -> None:
        """The cluster's default IngressClass, installed once (as k3s installs Traefik's):
        deleting it later is the user's choice and is not undone."""
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": INGRESS_CONTROLLER},
        }
        try:
            self.client.create(body, field_manager="ingress-controller")
        except errors.AlreadyExists:
            pass
        except errors.APIError as exc:
            log.warning("IngressClass %s not installed: %s", INGRESS_CLASS, exc)

    # -- event mapping ------------------------------------------------------------------
    def _node_handler(self) -> Handler:
        def handler(etype: str, node: Obj, old: Obj | None) -> None:
            if etype == "MODIFIED" and old is not None and _node_view(old) == _node_view(node):
                return  # heartbeats do not move addresses
            for svc in self.services.cache.list():
                if (svc.get("spec") or {}).get("type") == "LoadBalancer":
                    self.service_controller.queue.add(object_key(svc))
            self._requeue_ingresses()

        return handler

    def _requeue_ingresses(self) -> None:
        for ing in self.ingresses.cache.list():
            self.ingress_controller.queue.add(object_key(ing))

    # -- Services -------------------------------------------------------------------------
    def sync_service(self, key: str) -> Result | None:
        svc = self.services.cache.get(key)
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        if spec.get("loadBalancerClass"):
            return None  # another load balancer implementation's
        if spec.get("type") != "LoadBalancer":
            if _lb_ingress(svc):  # no longer a load balancer: drop the address
                self._write_status(svc, {})
            return None
        ips = node_ips(self.nodes.cache.list())
        if not ips:
            return Result(requeue_after=NO_NODE_RETRY_SECONDS)
        desired = [{"ip": ip, "ipMode": "VIP"} for ip in ips]
        if _lb_ingress(svc) != desired:
            self._write_status(svc, {"ingress": desired})
            self.recorder.event(svc, NORMAL, "EnsuredLoadBalancer", f"Ensured load balancer at {', '.join(ips)}")
        return None

    # -- Ingresses ------------------------------------------------------------------------
    def serves(self, ingress: Obj) -> bool:
        """No class means this cluster's default class; a named class must be ours."""
        name = ingress_class_of(ingress)
        if not name:
            return True
        cls = self.classes.cache.get(name)
        return cls is not None and (cls.get("spec") or {}).get("controller") == INGRESS_CONTROLLER

    def sync_ingress(self, key: str) -> Result | None:
        ing = self.ingresses.cache.get(key)
        if ing is None or not self.serves(ing):
            return None
        ips = node_ips(self.nodes.cache.list())
        if not ips:
            return Result(requeue_after=NO_NODE_RETRY_SECONDS)
        desired = [{"ip": ip} for ip in ips]
        if _lb_ingress(ing) != desired:
            self._write_status(ing, {"ingress": desired})
        return None

    def _write_status(self, obj: Obj, load_balancer: Obj) -> None:
        updated = {**obj, "status": {**(obj.get("status") or {}), "loadBalancer": load_balancer}}
        try:
            self.client.update_status(updated, field_manager="service-lb-controller")
        except errors.NotFound:
            pass  # deleted meanwhile


def new(ctx: ControllerContext) -> ServiceLB:
    return ServiceLB(ctx)
