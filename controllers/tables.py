"""Server-side printing: `meta.k8s.io/v1` Tables, which is what `kubectl get` asks for.

kubectl does not know how to print a Deployment; it asks the server for a Table (Accept
`application/json;as=Table;v=v1;g=meta.k8s.io`) and prints the columns it gets, hiding the
priority>0 ones unless `-o wide`, and adding NAMESPACE (`-A`) and label columns from each
row's object metadata itself. So every column here is computed the way the real API server
computes it (pod STATUS like `CrashLoopBackOff` or `Init:0/1`, ages like `3m20s`), and custom
resources get their CRD's additionalPrinterColumns.

Cells are sent already formatted: the real server turns ages into `5m`, and kubectl prints
a cell as it comes, except that it shows a missing (null) cell as `<none>`."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from controllers.kinds import ResourceType

JSON = dict[str, Any]
Row = list[Any]

_NAME_DESC = "Name must be unique within a namespace. Clients use it to refer to the object."
_AGE_DESC = "When the object was created, as time elapsed since then."
_CONTAINERS_DESC = "Names of each container in the template."
_IMAGES_DESC = "Images referenced by each container in the template."
_SELECTOR_DESC = "Label query over the objects this one manages."


def wants_table(accept_header: str) -> bool:
    """True when the client asks for a Table (`as=Table;g=meta.k8s.io`, v1 or v1beta1).

    The answer is a `meta.k8s.io/v1` Table with Content-Type `application/json`."""
    for media_type in accept_header.split(","):
        base, *params = (p.strip() for p in media_type.split(";"))
        values = dict(p.partition("=")[::2] for p in params)
        if (
            base == "application/json"
            and values.get("as") == "Table"
            and values.get("g") == "meta.k8s.io"
            and values.get("v") in ("v1", "v1beta1")
        ):
            return True
    return False


# ---------------------------------------------------------------- time


def human_duration(seconds: float) -> str:
    """Elapsed time with two or three significant figures, the way kubectl shows ages:
    `45s`, `3m20s`, `15m`, `5h10m`, `20h`, `2d3h`, `30d`, `2y40d`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def age(timestamp: Any, now: dt.datetime) -> str:
    """Age of an RFC 3339 timestamp at `now`, or `<unknown>` when there is none."""
    when = _parse_time(timestamp)
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


# ---------------------------------------------------------------- helpers


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _meta(obj: JSON) -> JSON:
    return obj.get("metadata") or {}


def _name(obj: JSON) -> str:
    return str(_meta(obj).get("name", ""))


def _created(obj: JSON, now: dt.datetime) -> str:
    return age(_meta(obj).get("creationTimestamp"), now)


def _deleting(obj: JSON) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def _col(name: str, type_: str, description: str, priority: int = 0, fmt: str = "") -> JSON:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def _name_col() -> JSON:
    return _col("Name", "string", _NAME_DESC, fmt="name")


def _age_col() -> JSON:
    return _col("Age", "string", _AGE_DESC)


def _containers(pod_spec: Any) -> tuple[str, str]:
    containers = _get(pod_spec, "containers") or []
    return (
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
    )


def format_labels(labels: Any) -> str:
    """`a=1,b=2` with keys sorted, or `<none>`."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_selector(selector: Any) -> str:
    """A LabelSelector as kubectl writes it: `app=web,tier in (a,b),!legacy`, or `<none>`."""
    if not isinstance(selector, dict):
        return "<none>"
    parts: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key", ""), req.get("operator", ""), sorted(req.get("values") or [])
        text = {
            "In": f"{key} in ({','.join(values)})",
            "NotIn": f"{key} notin ({','.join(values)})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, f"{key} {op}")
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts)) or "<none>"


def _replicas(obj: JSON) -> int:
    """spec.replicas, which the API server defaults to 1."""
    value = _get(obj, "spec", "replicas")
    return 1 if value is None else int(value)


def _int(value: Any) -> int:
    return int(value or 0)


def _access_modes(modes: Any) -> str:
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    present = set(modes or [])
    return ",".join(abbrev for mode, abbrev in short.items() if mode in present)


def _storage_class(obj: JSON) -> str:
    return str(
        _get(obj, "spec", "storageClassName")
        or (_meta(obj).get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class", "")
    )


# ---------------------------------------------------------------- pods


def pod_status(pod: JSON) -> str:
    """The STATUS column of `kubectl get pods`: the phase, refined by init and container
    states (`Init:0/2`, `Init:CrashLoopBackOff`, `ContainerCreating`, `CrashLoopBackOff`,
    `Completed`, `Error`, `OOMKilled`) and by deletion (`Terminating`)."""
    return _pod_summary(pod)[0]


def _pod_summary(pod: JSON) -> tuple[str, int, int, int, str | None]:
    """(status, ready containers, total containers, restarts, last restart time)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    sidecars = {name for name, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = restarts = sidecar_restarts = 0
    last_restart = last_sidecar_restart = None

    def finished_at(cs: JSON) -> str | None:
        return _get(cs, "lastState", "terminated", "finishedAt")

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += _int(cs.get("restartCount"))
        last_restart = max(filter(None, (last_restart, finished_at(cs))), default=None)
        is_sidecar = cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += _int(cs.get("restartCount"))
            last_sidecar_restart = max(filter(None, (last_sidecar_restart, finished_at(cs))), default=None)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and _int(terminated.get("exitCode")) == 0:
            continue
        if is_sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(
        c.get("type") == "Initialized" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    if not initializing or initialized:
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            last_restart = max(filter(None, (last_restart, finished_at(cs))), default=None)
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{_int(terminated.get('exitCode'))}"
                )
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            reason = "Running" if pod_ready else "NotReady"

    if _deleting(pod) and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif _deleting(pod) and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_row(pod: JSON, now: dt.datetime) -> Row:
    reason, ready, total, restarts, last_restart = _pod_summary(pod)
    restarts_text = str(restarts)
    if restarts and last_restart:
        restarts_text = f"{restarts} ({age(last_restart, now)} ago)"
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        passed = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_text = f"{passed}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _created(pod, now),
        ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


_POD_COLUMNS = [
    _name_col(),
    _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "string", "The aggregate status of the containers in this pod."),
    _col("Restarts", "string", "How many times the containers restarted, and when the last one did."),
    _age_col(),
    _col("IP", "string", "The pod's IP address.", 1),
    _col("Node", "string", "The node the pod is bound to.", 1),
    _col("Nominated Node", "string", "The node preemption made room on for this pod.", 1),
    _col("Readiness Gates", "string", "How many of the pod's readiness gates are met.", 1),
]


def _pod_conditions(pod: JSON) -> list[JSON] | None:
    phase = _get(pod, "status", "phase")
    if phase == "Succeeded":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


# ---------------------------------------------------------------- workloads


def _deployment_row(obj: JSON, now: dt.datetime) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(_get(obj, "spec", "template", "spec"))
    return [
        _name(obj),
        f"{_int(status.get('readyReplicas'))}/{_replicas(obj)}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _created(obj, now),
        names,
        images,
        format_selector(_get(obj, "spec", "selector")),
    ]


def _replica_set_row(obj: JSON, now: dt.datetime) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(_get(obj, "spec", "template", "spec"))
    selector = _get(obj, "spec", "selector")
    selector_text = format_labels(selector) if obj.get("kind") == "ReplicationController" else format_selector(selector)
    return [
        _name(obj),
        _replicas(obj),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _created(obj, now),
        names,
        images,
        selector_text,
    ]


def _stateful_set_row(obj: JSON, now: dt.datetime) -> Row:
    names, images = _containers(_get(obj, "spec", "template", "spec"))
    return [
        _name(obj),
        f"{_int(_get(obj, 'status', 'readyReplicas'))}/{_replicas(obj)}",
        _created(obj, now),
        names,
        images,
    ]


def _daemon_set_row(obj: JSON, now: dt.datetime) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(_get(obj, "spec", "template", "spec"))
    return [
        _name(obj),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        format_labels(_get(obj, "spec", "template", "spec", "nodeSelector")),
        _created(obj, now),
        names,
        images,
        format_selector(_get(obj, "spec", "selector")),
    ]


def _condition_true(obj: JSON, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in _get(obj, "status", "conditions") or [])


def _job_row(obj: JSON, now: dt.datetime) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    duration = ""
    if started:
        duration = human_duration(((finished or now) - started).total_seconds())
    if _condition_true(obj, "Complete"):
        state = "Complete"
    elif _condition_true(obj, "Failed"):
        state = "Failed"
    elif _deleting(obj):
        state = "Terminating"
    elif _condition_true(obj, "Suspended"):
        state = "Suspended"
    elif _condition_true(obj, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_get(spec, "template", "spec"))
    return [
        _name(obj),
        state,
        completions,
        duration,
        _created(obj, now),
        names,
        images,
        format_selector(spec.get("selector")),
    ]


def _cron_job_row(obj: JSON, now: dt.datetime) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    last = status.get("lastScheduleTime")
    job_spec = _get(spec, "jobTemplate", "spec")
    names, images = _containers(_get(job_spec, "template", "spec"))
    return [
        _name(obj),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or []),
        age(last, now) if last else "<none>",
        _created(obj, now),
        names,
        images,
        format_selector(_get(job_spec, "selector")),
    ]


_WIDE_TEMPLATE = [
    _col("Containers", "string", _CONTAINERS_DESC, 1),
    _col("Images", "string", _IMAGES_DESC, 1),
    _col("Selector", "string", _SELECTOR_DESC, 1),
]
_DEPLOYMENT_COLUMNS = [
    _name_col(),
    _col("Ready", "string", "Ready pods out of desired."),
    _col("Up-to-date", "integer", "Pods running the current template."),
    _col("Available", "integer", "Pods ready for at least minReadySeconds."),
    _age_col(),
    *_WIDE_TEMPLATE,
]
_REPLICA_SET_COLUMNS = [
    _name_col(),
    _col("Desired", "integer", "The number of pods wanted."),
    _col("Current", "integer", "The number of pods that exist."),
    _col("Ready", "integer", "The number of ready pods."),
    _age_col(),
    *_WIDE_TEMPLATE,
]
_STATEFUL_SET_COLUMNS = [
    _name_col(),
    _col("Ready", "string", "Ready pods out of desired."),
    _age_col(),
    *_WIDE_TEMPLATE[:2],
]
_DAEMON_SET_COLUMNS = [
    _name_col(),
    _col("Desired", "integer", "Nodes that should run the daemon pod."),
    _col("Current", "integer", "Nodes running at least one daemon pod."),
    _col("Ready", "integer", "Nodes whose daemon pod is ready."),
    _col("Up-to-date", "integer", "Nodes running the current template."),
    _col("Available", "integer", "Nodes whose daemon pod is available."),
    _col("Node Selector", "string", "Which nodes the pods run on."),
    _age_col(),
    *_WIDE_TEMPLATE,
]
_JOB_COLUMNS = [
    _name_col(),
    _col("Status", "string", "Status of the job."),
    _col("Completions", "string", "Succeeded pods out of the completions wanted."),
    _col("Duration", "string", "Time the job took, or has been running."),
    _age_col(),
    *_WIDE_TEMPLATE,
]
_CRON_JOB_COLUMNS = [
    _name_col(),
    _col("Schedule", "string", "The cron schedule."),
    _col("Timezone", "string", "The schedule's zone."),
    _col("Suspend", "boolean", "Whether new runs are suspended."),
    _col("Active", "integer", "Jobs running now."),
    _col("Last Schedule", "string", "When a job was last started."),
    _age_col(),
    *_WIDE_TEMPLATE,
]


# ---------------------------------------------------------------- networking


def _service_external_ip(obj: JSON) -> str:
    spec = obj.get("spec") or {}
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if svc_type == "LoadBalancer":
        ingress = _get(obj, "status", "loadBalancer", "ingress") or []
        lb = list(
            dict.fromkeys(str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname"))
        )
        return ",".join(lb + external) or "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_row(obj: JSON, now: dt.datetime) -> Row:
    spec = obj.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        ports.append(f"{p.get('port')}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p.get('port')}/{proto}")
    return [
        _name(obj),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(obj),
        ",".join(ports) or "<none>",
        _created(obj, now),
        format_labels(spec.get("selector")),
    ]


_SERVICE_COLUMNS = [
    _name_col(),
    _col("Type", "string", "How the service is exposed."),
    _col("Cluster-IP", "string", "The virtual IP inside the cluster."),
    _col("External-IP", "string", "Addresses reachable from outside the cluster."),
    _col("Port(s)", "string", "The ports the service exposes."),
    _age_col(),
    _col("Selector", "string", "Pods with these labels back the service.", 1),
]


def _endpoints_text(obj: JSON) -> str:
    shown: list[str] = []
    count = 0
    for subset in obj.get("subsets") or []:
        addresses = [a.get("ip", "") for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        pairs = (
            list(addresses)
            if not ports
            else [
                f"[{ip}]:{p.get('port')}" if ":" in ip else f"{ip}:{p.get('port')}" for p in ports for ip in addresses
            ]
        )
        count += len(pairs)
        shown.extend(pairs[: max(0, 3 - len(shown))])
    if not obj.get("subsets"):
        return "<none>"
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


def _ingress_row(obj: JSON, now: dt.datetime) -> Row:
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    hosts = [r["host"] for r in rules if r.get("host")][:3]
    hosts_text = ",".join(hosts) or "*"
    if len(rules) > 3:
        hosts_text += f" + {len(rules) - 3} more..."
    ingress = _get(obj, "status", "loadBalancer", "ingress") or []
    address = ",".join(
        dict.fromkeys(str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname"))
    )
    return [
        _name(obj),
        spec.get("ingressClassName") or "<none>",
        hosts_text,
        address,
        "80, 443" if spec.get("tls") else "80",
        _created(obj, now),
    ]


def _endpoint_slice_row(obj: JSON, now: dt.datetime) -> Row:
    def more(items: list[str]) -> str:
        text = ",".join(items[:3])
        return f"{text} + {len(items) - 3} more..." if len(items) > 3 else text or "<unset>"

    ports = [str(p["port"]) if p.get("port") is not None else str(p.get("name") or "*") for p in obj.get("ports") or []]
    addresses = [str(a) for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(obj), obj.get("addressType", ""), more(ports), more(addresses), _created(obj, now)]


# ---------------------------------------------------------------- cluster and config


def _node_row(obj: JSON, now: dt.datetime) -> Row:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    states = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if _get(obj, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in (_meta(obj).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/") :]:
            roles.add(key[len("node-role.kubernetes.io/") :])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        return next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == kind), "<none>")

    return [
        _name(obj),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        _created(obj, now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


_NODE_COLUMNS = [
    _name_col(),
    _col("Status", "string", "The status of the node."),
    _col("Roles", "string", "The roles of the node."),
    _age_col(),
    _col("Version", "string", "The kubelet's version."),
    _col("Internal-IP", "string", "The node's internal address.", 1),
    _col("External-IP", "string", "The node's external address.", 1),
    _col("OS-Image", "string", "The node's operating system.", 1),
    _col("Kernel-Version", "string", "The node's kernel.", 1),
    _col("Container-Runtime", "string", "The node's container runtime.", 1),
]


def _event_row(obj: JSON, now: dt.datetime) -> Row:
    """Core v1 events, and events.k8s.io/v1 events through their deprecated* mirror fields."""
    first = obj.get("firstTimestamp") or obj.get("deprecatedFirstTimestamp")
    first_text = age(first, now) if first else age(obj.get("eventTime"), now)
    last = obj.get("lastTimestamp") or obj.get("deprecatedLastTimestamp")
    last_text = age(last, now) if last else first_text
    count = _int(obj.get("count") or obj.get("deprecatedCount"))
    series = obj.get("series")
    if series:
        last_text = age(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    count = count or 1
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = obj.get("source") or obj.get("deprecatedSource") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    host = source.get("host") or obj.get("reportingInstance") or ""
    message = obj.get("message") if "message" in obj else obj.get("note", "")
    return [
        last_text,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {host}" if host else component,
        str(message or "").strip(),
        first_text,
        count,
        _name(obj),
    ]


_EVENT_COLUMNS = [
    _col("Last Seen", "string", "When the event was last seen."),
    _col("Type", "string", "Normal or Warning."),
    _col("Reason", "string", "Why the event happened, in CamelCase."),
    _col("Object", "string", "The object the event is about."),
    _col("Subobject", "string", "The part of the object, e.g. a container.", 1),
    _col("Source", "string", "The component that reported the event.", 1),
    _col("Message", "string", "A human-readable description."),
    _col("First Seen", "string", "When the event was first seen.", 1),
    _col("Count", "string", "How many times it happened.", 1),
    _col("Name", "string", _NAME_DESC, 1, "name"),
]


def _pvc_row(obj: JSON, now: dt.datetime) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = "Terminating" if _deleting(obj) else status.get("phase") or "Pending"
    bound = bool(spec.get("volumeName"))
    capacity = str(_get(status, "capacity", "storage") or "") if bound else ""
    return [
        _name(obj),
        phase,
        spec.get("volumeName", ""),
        capacity,
        _access_modes(status.get("accessModes")) if bound else "",
        _storage_class(obj),
        spec.get("volumeAttributesClassName") or "<unset>",
        _created(obj, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _pv_row(obj: JSON, now: dt.datetime) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    claim = spec.get("claimRef")
    return [
        _name(obj),
        str(_get(spec, "capacity", "storage") or ""),
        _access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        "Terminating" if _deleting(obj) else status.get("phase") or "Pending",
        f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else "",
        _storage_class(obj),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason", ""),
        _created(obj, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _hpa_metrics(obj: JSON) -> str:
    specs = _get(obj, "spec", "metrics") or []
    if not specs:
        return "<none>"
    current = _get(obj, "status", "currentMetrics") or []
    shown = []
    for i, spec in enumerate(specs):
        kind = spec.get("type", "")
        source = (
            spec.get(
                {
                    "Resource": "resource",
                    "ContainerResource": "containerResource",
                    "Pods": "pods",
                    "Object": "object",
                    "External": "external",
                }.get(kind, ""),
                {},
            )
            or {}
        )
        status = (
            current[i].get(
                {
                    "Resource": "resource",
                    "ContainerResource": "containerResource",
                    "Pods": "pods",
                    "Object": "object",
                    "External": "external",
                }.get(kind, "")
            )
            or {}
            if i < len(current)
            else {}
        )
        target, now_value = source.get("target") or {}, status.get("current") or {}
        prefix = f"{source.get('name')}: " if kind in ("Resource", "ContainerResource") else ""
        if target.get("averageUtilization") is not None or (
            kind in ("Resource", "ContainerResource") and target.get("averageValue") is None
        ):
            have = (
                f"{now_value['averageUtilization']}%"
                if now_value.get("averageUtilization") is not None
                else "<unknown>"
            )
            want = f"{target['averageUtilization']}%" if target.get("averageUtilization") is not None else "<auto>"
            shown.append(f"{prefix}{have}/{want}")
        elif target.get("averageValue") is not None:
            avg = " (avg)" if kind in ("Object", "External") else ""
            shown.append(f"{prefix}{now_value.get('averageValue', '<unknown>')}/{target['averageValue']}{avg}")
        else:
            shown.append(f"{prefix}{now_value.get('value', '<unknown>')}/{target.get('value', '<unknown>')}")
    text = ", ".join(shown[:2])
    return f"{text} + {len(shown) - 2} more..." if len(shown) > 2 else text


def _hpa_row(obj: JSON, now: dt.datetime) -> Row:
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [
        _name(obj),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _hpa_metrics(obj),
        "<unset>" if min_pods is None else str(min_pods),
        _int(spec.get("maxReplicas")),
        _int(_get(obj, "status", "currentReplicas")),
        _created(obj, now),
    ]


def _subjects(obj: JSON) -> tuple[str, str, str]:
    users, groups, sas = [], [], []
    for s in obj.get("subjects") or []:
        if s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def _role_binding_row(obj: JSON, now: dt.datetime) -> Row:
    ref = obj.get("roleRef") or {}
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", _created(obj, now), *_subjects(obj)]


def _controller_revision_row(obj: JSON, now: dt.datetime) -> Row:
    owner = next((o for o in _meta(obj).get("ownerReferences") or [] if o.get("controller")), None)
    controller = "<none>"
    if owner:
        group = str(owner.get("apiVersion", "")).rpartition("/")[0]
        kind = str(owner.get("kind", "")).lower()
        controller = f"{kind}.{group}/{owner.get('name', '')}" if group else f"{kind}/{owner.get('name', '')}"
    return [_name(obj), controller, _int(obj.get("revision")), _created(obj, now)]


def _resource_quota_row(obj: JSON, now: dt.datetime) -> Row:
    hard, used = _get(obj, "status", "hard") or {}, _get(obj, "status", "used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        text = f"{resource}: {used.get(resource, '0')}/{hard[resource]}"
        (limits if resource.startswith("limits.") else requests).append(text)
    return [_name(obj), _created(obj, now), ", ".join(requests), ", ".join(limits)]


def _storage_class_row(obj: JSON, now: dt.datetime) -> Row:
    annotations = _meta(obj).get("annotations") or {}
    default = "true" in (
        annotations.get("storageclass.kubernetes.io/is-default-class"),
        annotations.get("storageclass.beta.kubernetes.io/is-default-class"),
    )
    return [
        _name(obj) + (" (default)" if default else ""),
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion")),
        _created(obj, now),
    ]


def _created_at_row(obj: JSON, now: dt.datetime) -> Row:
    """The default convertor's row: the creation time itself, which kubectl prints as is."""
    created = _parse_time(_meta(obj).get("creationTimestamp"))
    return [_name(obj), created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else None]


def _simple(*cells: Callable[[JSON], Any]) -> Callable[[JSON, dt.datetime], Row]:
    """A printer whose row is NAME, the given cells, then AGE."""

    def row(obj: JSON, now: dt.datetime) -> Row:
        return [_name(obj), *(cell(obj) for cell in cells), _created(obj, now)]

    return row


def _ingress_class_parameters(obj: JSON) -> str:
    params = _get(obj, "spec", "parameters")
    if not params:
        return "<none>"
    kind = params.get("kind", "") + (f".{params['apiGroup']}" if params.get("apiGroup") else "")
    return f"{kind}/{params.get('name', '')}"


def _pdb_value(obj: JSON, field: str) -> str:
    value = _get(obj, "spec", field)
    return "N/A" if value is None else str(value)


_Printer = tuple[list[JSON], Callable[[JSON, dt.datetime], Row]]
_CREATED_AT: _Printer = (
    [_name_col(), _col("Created At", "date", "When the object was created.")],
    _created_at_row,
)

# (group, kind) -> (columns, row function). Kinds the real server prints with its default
# convertor (NAME, CREATED AT) are listed too, so they look the same here.
_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "Pod"): (_POD_COLUMNS, _pod_row),
    ("apps", "Deployment"): (_DEPLOYMENT_COLUMNS, _deployment_row),
    ("apps", "ReplicaSet"): (_REPLICA_SET_COLUMNS, _replica_set_row),
    ("", "ReplicationController"): (_REPLICA_SET_COLUMNS, _replica_set_row),
    ("apps", "StatefulSet"): (_STATEFUL_SET_COLUMNS, _stateful_set_row),
    ("apps", "DaemonSet"): (_DAEMON_SET_COLUMNS, _daemon_set_row),
    ("batch", "Job"): (_JOB_COLUMNS, _job_row),
    ("batch", "CronJob"): (_CRON_JOB_COLUMNS, _cron_job_row),
    ("", "Service"): (_SERVICE_COLUMNS, _service_row),
    ("", "Node"): (_NODE_COLUMNS, _node_row),
    ("", "Event"): (_EVENT_COLUMNS, _event_row),
    ("events.k8s.io", "Event"): (_EVENT_COLUMNS, _event_row),
    ("", "Namespace"): (
        [_name_col(), _col("Status", "string", "The status of the namespace."), _age_col()],
        _simple(lambda o: "Terminating" if _deleting(o) else _get(o, "status", "phase") or "Active"),
    ),
    ("", "ConfigMap"): (
        [_name_col(), _col("Data", "string", "How many keys the config map holds."), _age_col()],
        _simple(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
    ),
    ("", "Secret"): (
        [
            _name_col(),
            _col("Type", "string", "The type of the secret."),
            _col("Data", "string", "How many keys the secret holds."),
            _age_col(),
        ],
        _simple(lambda o: o.get("type") or "Opaque", lambda o: len(o.get("data") or {})),
    ),
    ("", "ServiceAccount"): (
        [_name_col(), _col("Secrets", "string", "Secrets listed on the service account."), _age_col()],
        _simple(lambda o: len(o.get("secrets") or [])),
    ),
    ("", "Endpoints"): (
        [_name_col(), _col("Endpoints", "string", "The ready addresses and ports."), _age_col()],
        _simple(_endpoints_text),
    ),
    ("", "PersistentVolumeClaim"): (
        [
            _name_col(),
            _col("Status", "string", "The claim's phase."),
            _col("Volume", "string", "The bound volume."),
            _col("Capacity", "string", "The bound volume's size."),
            _col("Access Modes", "string", "How it mounts."),
            _col("StorageClass", "string", "The claim's storage class."),
            _col("VolumeAttributesClass", "string", "The claim's volume attributes class."),
            _age_col(),
            _col("VolumeMode", "string", "Filesystem or Block.", 1),
        ],
        _pvc_row,
    ),
    ("", "PersistentVolume"): (
        [
            _name_col(),
            _col("Capacity", "string", "The volume's size."),
            _col("Access Modes", "string", "How it mounts."),
            _col("Reclaim Policy", "string", "What happens when released."),
            _col("Status", "string", "The phase."),
            _col("Claim", "string", "The bound claim."),
            _col("StorageClass", "string", "The storage class."),
            _col("VolumeAttributesClass", "string", "The volume attributes class."),
            _col("Reason", "string", "Why the volume is in its phase."),
            _age_col(),
            _col("VolumeMode", "string", "Filesystem or Block.", 1),
        ],
        _pv_row,
    ),
    ("", "ResourceQuota"): (
        [
            _name_col(),
            _age_col(),
            _col("Request", "string", "Requests used out of the quota."),
            _col("Limit", "string", "Limits used out of the quota."),
        ],
        _resource_quota_row,
    ),
    ("", "LimitRange"): _CREATED_AT,
    ("networking.k8s.io", "Ingress"): (
        [
            _name_col(),
            _col("Class", "string", "The ingress class."),
            _col("Hosts", "string", "Hosts routed."),
            _col("Address", "string", "The load balancer's addresses."),
            _col("Ports", "string", "Ports served."),
            _age_col(),
        ],
        _ingress_row,
    ),
    ("networking.k8s.io", "IngressClass"): (
        [
            _name_col(),
            _col("Controller", "string", "The controller implementing the class."),
            _col("Parameters", "string", "The class's parameters object."),
            _age_col(),
        ],
        _simple(lambda o: _get(o, "spec", "controller") or "", _ingress_class_parameters),
    ),
    ("networking.k8s.io", "NetworkPolicy"): (
        [_name_col(), _col("Pod-Selector", "string", "The pods the policy applies to."), _age_col()],
        _simple(lambda o: format_selector(_get(o, "spec", "podSelector"))),
    ),
    ("discovery.k8s.io", "EndpointSlice"): (
        [
            _name_col(),
            _col("AddressType", "string", "IPv4, IPv6 or FQDN."),
            _col("Ports", "string", "The ports."),
            _col("Endpoints", "string", "The addresses."),
            _age_col(),
        ],
        _endpoint_slice_row,
    ),
    ("coordination.k8s.io", "Lease"): (
        [_name_col(), _col("Holder", "string", "Who holds the lease."), _age_col()],
        _simple(lambda o: _get(o, "spec", "holderIdentity") or ""),
    ),
    ("autoscaling", "HorizontalPodAutoscaler"): (
        [
            _name_col(),
            _col("Reference", "string", "The scaled object."),
            _col("Targets", "string", "Current and target metric values."),
            _col("MinPods", "string", "Lower bound of replicas."),
            _col("MaxPods", "string", "Upper bound of replicas."),
            _col("Replicas", "string", "Current replicas."),
            _age_col(),
        ],
        _hpa_row,
    ),
    ("policy", "PodDisruptionBudget"): (
        [
            _name_col(),
            _col("Min Available", "string", "Pods that must stay available."),
            _col("Max Unavailable", "string", "Pods that may be unavailable."),
            _col("Allowed Disruptions", "integer", "Pods that may be disrupted now."),
            _age_col(),
        ],
        _simple(
            lambda o: _pdb_value(o, "minAvailable"),
            lambda o: _pdb_value(o, "maxUnavailable"),
            lambda o: _int(_get(o, "status", "disruptionsAllowed")),
        ),
    ),
    ("apps", "ControllerRevision"): (
        [
            _name_col(),
            _col("Controller", "string", "The object that owns the revision."),
            _col("Revision", "string", "The revision number."),
            _age_col(),
        ],
        _controller_revision_row,
    ),
    ("storage.k8s.io", "StorageClass"): (
        [
            _name_col(),
            _col("Provisioner", "string", "Who provisions volumes."),
            _col("ReclaimPolicy", "string", "What happens to released volumes."),
            _col("VolumeBindingMode", "string", "When volumes are bound."),
            _col("AllowVolumeExpansion", "string", "Whether volumes may grow."),
            _age_col(),
        ],
        _storage_class_row,
    ),
    ("scheduling.k8s.io", "PriorityClass"): (
        [
            _name_col(),
            _col("Value", "integer", "The priority."),
            _col("Global-Default", "boolean", "The default?"),
            _age_col(),
            _col("PreemptionPolicy", "string", "Whether pods of this class preempt others."),
        ],
        lambda o, now: [
            _name(o),
            _int(o.get("value")),
            bool(o.get("globalDefault")),
            _created(o, now),
            o.get("preemptionPolicy") or "",
        ],
    ),
    ("rbac.authorization.k8s.io", "Role"): _CREATED_AT,
    ("rbac.authorization.k8s.io", "ClusterRole"): _CREATED_AT,
    ("rbac.authorization.k8s.io", "RoleBinding"): (
        [
            _name_col(),
            _col("Role", "string", "The role granted."),
            _age_col(),
            _col("Users", "string", "Users in the binding.", 1),
            _col("Groups", "string", "Groups in the binding.", 1),
            _col("ServiceAccounts", "string", "Service accounts in the binding.", 1),
        ],
        _role_binding_row,
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _CREATED_AT,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (
        [_name_col(), _col("Webhooks", "integer", "How many webhooks the configuration has."), _age_col()],
        _simple(lambda o: len(o.get("webhooks") or [])),
    ),
}
_PRINTERS[("rbac.authorization.k8s.io", "ClusterRoleBinding")] = _PRINTERS[("rbac.authorization.k8s.io", "RoleBinding")]
_PRINTERS[("admissionregistration.k8s.io", "MutatingWebhookConfiguration")] = _PRINTERS[
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")
]


# ---------------------------------------------------------------- custom resources


_DEFAULT_CR_COLUMNS = ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)
_STEP = re.compile(
    r"""\.(?P<name>(?:\\.|[^.\[\\])+)            # .name (dots escaped as \.)
      | \[\s*(?P<quoted>'[^']*'|"[^"]*")\s*\]       # ['name']
      | \[\s*(?P<index>-?\d+|\*)\s*\]               # [0], [-1], [*]
      | \[\?\(\s*@(?P<fpath>[^=!)\s]*)\s*            # [?(@.type=="Ready")]
        (?:(?P<op>==|!=)\s*(?P<value>'[^']*'|"[^"]*"|[^)\s]+))?\s*\)\]
    """,
    re.VERBOSE,
)


def _json_path(path: str) -> list[tuple[str, Any]]:
    """Parse the JSONPath subset printer columns use: `.a.b`, `['a.b']`, `[0]`, `[*]`,
    `.*`, `[?(@.type=="Ready")]`. Raises ValueError on anything else."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise ValueError(f"unsupported JSONPath {path!r}")
        if m.group("name") is not None:
            name = m.group("name").replace("\\.", ".")
            steps.append(("all", None) if name == "*" else ("key", name))
        elif m.group("quoted") is not None:
            steps.append(("key", m.group("quoted")[1:-1]))
        elif m.group("index") is not None:
            index = m.group("index")
            steps.append(("all", None) if index == "*" else ("index", int(index)))
        else:
            field = [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", m.group("fpath") or "") if p]
            value = m.group("value")
            if value is not None:
                value = value[1:-1] if value[0] in "'\"" else json.loads(value)
            steps.append(("filter", (field, m.group("op"), value)))
        pos = m.end()
    return steps


def _step(node: Any, kind: str, arg: Any) -> list[Any]:
    """The nodes one JSONPath step leads to from one node."""
    if kind == "key":
        return [node[arg]] if isinstance(node, dict) and arg in node else []
    if kind == "index":
        return [node[arg]] if isinstance(node, list) and -len(node) <= arg < len(node) else []
    if kind == "all":
        return list(node.values()) if isinstance(node, dict) else list(node) if isinstance(node, list) else []
    field, op, value = arg
    matched = []
    for item in node if isinstance(node, list) else []:
        found = _eval_path(item, [("key", f) for f in field])
        if found and (op is None or (found[0] == value) == (op == "==")):
            matched.append(item)
    return matched


def _eval_path(obj: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    nodes = [obj]
    for kind, arg in steps:
        nodes = [found for node in nodes for found in _step(node, kind, arg)]
    return nodes


def _custom_cell(column: JSON, obj: JSON, now: dt.datetime) -> Any:
    """One additionalPrinterColumns cell, typed as apiextensions does (first match only)."""
    try:
        found = _eval_path(obj, _json_path(str(column.get("jsonPath", ""))))
    except ValueError:
        return None
    if not found or found[0] is None:
        return None
    value, type_ = found[0], column.get("type", "string")
    if type_ == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if type_ == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if type_ == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if type_ == "date" and isinstance(value, str):
        when = _parse_time(value)
        return human_duration((now - when).total_seconds()) if when else "<invalid>"
    return None


def _custom_printer(rt: ResourceType) -> _Printer:
    columns = rt.printer_columns or _DEFAULT_CR_COLUMNS
    defs = [_name_col()]
    for c in columns:
        description = (
            c.get("description") or f"Custom resource definition column (in JSONPath format): {c.get('jsonPath', '')}"
        )
        defs.append(
            _col(
                str(c.get("name", "")),
                str(c.get("type", "string")),
                description,
                int(c.get("priority") or 0),
                str(c.get("format") or ""),
            )
        )

    def row(obj: JSON, now: dt.datetime) -> Row:
        return [_name(obj), *(_custom_cell(c, obj, now) for c in columns)]

    return defs, row


# ---------------------------------------------------------------- the table


def _printer(rt: ResourceType) -> _Printer:
    if rt.crd:
        return _custom_printer(rt)
    return _PRINTERS.get((rt.group, rt.kind)) or ([_name_col(), _age_col()], _simple())


def _row_object(obj: JSON, include_object: str) -> JSON | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _meta(obj)}


def table(rt: ResourceType, objects: list[JSON], now: dt.datetime, include_object: str = "Metadata") -> JSON:
    """A `meta.k8s.io/v1` Table of objects of one type, as of `now` (timezone-aware).

    include_object is the request's `includeObject` (None, Metadata, Object): what each row
    carries for kubectl to add NAMESPACE and label columns or to sort. The caller sets
    metadata.resourceVersion (and continue) from the list it printed."""
    columns, row_fn = _printer(rt)
    rows = []
    for obj in objects:
        row: JSON = {"cells": row_fn(obj, now)}
        if rt.kind == "Pod" and not rt.group and (conditions := _pod_conditions(obj)):
            row["conditions"] = conditions
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    }
