"""Defaulting: the fields a real API server fills in before validation and storage.

Users diff what they applied against what the cluster returns (`kubectl get -o yaml`,
the GitOps diff), so the embedded server must add exactly what Kubernetes adds: the
registry's v1 defaulters, plus the visible effects of the default admission plugins
(ServiceAccount, Priority, DefaultTolerationSeconds) and of strategy PrepareForCreate
(Job selectors, Namespace finalizers). Allocation (Service clusterIP and nodePorts) is the
apiserver's job and is left out on purpose.

Every function mutates in place and is idempotent: updates are defaulted again."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from controllers.kinds import ResourceType

Obj = dict[str, Any]

JOB_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_JOB_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_DEFAULT_TOLERATION_SECONDS = 300
_FILE_MODE = 0o644  # 420: the defaultMode of secret, configMap, downwardAPI and projected volumes


def apply_defaults(rt: ResourceType, obj: Obj, toleration_seconds: int = _DEFAULT_TOLERATION_SECONDS) -> None:
    """Fill in the defaults the real API server applies to `obj` (a `rt` object).

    `toleration_seconds` is the DefaultTolerationSeconds admission setting for pods."""
    if rt.crd:
        if rt.schema:
            apply_schema_defaults(rt.schema, obj)
        return
    if rt.kind == "Pod" and not rt.group:
        _default_pod(obj, toleration_seconds)
        return
    defaulter = _DEFAULTERS.get((rt.group, rt.kind))
    if defaulter is not None:
        defaulter(obj)


def _sub(obj: Obj, key: str) -> Obj:
    """`obj[key]` as a dict, created (or replaced when null) so defaults have somewhere to go."""
    value = obj.get(key)
    if not isinstance(value, dict):
        value = obj[key] = {}
    return value


def _items(obj: Obj, key: str) -> list[Obj]:
    return [x for x in obj.get(key) or [] if isinstance(x, dict)]


# ---------------------------------------------------------------------------- pods and templates


def image_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image (without a digest), IfNotPresent otherwise."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else ""
    if not tag and not digest and name:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_handler(handler: Obj) -> None:
    http = handler.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def _default_probe(probe: Obj) -> None:
    _default_handler(probe)
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)


def _default_field_ref(holder: Obj) -> None:
    ref = holder.get("fieldRef")
    if isinstance(ref, dict):
        ref.setdefault("apiVersion", "v1")


def _default_container(c: Obj) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = image_pull_policy(str(c.get("image") or ""))
    _sub(c, "resources")
    for port in _items(c, "ports"):
        port.setdefault("protocol", "TCP")
    for env in _items(c, "env"):
        if isinstance(env.get("valueFrom"), dict):
            _default_field_ref(env["valueFrom"])
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(c.get(key), dict):
            _default_probe(c[key])
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for key in ("postStart", "preStop"):
            if isinstance(lifecycle.get(key), dict):
                _default_handler(lifecycle[key])


_VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)


def _default_volume(v: Obj) -> None:
    if not any(k in v for k in _VOLUME_SOURCES):
        v["emptyDir"] = {}
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(v.get(key), dict):
            v[key].setdefault("defaultMode", _FILE_MODE)
    if isinstance(v.get("hostPath"), dict):
        v["hostPath"].setdefault("type", "")
    for item in _items(v.get("downwardAPI") or {}, "items"):
        _default_field_ref(item)
    for source in _items(v.get("projected") or {}, "sources"):
        for item in _items(source.get("downwardAPI") or {}, "items"):
            _default_field_ref(item)
        token = source.get("serviceAccountToken")
        if isinstance(token, dict):
            token.setdefault("expirationSeconds", 3600)


def default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and everything below it: shared by Pods and every pod template."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    _sub(spec, "securityContext")
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _items(spec, key):
            _default_container(c)
    for v in _items(spec, "volumes"):
        _default_volume(v)


def _default_template(owner_spec: Obj) -> None:
    template = _sub(owner_spec, "template")
    default_pod_spec(_sub(template, "spec"))


def _default_pod(pod: Obj, toleration_seconds: int = _DEFAULT_TOLERATION_SECONDS) -> None:
    spec = _sub(pod, "spec")
    default_pod_spec(spec)
    # SetDefaults_Pod: these apply to Pods only, never to templates.
    spec.setdefault("enableServiceLinks", True)
    for key in ("initContainers", "containers"):
        for c in _items(spec, key):
            resources = c["resources"]
            limits = resources.get("limits")
            if isinstance(limits, dict) and limits:
                requests = _sub(resources, "requests")
                for name, value in limits.items():
                    requests.setdefault(name, value)
            if spec.get("hostNetwork"):
                for port in _items(c, "ports"):
                    port.setdefault("hostPort", port.get("containerPort"))
    # ServiceAccount admission: pods run as the namespace's default service account.
    spec["serviceAccountName"] = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    # Priority admission: without a PriorityClass (no global default exists here) the
    # priority is 0. A named class is resolved by the apiserver, which can read it.
    if not spec.get("priorityClassName"):
        spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    _default_tolerations(spec, toleration_seconds)


def _default_tolerations(spec: Obj, seconds: int) -> None:
    """DefaultTolerationSeconds admission: tolerate not-ready/unreachable nodes for a while."""
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        covered = any(
            isinstance(t, dict)
            and t.get("effect") in (None, "", "NoExecute")
            and (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
            for t in tolerations
        )
        if not covered:
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": seconds,
                }
            )
    spec["tolerations"] = tolerations


# ---------------------------------------------------------------------------- workloads


def _default_deployment(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    spec.setdefault("replicas", 1)
    strategy = _sub(spec, "strategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)


def _default_replicaset(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    spec.setdefault("replicas", 1)
    _default_template(spec)


def _default_replication_controller(obj: Obj) -> None:
    """The core/v1 controller still defaults its selector and labels from the template."""
    spec = _sub(obj, "spec")
    spec.setdefault("replicas", 1)
    _default_template(spec)
    template_labels = (spec["template"].get("metadata") or {}).get("labels")
    if template_labels:
        if not spec.get("selector"):
            spec["selector"] = dict(template_labels)
        meta = _sub(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(template_labels)


def _default_pvc_spec(spec: Obj) -> None:
    spec.setdefault("volumeMode", "Filesystem")


def _default_pvc(obj: Obj) -> None:
    _default_pvc_spec(_sub(obj, "spec"))
    _sub(obj, "status").setdefault("phase", "Pending")


def _default_statefulset(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = _sub(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        _sub(strategy, "rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    retention = _sub(spec, "persistentVolumeClaimRetentionPolicy")
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)
    for claim in _items(spec, "volumeClaimTemplates"):
        _default_pvc(claim)


def _default_daemonset(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    strategy = _sub(spec, "updateStrategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)


def _default_job(obj: Obj) -> None:
    meta = _sub(obj, "metadata")
    spec = _sub(obj, "spec")
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if "backoffLimit" not in spec:
        spec["backoffLimit"] = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    replacement = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    spec.setdefault("podReplacementPolicy", replacement)
    for rule in _items(spec.get("podFailurePolicy") or {}, "rules"):
        for pattern in _items(rule, "onPodConditions"):
            pattern.setdefault("status", "True")
    _default_template(spec)
    template_meta = _sub(spec["template"], "metadata")
    if template_meta.get("labels") and not meta.get("labels"):
        meta["labels"] = dict(template_meta["labels"])
    if not spec.get("manualSelector"):
        _generate_job_selector(meta, spec, template_meta)
    if not meta.get("labels") and template_meta.get("labels"):
        # A job created without labels shows the generated ones, as the apiserver returns it.
        meta["labels"] = dict(template_meta["labels"])


def _generate_job_selector(meta: Obj, spec: Obj, template_meta: Obj) -> None:
    """Job PrepareForCreate: pods carry the job's uid and name, the selector picks the uid."""
    uid, name = meta.get("uid"), meta.get("name")
    if not uid:
        return  # the apiserver sets the uid before defaulting; without it nothing is unique
    labels = _sub(template_meta, "labels")
    for key, value in (
        (JOB_CONTROLLER_UID, uid),
        (LEGACY_JOB_CONTROLLER_UID, uid),
        (JOB_NAME, name),
        (LEGACY_JOB_NAME, name),
    ):
        if value:
            labels.setdefault(key, value)
    if not spec.get("selector"):
        spec["selector"] = {"matchLabels": {JOB_CONTROLLER_UID: uid}}


def _default_cronjob(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_template = _sub(spec, "jobTemplate")
    _default_template(_sub(job_template, "spec"))


# ---------------------------------------------------------------------------- core kinds


def _default_service(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = _sub(_sub(spec, "sessionAffinityConfig"), "clientIP")
        client_ip.setdefault("timeoutSeconds", 10800)
    for port in _items(spec, "ports"):
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    stype = spec["type"]
    externally_accessible = stype in ("NodePort", "LoadBalancer") or (
        stype == "ClusterIP" and bool(spec.get("externalIPs"))
    )
    if externally_accessible:
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if stype in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if stype != "ExternalName":
        # The IP-family part of allocation: single-stack IPv4 like a default kind cluster;
        # headless services without a selector ask for every family the cluster has.
        headless_without_selector = spec.get("clusterIP") == "None" and not spec.get("selector")
        spec.setdefault("ipFamilyPolicy", "RequireDualStack" if headless_without_selector else "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])


def _default_secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    # v1 -> internal conversion: stringData is write-only and merged into data.
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _sub(obj, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _default_namespace(obj: Obj) -> None:
    meta = _sub(obj, "metadata")
    if meta.get("name"):
        _sub(meta, "labels")[NAMESPACE_NAME_LABEL] = meta["name"]
    spec = _sub(obj, "spec")
    if "finalizers" not in spec:
        spec["finalizers"] = ["kubernetes"]
    _sub(obj, "status").setdefault("phase", "Active")


def _default_node(obj: Obj) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and status.get("capacity") and not status.get("allocatable"):
        status["allocatable"] = dict(status["capacity"])


def _default_crd(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    names = _sub(spec, "names")
    kind = names.get("kind")
    if kind:
        names.setdefault("singular", str(kind).lower())
        names.setdefault("listKind", f"{kind}List")
    _sub(spec, "conversion").setdefault("strategy", "None")


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Service"): _default_service,
    ("", "Secret"): _default_secret,
    ("", "Namespace"): _default_namespace,
    ("", "Node"): _default_node,
    ("", "PersistentVolumeClaim"): _default_pvc,
    ("", "ReplicationController"): _default_replication_controller,
    ("apps", "Deployment"): _default_deployment,
    ("apps", "ReplicaSet"): _default_replicaset,
    ("apps", "StatefulSet"): _default_statefulset,
    ("apps", "DaemonSet"): _default_daemonset,
    ("batch", "Job"): _default_job,
    ("batch", "CronJob"): _default_cronjob,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _default_crd,
}


# ---------------------------------------------------------------------------- custom resources


def apply_schema_defaults(schema: Obj, value: Any) -> None:
    """Structural defaulting of a custom resource: `default:` values from the schema fill
    missing fields, and nulls where the schema does not allow them become the default or are
    dropped, as the apiextensions apiserver does."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
            if sub is None:
                continue
            if value[key] is None and not sub.get("nullable"):
                if "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                else:
                    del value[key]
                    continue
            apply_schema_defaults(sub, value[key])
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
                apply_schema_defaults(sub, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_schema_defaults(schema["items"], item)
