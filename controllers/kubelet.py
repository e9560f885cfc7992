"""The simulated kubelet: moves every pod bound to a simulated node through what users see
in `kubectl get pods` and `kubectl describe pod`.

Each pod gets a small simulated container runtime (`PodSim`): the sandbox and a pod IP
from the node's podCIDR, then init containers one by one, then the app containers, each
pulled, created and started after the delays of its behaviour rule
(controllers/kubelet_rules.py). Containers may then run forever, complete, crash into
CrashLoopBackOff, or fail their image pull into ImagePullBackOff, and restart per the
pod's restartPolicy with exponential back-off. A deleted pod gets Killing events, its
containers stop after min(terminationGracePeriodSeconds, the rule's stop time), and the
kubelet finishes the delete with grace period 0.

The runtime's state lives in memory; the pod status is written from it whenever it
differs from what the API has. All timing is done by timed requeues of the pod's key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from controllers import errors
from controllers.clock import now_rfc3339
from controllers.kubelet_rules import Behaviour, KubeletRules
from controllers.manager import ControllerContext
from controllers.nodes import POD_NODE_INDEX, is_stopped, is_terminal, pods_informer
from controllers.runtime import Controller, Obj, Result, object_key

WORKERS = 4
NO_SANDBOX_RETRY_SECONDS = 5.0

# What a container waits for next (ContainerSim.step).
PULLED, PULL_BACKOFF, PULL, STARTED, EXITED, RESTART = "pulled", "pull-backoff", "pull", "started", "exited", "restart"
WAITING, RUNNING, TERMINATED = "waiting", "running", "terminated"


@dataclass
class ContainerSim:
    """One container in the simulated runtime."""

    name: str
    image: str
    pull_policy: str
    behaviour: Behaviour
    init: bool = False
    sidecar: bool = False  # an init container with restartPolicy Always
    startup_delay: float = 0.0  # startupProbe.initialDelaySeconds
    readiness_delay: float | None = None  # readinessProbe.initialDelaySeconds; None: no probe
    probe_period: float = 10.0
    state: str = WAITING
    reason: str = ""  # waiting reason; "" means the default (ContainerCreating/PodInitializing)
    message: str = ""
    step: str = ""
    due: float = math.inf  # monotonic time of `step`
    begun: bool = False
    pull_failures: int = 0  # consecutive failed pulls (ImagePullBackOff exponent)
    exits: int = 0  # exits followed by a restart (CrashLoopBackOff exponent)
    backoff: float = 0.0
    restarts: int = 0
    container_id: str = ""
    image_id: str = ""
    started_at: str = ""
    started_due: float = math.inf  # when `started` turns true (startup probe)
    ready_due: float = math.inf  # when `ready` turns true (readiness probe); inf: never
    probe_due: float = math.inf  # next failing readiness probe (Unhealthy event)
    terminated: Obj | None = None
    last_terminated: Obj | None = None

    @property
    def done(self) -> bool:
        """An init container that no longer blocks the next one: a sidecar once it has
        started, any other once it exited with code 0."""
        if self.sidecar:
            return bool(self.container_id)
        return self.state == TERMINATED and (self.terminated or {}).get("exitCode") == 0

    def next_due(self, now: float) -> float:
        times = [self.due, self.probe_due]
        if self.state == RUNNING:
            times += [t for t in (self.started_due, self.ready_due) if t > now]
        return min(times)


@dataclass
class PodSim:
    uid: str
    node: str
    ip: str
    host_ip: str
    start_time: str
    containers: list[ContainerSim]
    killing_since: float | None = None  # when the kubelet saw the pod deleted
    finished: bool = False  # terminal status written: nothing more to do

    @property
    def inits(self) -> list[ContainerSim]:
        return [c for c in self.containers if c.init]

    @property
    def apps(self) -> list[ContainerSim]:
        return [c for c in self.containers if not c.init]

    def next_due(self, now: float) -> float:
        return min((c.next_due(now) for c in self.containers), default=math.inf)


class IPPool:
    """Pod IPs of one node's podCIDR, handed out round-robin (as host-local IPAM does) so a
    freed address is not reused at once. The first host address is the node's bridge."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr)
        self._first = int(net.network_address) + 2
        self._size = max(0, net.num_addresses - 3)
        self._next = 0
        self._owner: dict[int, str] = {}
        self._ip_of: dict[str, int] = {}

    def allocate(self, key: str) -> str | None:
        if key in self._ip_of:
            return str(ipaddress.ip_address(self._ip_of[key]))
        for i in range(self._size):
            candidate = self._first + (self._next + i) % self._size
            if candidate not in self._owner:
                self._next = (self._next + i + 1) % self._size
                return self._take(key, candidate)
        return None

    def reserve(self, key: str, ip: str) -> bool:
        """Keep `ip` for `key` (a pod that already had it), when it is free and ours."""
        try:
            value = int(ipaddress.ip_address(ip))
        except ValueError:
            return False
        if not self._first <= value < self._first + self._size or self._owner.get(value, key) != key:
            return False
        self.release(key)
        self._take(key, value)
        return True

    def _take(self, key: str, value: int) -> str:
        self._owner[value] = key
        self._ip_of[key] = value
        return str(ipaddress.ip_address(value))

    def release(self, key: str) -> None:
        value = self._ip_of.pop(key, None)
        if value is not None:
            self._owner.pop(value, None)


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (500ms, 10s, 1m20s, 5m0s), as kubelet messages show them."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, secs = divmod(round(seconds, 3), 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{secs:g}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _image_id(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    repo = image[: len(image) - len(last)] + last.split("@")[0].split(":")[0]
    return f"{repo}@sha256:{_digest(image)}"


def _probe_delay(probe: Any) -> float | None:
    return float(probe.get("initialDelaySeconds") or 0) if isinstance(probe, dict) else None


def _put_condition(conditions: list[Obj], ctype: str, status: str, reason: str, message: str, now: str) -> None:
    """Replace (or add) a pod condition; lastTransitionTime moves only with the status."""
    new: Obj = {"type": ctype, "status": status, "lastProbeTime": None}
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    for i, cond in enumerate(conditions):
        if cond.get("type") == ctype:
            same = cond.get("status") == status
            new["lastTransitionTime"] = cond.get("lastTransitionTime") if same else now
            conditions[i] = new
            return
    new["lastTransitionTime"] = now
    conditions.append(new)


CONDITION_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


class Kubelet:
    """One simulated kubelet for all the simulated nodes (a per-node event source each)."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.rules = KubeletRules.load(ctx.config.kubelet_rules)
        self.node_names = {s.name for s in ctx.config.nodes}
        self.pods = pods_informer(ctx)
        self.nodes = ctx.informers.informer("v1", "Node")
        self._sims: dict[str, PodSim] = {}
        self._pools: dict[str, IPPool] = {}
        self._images: dict[str, set[str]] = {}
        self._ipam = threading.Lock()
        self.controller = Controller("kubelet", self.reconcile, workers=WORKERS)
        self.controller.watch(self.pods, self._own_pod)
        self.nodes.add_handler(self._node_changed)

    def start(self) -> Kubelet:
        # Running pods must reclaim their IPs before new pods take any: wait for the cache.
        self.pods.wait_for_sync(timeout=30)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def _own_pod(self, pod: Obj) -> list[str]:
        return [object_key(pod)] if (pod.get("spec") or {}).get("nodeName") in self.node_names else []

    def _node_changed(self, etype: str, node: Obj, old: Obj | None) -> None:
        """A node (re)appearing or coming back to life wakes its pods."""
        name = node["metadata"]["name"]
        if name not in self.node_names or etype == "DELETED":
            return
        if old is not None and is_stopped(old) == is_stopped(node):
            return
        for pod in self.pods.cache.by_index(POD_NODE_INDEX, name):
            self.controller.queue.add(object_key(pod))

    def _recorder(self, node: str) -> Any:
        return self.ctx.recorder("kubelet", node)

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, key: str) -> Result | None:
        pod = self.pods.cache.get(key)
        node_name = ((pod or {}).get("spec") or {}).get("nodeName")
        if pod is None or node_name not in self.node_names:
            self._forget(key)
            return None
        node = self.nodes.cache.get(node_name)
        if node is None or is_stopped(node):
            return None  # no kubelet there (yet, or any more)
        sim = self._sims.get(key)
        if sim is not None and sim.uid != pod["metadata"].get("uid"):
            self._forget(key)  # a new pod with the same name
            sim = None
        if pod["metadata"].get("deletionTimestamp"):
            return self._terminate(key, pod, sim)
        if sim is None:
            if is_terminal(pod):
                return None
            sim = self._admit(key, pod, node)
            if sim is None:
                return Result(requeue_after=NO_SANDBOX_RETRY_SECONDS)
        if sim.finished:
            return None
        now = time.monotonic()
        self._advance(sim, pod, now)
        status = self._status(sim, pod, now)
        if status["phase"] in ("Succeeded", "Failed"):
            self._finish(key, sim)
            status = self._status(sim, pod, now)
        if status != pod.get("status"):
            self._write(pod, status)
        due = sim.next_due(now)
        return None if sim.finished or due == math.inf else Result(requeue_after=due - now)

    def _forget(self, key: str) -> None:
        self._sims.pop(key, None)
        self._release(key)

    def _write(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "status": status,
        }
        try:
            self.client.update_status(body, field_manager="kubelet")
        except errors.NotFound:
            pass  # deleted meanwhile; its DELETED event cleans up

    # ------------------------------------------------------------------ admission
    def _admit(self, key: str, pod: Obj, node: Obj) -> PodSim | None:
        """Create the sandbox (pod IP) and the containers' runtime state; a pod that was
        already Running (a restarted kubelet) is adopted as it is."""
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        node_name = node["metadata"]["name"]
        host_ip = next(
            (a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"),
            "",
        )
        ip = host_ip if spec.get("hostNetwork") else self._allocate(key, node, status.get("podIP") or "")
        if not ip:
            self._recorder(node_name).event(
                pod,
                "Warning",
                "FailedCreatePodSandBox",
                f"Failed to create pod sandbox: no IP addresses available in range {node['spec'].get('podCIDR')}",
            )
            return None
        containers = [self._container(pod, c, init=True) for c in spec.get("initContainers") or []]
        containers += [self._container(pod, c, init=False) for c in spec.get("containers") or []]
        sim = PodSim(
            uid=pod["metadata"].get("uid", ""),
            node=node_name,
            ip=ip,
            host_ip=host_ip,
            start_time=status.get("startTime") or now_rfc3339(),
            containers=containers,
        )
        now = time.monotonic()
        if status.get("phase") == "Running":
            self._adopt(sim, status, now)
        self._proceed(sim, pod, now)
        self._sims[key] = sim
        return sim

    def _container(self, pod: Obj, spec: Obj, init: bool) -> ContainerSim:
        readiness = spec.get("readinessProbe")
        return ContainerSim(
            name=spec.get("name", ""),
            image=spec.get("image", ""),
            pull_policy=spec.get("imagePullPolicy") or "IfNotPresent",
            behaviour=self.rules.behaviour(pod, spec),
            init=init,
            sidecar=init and spec.get("restartPolicy") == "Always",
            startup_delay=_probe_delay(spec.get("startupProbe")) or 0.0,
            readiness_delay=_probe_delay(readiness),
            probe_period=float((readiness or {}).get("periodSeconds") or 10),
        )

    def _adopt(self, sim: PodSim, status: Obj, now: float) -> None:
        """Take over containers a previous kubelet left running."""
        statuses = {
            (init, cs.get("name")): cs
            for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses"))
            for cs in status.get(key) or []
        }
        for c in sim.containers:
            cs = statuses.get((c.init, c.name)) or {}
            state = cs.get("state") or {}
            c.begun = True
            c.restarts = int(cs.get("restartCount") or 0)
            c.container_id, c.image_id = cs.get("containerID", ""), cs.get("imageID", "")
            c.last_terminated = (cs.get("lastState") or {}).get("terminated")
            if "terminated" in state:
                c.state, c.terminated = TERMINATED, state["terminated"]
            elif "running" in state:
                self._run(c, now, state["running"].get("startedAt") or now_rfc3339())
            else:
                c.begun = False  # waiting: it starts over

    def _allocate(self, key: str, node: Obj, previous: str) -> str | None:
        name = node["metadata"]["name"]
        with self._ipam:
            pool = self._pools.get(name)
            if pool is None:
                cidr = (node.get("spec") or {}).get("podCIDR")
                if not cidr:
                    return None
                pool = self._pools[name] = IPPool(cidr)
                for other in self.pods.cache.by_index(POD_NODE_INDEX, name):
                    ip = (other.get("status") or {}).get("podIP")
                    if ip and not is_terminal(other) and not (other.get("spec") or {}).get("hostNetwork"):
                        pool.reserve(object_key(other), ip)
            if previous and pool.reserve(key, previous):
                return previous
            return pool.allocate(key)

    def _release(self, key: str) -> None:
        """Free the pod IP of `key` (whichever node's pool holds it; a pool may hold IPs of
        pods that were running before this kubelet started)."""
        with self._ipam:
            for pool in self._pools.values():
                pool.release(key)

    # ------------------------------------------------------------------ the runtime
    def _proceed(self, sim: PodSim, pod: Obj, t: float) -> None:
        """Begin the next init container, or every app container once all inits are done."""
        for c in sim.inits:
            if c.done:
                continue
            if not c.begun:
                self._begin(sim, pod, c, t)
            return
        for c in sim.apps:
            if not c.begun:
                self._begin(sim, pod, c, t)

    def _begin(self, sim: PodSim, pod: Obj, c: ContainerSim, t: float) -> None:
        """Pull the image if needed, then create and start the container."""
        c.begun = True
        rec = self._recorder(sim.node)
        present = c.image in self._images.get(sim.node, set())
        if c.pull_policy == "Always" or (c.pull_policy == "IfNotPresent" and not present):
            rec.event(pod, "Normal", "Pulling", f'Pulling image "{c.image}"')
            c.step, c.due = PULLED, t + c.behaviour.pull.seconds
        else:
            rec.event(pod, "Normal", "Pulled", f'Container image "{c.image}" already present on machine')
            c.step, c.due = STARTED, t + c.behaviour.start_seconds

    def _advance(self, sim: PodSim, pod: Obj, now: float) -> None:
        """Play every runtime step that is due, in time order."""
        rec = self._recorder(sim.node)
        for c in sim.containers:
            if c.probe_due <= now:
                rec.event(pod, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503")
                c.probe_due = now + c.probe_period
        while True:
            due = [c for c in sim.containers if c.due <= now]
            if not due:
                return
            c = min(due, key=lambda c: c.due)
            step, t = c.step, c.due
            c.step, c.due = "", math.inf
            if step == PULLED:
                self._pulled(sim, pod, c, t)
            elif step == PULL_BACKOFF:
                c.reason, c.message = "ImagePullBackOff", f'Back-off pulling image "{c.image}"'
                rec.event(pod, "Normal", "BackOff", c.message)
                rec.event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
                c.step, c.due = PULL, t + c.backoff / 2
            elif step == PULL:
                self._begin(sim, pod, c, t)
            elif step == STARTED:
                self._started(sim, pod, c, t)
            elif step == EXITED:
                self._exited(sim, pod, c, t)
            elif step == RESTART:
                c.restarts += 1
                self._begin(sim, pod, c, t)

    def _pulled(self, sim: PodSim, pod: Obj, c: ContainerSim, t: float) -> None:
        rec = self._recorder(sim.node)
        pull = c.behaviour.pull
        if pull.fail:
            c.pull_failures += 1
            c.backoff = self.rules.back_off.delay(c.pull_failures)
            c.reason = pull.reason
            c.message = pull.message or (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{c.image}": not found'
            )
            rec.event(pod, "Warning", "Failed", f'Failed to pull image "{c.image}": {c.message}')
            rec.event(pod, "Warning", "Failed", f"Error: {c.reason}")
            # ErrImagePull shows for half the back-off, ImagePullBackOff for the rest.
            c.step, c.due = PULL_BACKOFF, t + c.backoff / 2
            return
        c.pull_failures = 0
        self._images.setdefault(sim.node, set()).add(c.image)
        took = go_duration(pull.seconds)
        rec.event(
            pod, "Normal", "Pulled", f'Successfully pulled image "{c.image}" in {took} ({took} including waiting)'
        )
        c.step, c.due = STARTED, t + c.behaviour.start_seconds

    def _started(self, sim: PodSim, pod: Obj, c: ContainerSim, t: float) -> None:
        rec = self._recorder(sim.node)
        c.container_id = f"containerd://{_digest(sim.uid, c.name, str(c.restarts))}"
        c.image_id = _image_id(c.image)
        rec.event(pod, "Normal", "Created", f"Created container: {c.name}")
        rec.event(pod, "Normal", "Started", f"Started container {c.name}")
        self._run(c, t, now_rfc3339())
        if c.sidecar:
            self._proceed(sim, pod, t)

    def _run(self, c: ContainerSim, t: float, started_at: str) -> None:
        """Mark a container running since `t`, with its probes' and its exit's timings."""
        c.state, c.reason, c.message, c.started_at = RUNNING, "", "", started_at
        exit_after = c.behaviour.run.exit_after(init=c.init and not c.sidecar)
        if exit_after is not None:
            c.step, c.due = EXITED, t + exit_after
        c.started_due = t + c.startup_delay
        if c.readiness_delay is None:
            c.ready_due = c.started_due
        elif c.behaviour.readiness_fails:
            c.ready_due, c.probe_due = math.inf, t + max(c.readiness_delay, c.startup_delay)
        else:
            c.ready_due = t + max(c.readiness_delay, c.startup_delay)

    def _stopped(self, c: ContainerSim, code: int, reason: str) -> None:
        c.state = TERMINATED
        c.terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": c.container_id,
        }
        c.started_due = c.ready_due = c.probe_due = math.inf

    def _exited(self, sim: PodSim, pod: Obj, c: ContainerSim, t: float) -> None:
        code, reason = c.behaviour.run.exit_status()
        self._stopped(c, code, reason)
        if self._restarts(pod, c, code):
            c.exits += 1
            delay = self.rules.back_off.delay(c.exits)
            meta = pod["metadata"]
            who = f"{meta['name']}_{meta['namespace']}({sim.uid})"
            c.last_terminated, c.terminated = c.terminated, None
            c.state, c.reason = WAITING, "CrashLoopBackOff"
            c.message = f"back-off {go_duration(delay)} restarting failed container={c.name} pod={who}"
            self._recorder(sim.node).event(
                pod, "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {who}"
            )
            c.step, c.due = RESTART, t + delay
        elif c.init and code == 0:
            self._proceed(sim, pod, t)

    @staticmethod
    def _restarts(pod: Obj, c: ContainerSim, code: int) -> bool:
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        if c.sidecar:
            return True
        if c.init:
            return code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def _finish(self, key: str, sim: PodSim) -> None:
        """A pod that reached Succeeded or Failed: stop what still runs, free the sandbox."""
        for c in sim.containers:
            if c.state == RUNNING:
                self._stopped(c, 0, "Completed")
            c.step, c.due = "", math.inf
        sim.finished = True
        self._release(key)

    # ------------------------------------------------------------------ termination
    def _terminate(self, key: str, pod: Obj, sim: PodSim | None) -> Result | None:
        """Stop the containers of a deleted pod within its grace period, then finish the
        deletion (grace period 0) so the pod goes away."""
        if is_terminal(pod) or (sim is not None and sim.finished and sim.killing_since is None):
            return None  # nothing runs; the API deletes it (or waits for its finalizers)
        if sim is not None and not sim.finished:
            now = time.monotonic()
            if sim.killing_since is None:
                sim.killing_since = now
                for c in sim.containers:
                    c.step, c.due = "", math.inf
                    if c.state == RUNNING:
                        self._recorder(sim.node).event(pod, "Normal", "Killing", f"Stopping container {c.name}")
            # Read each time: a second delete may have shortened the grace period.
            grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            running = [c for c in sim.containers if c.state == RUNNING]
            done_at = sim.killing_since + min(grace, max((c.behaviour.stop_seconds for c in running), default=0.0))
            if now < done_at:
                return Result(requeue_after=done_at - now)
            for c in running:
                self._stopped(c, *((0, "Completed") if c.behaviour.stop_seconds <= grace else (137, "Error")))
            sim.finished = True
            self._release(key)
            self._write(pod, self._status(sim, pod, now))
        try:
            self.client.delete(
                "v1",
                "Pod",
                pod["metadata"]["name"],
                pod["metadata"]["namespace"],
                grace_period_seconds=0,
                precondition_uid=pod["metadata"].get("uid"),
            )
        except (errors.NotFound, errors.Conflict):
            pass  # gone already, or a new pod of that name
        return None

    # ------------------------------------------------------------------ status
    def _phase(self, sim: PodSim, pod: Obj) -> str:
        """The pod phase from container states, as the kubelet's getPhase computes it."""
        if sim.killing_since is not None:
            ok = all(c.state == TERMINATED and (c.terminated or {}).get("exitCode") == 0 for c in sim.apps)
            return "Succeeded" if ok else "Failed"
        for c in sim.inits:
            if c.state == TERMINATED and not c.done:
                return "Failed"  # an init container failed and will not run again (restartPolicy Never)
            if not c.done:
                return "Pending"
        running = waiting = stopped = succeeded = 0
        for c in sim.apps:
            if c.state == RUNNING:
                running += 1
            elif c.state == TERMINATED:
                stopped += 1
                succeeded += (c.terminated or {}).get("exitCode") == 0
            elif c.last_terminated is not None:
                stopped += 1
            else:
                waiting += 1
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if stopped == succeeded:
            return "Running" if policy == "Always" else "Succeeded"
        return "Failed" if policy == "Never" else "Running"

    def _status(self, sim: PodSim, pod: Obj, now: float) -> Obj:
        old = pod.get("status") or {}
        status = dict(old)
        phase = self._phase(sim, pod)
        terminal = phase in ("Succeeded", "Failed")
        has_inits = bool(sim.inits)
        status["phase"] = phase
        status["hostIP"], status["hostIPs"] = sim.host_ip, [{"ip": sim.host_ip}]
        status["podIP"], status["podIPs"] = sim.ip, [{"ip": sim.ip}]
        status["startTime"] = sim.start_time
        if has_inits:
            status["initContainerStatuses"] = [self._container_status(c, now, "PodInitializing") for c in sim.inits]
        default_wait = "PodInitializing" if has_inits else "ContainerCreating"
        status["containerStatuses"] = [self._container_status(c, now, default_wait) for c in sim.apps]
        status["conditions"] = self._conditions(sim, pod, status, terminal)
        return status

    @staticmethod
    def _container_status(c: ContainerSim, now: float, default_wait: str) -> Obj:
        if c.state == RUNNING:
            state: Obj = {"running": {"startedAt": c.started_at}}
        elif c.state == TERMINATED:
            state = {"terminated": c.terminated}
        else:
            waiting = {"reason": c.reason or default_wait}
            if c.message:
                waiting["message"] = c.message
            state = {"waiting": waiting}
        out: Obj = {
            "name": c.name,
            "image": c.image,
            "imageID": c.image_id,
            "ready": c.state == RUNNING and now >= c.ready_due,
            "restartCount": c.restarts,
            "started": c.state == RUNNING and now >= c.started_due,
            "state": state,
            "lastState": {"terminated": c.last_terminated} if c.last_terminated else {},
        }
        if c.container_id:
            out["containerID"] = c.container_id
        return out

    @staticmethod
    def _conditions(sim: PodSim, pod: Obj, status: Obj, terminal: bool) -> list[Obj]:
        now = now_rfc3339()
        conditions = [dict(c) for c in (pod.get("status") or {}).get("conditions") or []]
        _put_condition(conditions, "PodReadyToStartContainers", "False" if terminal else "True", "", "", now)
        pending_inits = [c.name for c in sim.inits if not c.done]
        if pending_inits:
            names = " ".join(pending_inits)
            message = f"containers with incomplete status: [{names}]"
            _put_condition(conditions, "Initialized", "False", "ContainersNotInitialized", message, now)
        else:
            _put_condition(conditions, "Initialized", "True", "", "", now)
        statuses = [cs for cs in status.get("initContainerStatuses") or [] if cs["name"] in _sidecars(sim)]
        unready = [cs["name"] for cs in statuses + status["containerStatuses"] if not cs["ready"]]
        gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
        gate_status = {c.get("type"): c.get("status") for c in conditions}
        failed_gates = [g for g in gates if gate_status.get(g) != "True"]
        if terminal:
            for ctype in ("Ready", "ContainersReady"):
                _put_condition(conditions, ctype, "False", "PodCompleted", "", now)
        elif unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            _put_condition(conditions, "Ready", "False", "ContainersNotReady", message, now)
            _put_condition(conditions, "ContainersReady", "False", "ContainersNotReady", message, now)
        else:
            _put_condition(conditions, "ContainersReady", "True", "", "", now)
            if failed_gates:
                gate = failed_gates[0]
                message = (
                    f'corresponding condition of pod readiness gate "{gate}" does not exist.'
                    if gate not in gate_status
                    else f'the status of pod readiness gate "{gate}" is not "True", but {gate_status[gate]}'
                )
                _put_condition(conditions, "Ready", "False", "ReadinessGatesNotReady", message, now)
            else:
                _put_condition(conditions, "Ready", "True", "", "", now)
        if not any(c.get("type") == "PodScheduled" for c in conditions):
            _put_condition(conditions, "PodScheduled", "True", "", "", now)
        rank = {t: i for i, t in enumerate(CONDITION_ORDER)}
        return sorted(conditions, key=lambda c: rank.get(c.get("type", ""), len(rank)))


def _sidecars(sim: PodSim) -> set[str]:
    return {c.name for c in sim.inits if c.sidecar}


def new(ctx: ControllerContext) -> Kubelet:
    return Kubelet(ctx)
