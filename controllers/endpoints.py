"""Endpoints and EndpointSlices for Services with a selector, as kube-controller-manager's
endpoint and endpointslice controllers keep them: which pod IPs back a Service and on
which ports, following pods as they come, go and change readiness.

Services without a selector are left alone (their Endpoints are the user's). The
`kubernetes` Service in `default` has no selector, so it gets no Endpoints here: in
Kubernetes the API server itself publishes them, and the embedded API does not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controllers import errors
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Handler, Result, object_key, split_key
from controllers.selectors import label_selector_from_dict
from controllers.workloads.common import controller_of, controller_ref, is_pod_ready

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
ENDPOINTS_MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
ENDPOINTS_CONTROLLER = "endpoint-controller"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
_SLICE_INDEX = "endpoints:service"  # EndpointSlice cache index: "namespace/service"
_RESERVED_SLICE_LABELS = (SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, HEADLESS_LABEL)

PortKey = tuple[tuple[str, int, str, str], ...]


# ---------------------------------------------------------------------- pods and ports
def selected_by(service: Obj, pod: Obj) -> bool:
    """Whether a Service with a selector picks this pod (same namespace, labels match)."""
    selector = (service.get("spec") or {}).get("selector")
    if not selector or pod["metadata"].get("namespace") != service["metadata"].get("namespace"):
        return False
    return label_selector_from_dict({"matchLabels": selector}).matches(pod["metadata"].get("labels") or {})


def _listed(pod: Obj, include_terminating: bool) -> bool:
    """A pod backs a Service once it has an IP, until it finishes (or starts terminating,
    for Endpoints without publishNotReadyAddresses)."""
    status = pod.get("status") or {}
    if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def _resolve_target_port(service_port: Obj, pod: Obj) -> int | None:
    """The pod port a Service port sends to: a number, or a named container port."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def pod_ports(service: Obj, pod: Obj) -> list[Obj] | None:
    """The endpoint ports of one pod for a Service; None when the Service has ports and
    none of them resolves on this pod (the pod then backs nothing)."""
    service_ports = (service.get("spec") or {}).get("ports") or []
    out = []
    for sp in service_ports:
        number = _resolve_target_port(sp, pod)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    if service_ports and not out:
        return None
    return out


def _port_key(ports: Iterable[Obj]) -> PortKey:
    return tuple(
        sorted(
            (p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP", p.get("appProtocol") or "")
            for p in ports
        )
    )


def _target_ref(pod: Obj) -> Obj:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"], "uid": meta.get("uid", "")}


def _hostname(service: Obj, pod: Obj) -> str:
    """A pod's DNS hostname under the Service: set when the pod's subdomain is the Service."""
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        return str(spec["hostname"])
    return ""


def _service_labels(service: Obj, managed_by: tuple[str, str], reserved: Iterable[str] = ()) -> dict[str, str]:
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items() if k not in reserved}
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    labels[managed_by[0]] = managed_by[1]
    return labels


# ---------------------------------------------------------------------- Endpoints
def desired_subsets(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """core/v1 Endpoints subsets: addresses grouped by identical port sets, ready ones in
    `addresses`, the rest in `notReadyAddresses`, sorted so equal inputs compare equal."""
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[PortKey, tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not _listed(pod, publish_not_ready):
            continue
        ports = pod_ports(service, pod)
        if ports is None:
            continue
        address: Obj = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
        if (pod.get("spec") or {}).get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        if hostname := _hostname(service, pod):
            address["hostname"] = hostname
        ready, not_ready, _ = groups.setdefault(_port_key(ports), ([], [], ports))
        (ready if publish_not_ready or is_pod_ready(pod) else not_ready).append(address)
    subsets = []
    for key in sorted(groups):
        ready, not_ready, ports = groups[key]
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_address_order)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_address_order)
        if ports:
            subset["ports"] = sorted(ports, key=lambda p: (p["name"], p["port"], p["protocol"]))
        subsets.append(subset)
    return subsets


def _address_order(address: Obj) -> tuple[str, str]:
    return address["ip"], address["targetRef"]["uid"]


# ---------------------------------------------------------------------- EndpointSlices
def slice_endpoint(service: Obj, pod: Obj, zones: dict[str, str]) -> Obj:
    """One discovery/v1 endpoint: serving follows readiness, terminating pods stay listed
    (ready=false) so that proxies can drain them."""
    serving = is_pod_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    endpoint: Obj = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {
            "ready": publish_not_ready or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": _target_ref(pod),
    }
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        endpoint["nodeName"] = node
        if zones.get(node):
            endpoint["zone"] = zones[node]
    if hostname := _hostname(service, pod):
        endpoint["hostname"] = hostname
    return endpoint


def desired_slice_groups(service: Obj, pods: Iterable[Obj], zones: dict[str, str]) -> dict[PortKey, list[Obj]]:
    """IPv4 endpoints grouped by port set (one slice family per set), sorted by address."""
    groups: dict[PortKey, list[Obj]] = {}
    for pod in pods:
        if not _listed(pod, include_terminating=True) or ":" in pod["status"]["podIP"]:
            continue
        ports = pod_ports(service, pod)
        if ports is None:
            continue
        groups.setdefault(_port_key(ports), []).append(slice_endpoint(service, pod, zones))
    for endpoints in groups.values():
        endpoints.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["uid"]))
    return groups


def _endpoint_id(endpoint: Obj) -> str:
    return str((endpoint.get("targetRef") or {}).get("uid") or (endpoint.get("addresses") or [""])[0])


def _ports_of(key: PortKey) -> list[Obj]:
    out = []
    for name, port, protocol, app_protocol in key:
        entry: Obj = {"name": name, "port": port, "protocol": protocol}
        if app_protocol:
            entry["appProtocol"] = app_protocol
        out.append(entry)
    return out


class SlicePlan:
    """The writes that turn the existing slices of a Service into the desired ones while
    moving as few endpoints as possible: endpoints stay in the slice they are in, new ones
    fill free room before new slices are made, and a Service with no endpoints keeps one
    empty placeholder slice."""

    def __init__(self) -> None:
        self.create: list[tuple[PortKey, list[Obj]]] = []
        self.update: list[tuple[Obj, list[Obj]]] = []
        self.delete: list[Obj] = []

    @classmethod
    def build(cls, existing: list[Obj], groups: dict[PortKey, list[Obj]]) -> SlicePlan:
        plan = cls()
        groups = groups or {(): []}
        by_key: dict[PortKey, list[Obj]] = {}
        for s in sorted(existing, key=lambda s: s["metadata"]["name"]):
            key = _port_key(s.get("ports") or [])
            if key in groups:
                by_key.setdefault(key, []).append(s)
            else:
                plan.delete.append(s)
        for key, endpoints in groups.items():
            plan._plan_group(key, by_key.get(key, []), endpoints)
        return plan

    def _plan_group(self, key: PortKey, slices: list[Obj], endpoints: list[Obj]) -> None:
        if not endpoints:  # the placeholder: one empty slice
            if slices:
                self.update.append((slices[0], []))
            else:
                self.create.append((key, []))
            self.delete.extend(slices[1:])
            return
        wanted = {_endpoint_id(e): e for e in endpoints}
        filled: list[tuple[Obj, list[Obj]]] = []
        for s in slices:
            kept = [wanted.pop(i) for i in map(_endpoint_id, s.get("endpoints") or []) if i in wanted]
            filled.append((s, kept))
        leftovers = list(wanted.values())
        for s, kept in filled:
            room = MAX_ENDPOINTS_PER_SLICE - len(kept)
            if room > 0 and leftovers:
                kept.extend(leftovers[:room])
                del leftovers[:room]
            if kept:
                self.update.append((s, kept))
            else:
                self.delete.append(s)
        for i in range(0, len(leftovers), MAX_ENDPOINTS_PER_SLICE):
            self.create.append((key, leftovers[i : i + MAX_ENDPOINTS_PER_SLICE]))


# ---------------------------------------------------------------------- the controllers
class EndpointsControllers:
    """The endpoint controller (core/v1 Endpoints) and the endpointslice controller, each
    with its own queue of Service keys, fed by the shared Service, Pod, Endpoints and
    EndpointSlice informers."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.services = ctx.informers.informer("v1", "Service")
        self.pods = ctx.informers.informer("v1", "Pod")
        self.endpoints = ctx.informers.informer("v1", "Endpoints")
        self.slices = ctx.informers.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.nodes = ctx.informers.informer("v1", "Node")
        self.slices.cache.add_index(_SLICE_INDEX, _slice_service_key)
        self.endpoint_controller = Controller("endpoint-controller", self.sync_endpoints, workers=2)
        self.slice_controller = Controller("endpointslice-controller", self.sync_slices, workers=2)
        # Highest resourceVersion this controller wrote per Service: its slice cache must
        # have caught up before it plans again, or it would create duplicates.
        self._slice_writes: dict[str, int] = {}
        for ctrl in (self.endpoint_controller, self.slice_controller):
            ctrl.watch(self.services)
            self.pods.add_handler(self._pod_handler(ctrl))
        self.endpoint_controller.watch(self.endpoints)
        self.slice_controller.watch(self.slices, lambda s: _slice_service_key(s)[:1])

    def start(self) -> EndpointsControllers:
        self.endpoint_controller.start()
        self.slice_controller.start()
        return self

    def stop(self) -> None:
        self.endpoint_controller.stop()
        self.slice_controller.stop()

    # -- event mapping ------------------------------------------------------------------
    def _pod_handler(self, ctrl: Controller) -> Handler:
        def handler(etype: str, pod: Obj, old: Obj | None) -> None:
            if etype == "MODIFIED" and old is not None and _endpoint_view(old) == _endpoint_view(pod):
                return  # nothing a Service publishes changed
            keys = set(self._services_of(pod))
            if old is not None:
                keys.update(self._services_of(old))
            for key in keys:
                ctrl.queue.add(key)

        return handler

    def _services_of(self, pod: Obj) -> list[str]:
        ns = pod["metadata"].get("namespace", "")
        return [object_key(s) for s in self.services.cache.list(ns) if selected_by(s, pod)]

    def _pods_for(self, service: Obj) -> list[Obj]:
        ns = service["metadata"].get("namespace", "")
        return [p for p in self.pods.cache.list(ns) if selected_by(service, p)]

    # -- Endpoints ----------------------------------------------------------------------
    def sync_endpoints(self, key: str) -> Result | None:
        service = self.services.cache.get(key)
        current = self.endpoints.cache.get(key)
        if service is None:
            if current is not None and _labels(current).get(ENDPOINTS_MANAGED_BY_LABEL) == ENDPOINTS_CONTROLLER:
                self._delete(current)
            return None
        if not (service.get("spec") or {}).get("selector"):
            return None  # the user manages this Service's Endpoints
        subsets = desired_subsets(service, self._pods_for(service))
        labels = _service_labels(service, (ENDPOINTS_MANAGED_BY_LABEL, ENDPOINTS_CONTROLLER))
        if current is None:
            ns, name = split_key(key)
            body: Obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}}
            body["metadata"]["labels"] = labels
            if subsets:
                body["subsets"] = subsets
            try:
                self.client.create(body, field_manager=ENDPOINTS_CONTROLLER)
            except errors.AlreadyExists:
                return Result(requeue_after=0.1)  # the cache has not seen it yet
            return None
        if (current.get("subsets") or []) == subsets and _labels(current) == labels:
            return None
        updated = {**current, "metadata": {**current["metadata"], "labels": labels}}
        updated.pop("subsets", None)
        if subsets:
            updated["subsets"] = subsets
        self.client.update(updated, field_manager=ENDPOINTS_CONTROLLER)
        return None

    # -- EndpointSlices -----------------------------------------------------------------
    def sync_slices(self, key: str) -> Result | None:
        service = self.services.cache.get(key)
        if service is None:
            self._slice_writes.pop(key, None)
            return None  # the slices are owned by the Service: the garbage collector removes them
        if not self._slices_caught_up(key):
            return Result(requeue_after=0.05)
        uid = service["metadata"].get("uid")
        existing = [  # slices of an earlier Service of the same name are the collector's
            s
            for s in self.slices.cache.by_index(_SLICE_INDEX, key)
            if _labels(s).get(SLICE_MANAGED_BY_LABEL) == SLICE_CONTROLLER and (controller_of(s) or {}).get("uid") == uid
        ]
        if not (service.get("spec") or {}).get("selector"):
            for s in existing:
                self._note_slice_write(key, self._delete(s))
            return None
        zones = {
            n["metadata"]["name"]: _labels(n).get(ZONE_LABEL, "")
            for n in self.nodes.cache.list()
            if _labels(n).get(ZONE_LABEL)
        }
        plan = SlicePlan.build(existing, desired_slice_groups(service, self._pods_for(service), zones))
        labels = _service_labels(service, (SLICE_MANAGED_BY_LABEL, SLICE_CONTROLLER), _RESERVED_SLICE_LABELS)
        labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
        for s, endpoints in plan.update:
            self._update_slice(key, s, endpoints, labels)
        for port_key, endpoints in plan.create:
            created = self.client.create(
                self._new_slice(service, port_key, endpoints, labels), field_manager=SLICE_CONTROLLER
            )
            self._note_slice_write(key, created)
        for s in plan.delete:
            self._note_slice_write(key, self._delete(s))
        return None

    def _new_slice(self, service: Obj, key: PortKey, endpoints: list[Obj], labels: dict[str, str]) -> Obj:
        meta = service["metadata"]
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [controller_ref(service)],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
        }
        if key:
            body["ports"] = _ports_of(key)
        return body

    def _update_slice(self, key: str, current: Obj, endpoints: list[Obj], labels: dict[str, str]) -> None:
        if (current.get("endpoints") or []) == endpoints and _labels(current) == labels:
            return
        updated = {**current, "metadata": {**current["metadata"], "labels": labels}, "endpoints": endpoints}
        self._note_slice_write(key, self.client.update(updated, field_manager=SLICE_CONTROLLER))

    def _note_slice_write(self, key: str, written: Obj | None) -> None:
        rv = _as_int((written or {}).get("metadata", {}).get("resourceVersion"))
        if rv is not None:
            self._slice_writes[key] = max(rv, self._slice_writes.get(key, 0))

    def _slices_caught_up(self, key: str) -> bool:
        wrote = self._slice_writes.get(key)
        if wrote is None:
            return True
        seen = _as_int(self.slices.last_rv)
        if seen is None or seen >= wrote:
            self._slice_writes.pop(key, None)
            return True
        return False

    def _delete(self, obj: Obj) -> Obj | None:
        meta = obj["metadata"]
        try:
            return self.client.delete(
                obj["apiVersion"],
                obj["kind"],
                meta["name"],
                meta.get("namespace", ""),
                precondition_uid=meta.get("uid"),
            )
        except errors.NotFound:
            return None


def _labels(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def _as_int(resource_version: str | None) -> int | None:
    """resourceVersions are the store's global revision here (opaque elsewhere: None)."""
    try:
        return int(resource_version or "")
    except ValueError:
        return None


def _slice_service_key(s: Obj) -> list[str]:
    name = _labels(s).get(SERVICE_NAME_LABEL)
    return [f"{s['metadata'].get('namespace', '')}/{name}"] if name else []


def _endpoint_view(pod: Obj) -> tuple[Any, ...]:
    """What of a pod can change a Service's endpoints (so heartbeat-like status writes
    do not wake the controllers)."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    return (
        meta.get("labels"),
        meta.get("deletionTimestamp"),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
        status.get("podIP"),
        status.get("phase"),
        is_pod_ready(pod),
    )


def new(ctx: ControllerContext) -> EndpointsControllers:
    return EndpointsControllers(ctx)
