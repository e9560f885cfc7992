"""Tables as `kubectl get` prints them: the columns and cells a user sees."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controllers import tables
from controllers.kinds import Registry, ResourceType

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
REGISTRY = Registry()


def ago(seconds: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rt(group: str, version: str, plural: str) -> ResourceType:
    found = REGISTRY.get(group, version, plural)
    assert found is not None
    return found


def printed(resource: ResourceType, obj: dict[str, Any], wide: bool = False) -> dict[str, Any]:
    """The row as kubectl shows it: header (upper-cased) -> cell, wide columns only if asked."""
    table = tables.table(resource, [obj], NOW)
    columns = table["columnDefinitions"]
    cells = table["rows"][0]["cells"]
    assert len(cells) == len(columns)
    return {c["name"].upper(): cell for c, cell in zip(columns, cells, strict=True) if wide or c["priority"] == 0}


def pod(name: str = "web-1", age: float = 200, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": ago(age),
            "labels": {"app": "web"},
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx:1.27"}]},
        "status": status,
    }


PODS = rt("", "v1", "pods")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-0.5, "0s"),
        (-5, "<invalid>"),
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (300, "5m"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (5 * 3600, "5h"),
        (20 * 3600, "20h"),
        (51 * 3600, "2d3h"),
        (3 * 86400, "3d"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: float, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_wants_table() -> None:
    kubectl = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
        "application/json"
    )
    assert tables.wants_table(kubectl)
    assert tables.wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io")
    assert not tables.wants_table("application/json")
    assert not tables.wants_table("application/yaml")
    assert not tables.wants_table("")


def test_running_pod_row_and_wide_columns() -> None:
    running = pod(
        phase="Running",
        podIPs=[{"ip": "10.1.0.7"}],
        conditions=[{"type": "Ready", "status": "True"}],
        containerStatuses=[
            {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": ago(100)}}}
        ],
    )
    assert printed(PODS, running) == {
        "NAME": "web-1",
        "READY": "1/1",
        "STATUS": "Running",
        "RESTARTS": "0",
        "AGE": "3m20s",
    }
    wide = printed(PODS, running, wide=True)
    assert wide["IP"] == "10.1.0.7"
    assert wide["NODE"] == "node-1"
    assert wide["NOMINATED NODE"] == "<none>"
    assert wide["READINESS GATES"] == "<none>"


def test_crash_looping_pod_shows_back_off_and_last_restart() -> None:
    crashing = pod(
        age=3600,
        phase="Running",
        containerStatuses=[
            {
                "name": "app",
                "ready": False,
                "restartCount": 5,
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(600)}},
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            }
        ],
    )
    row = printed(PODS, crashing)
    assert row["STATUS"] == "CrashLoopBackOff"
    assert row["READY"] == "0/1"
    assert row["RESTARTS"] == "5 (10m ago)"
    assert row["AGE"] == "60m"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Pending"}, "Pending"),
        (
            {
                "phase": "Pending",
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}],
            },
            "ContainerCreating",
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ErrImagePull"}}}],
            },
            "ErrImagePull",
        ),
        (
            {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            },
            "Completed",
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
                ],
            },
            "OOMKilled",
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 2}}}],
            },
            "ExitCode:2",
        ),
        ({"phase": "Failed", "reason": "Evicted"}, "Evicted"),
        (
            {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
            },
            "SchedulingGated",
        ),
    ],
)
def test_pod_status_column(status: dict[str, Any], expected: str) -> None:
    assert printed(PODS, pod(**status))["STATUS"] == expected


def test_init_containers_status() -> None:
    obj = pod(
        phase="Pending",
        initContainerStatuses=[{"name": "migrate", "ready": False, "restartCount": 0, "state": {"running": {}}}],
    )
    obj["spec"]["initContainers"] = [
        {"name": "migrate", "image": "busybox"},
        {"name": "warm", "image": "busybox"},
    ]
    assert printed(PODS, obj)["STATUS"] == "Init:0/2"
    obj["status"]["initContainerStatuses"] = [
        {"name": "migrate", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
        {
            "name": "warm",
            "ready": False,
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        },
    ]
    row = printed(PODS, obj)
    assert row["STATUS"] == "Init:CrashLoopBackOff"
    assert row["RESTARTS"] == "3"


def test_sidecar_counts_towards_ready() -> None:
    obj = pod(
        phase="Running",
        conditions=[{"type": "Initialized", "status": "True"}],
        initContainerStatuses=[
            {"name": "proxy", "ready": True, "started": True, "restartCount": 0, "state": {"running": {}}}
        ],
        containerStatuses=[{"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}}],
    )
    obj["spec"]["initContainers"] = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]
    assert printed(PODS, obj)["READY"] == "2/2"


def test_deleted_pod_is_terminating_and_finished_pod_is_marked_completed() -> None:
    obj = pod(phase="Running", containerStatuses=[{"name": "app", "ready": True, "state": {"running": {}}}])
    obj["metadata"]["deletionTimestamp"] = ago(1)
    assert printed(PODS, obj)["STATUS"] == "Terminating"
    done = pod(phase="Succeeded")
    row = tables.table(PODS, [done], NOW)["rows"][0]
    assert row["conditions"][0]["type"] == "Completed"


def test_readiness_gates() -> None:
    obj = pod(phase="Running", conditions=[{"type": "example.com/lb", "status": "True"}])
    obj["spec"]["readinessGates"] = [
        {"conditionType": "example.com/lb"},
        {"conditionType": "example.com/dns"},
    ]
    assert printed(PODS, obj, wide=True)["READINESS GATES"] == "1/2"


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(2 * 86400 + 3 * 3600)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}],
            },
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.27"},
                        {"name": "log", "image": "fluent-bit"},
                    ]
                }
            },
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }


def test_deployment_ready_and_wide_columns() -> None:
    deployments = rt("apps", "v1", "deployments")
    assert printed(deployments, _deployment()) == {
        "NAME": "web",
        "READY": "2/3",
        "UP-TO-DATE": 3,
        "AVAILABLE": 2,
        "AGE": "2d3h",
    }
    wide = printed(deployments, _deployment(), wide=True)
    assert wide["CONTAINERS"] == "web,log"
    assert wide["IMAGES"] == "nginx:1.27,fluent-bit"
    assert wide["SELECTOR"] == "app=web,tier in (be,fe)"
    fresh = _deployment()
    del fresh["status"], fresh["spec"]["replicas"]
    assert printed(deployments, fresh)["READY"] == "0/1"


def test_replica_sets_stateful_sets_and_daemon_sets() -> None:
    rs = {**_deployment(), "kind": "ReplicaSet"}
    assert printed(rt("apps", "v1", "replicasets"), rs) == {
        "NAME": "web",
        "DESIRED": 3,
        "CURRENT": 3,
        "READY": 2,
        "AGE": "2d3h",
    }
    sts = {**_deployment(), "kind": "StatefulSet", "status": {"readyReplicas": 1}}
    assert printed(rt("apps", "v1", "statefulsets"), sts)["READY"] == "1/3"
    ds = {
        "metadata": {"name": "agent", "creationTimestamp": ago(60)},
        "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}}},
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    assert printed(rt("apps", "v1", "daemonsets"), ds) == {
        "NAME": "agent",
        "DESIRED": 3,
        "CURRENT": 3,
        "READY": 2,
        "UP-TO-DATE": 3,
        "AVAILABLE": 2,
        "NODE SELECTOR": "kubernetes.io/os=linux",
        "AGE": "60s",
    }


def test_jobs_and_cron_jobs() -> None:
    jobs = rt("batch", "v1", "jobs")
    job = {
        "metadata": {"name": "pi", "creationTimestamp": ago(300)},
        "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {
            "succeeded": 1,
            "startTime": ago(290),
            "completionTime": ago(250),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    assert printed(jobs, job) == {
        "NAME": "pi",
        "STATUS": "Complete",
        "COMPLETIONS": "1/1",
        "DURATION": "40s",
        "AGE": "5m",
    }
    running = {**job, "spec": {"parallelism": 2}, "status": {"startTime": ago(30), "active": 2}}
    assert printed(jobs, running)["STATUS"] == "Running"
    assert printed(jobs, running)["COMPLETIONS"] == "0/1 of 2"
    assert printed(jobs, running)["DURATION"] == "30s"
    cron = {
        "metadata": {"name": "nightly", "creationTimestamp": ago(86400)},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}},
        },
        "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(120)},
    }
    assert printed(rt("batch", "v1", "cronjobs"), cron) == {
        "NAME": "nightly",
        "SCHEDULE": "0 3 * * *",
        "TIMEZONE": "<none>",
        "SUSPEND": "False",
        "ACTIVE": 1,
        "LAST SCHEDULE": "2m",
        "AGE": "24h",
    }


def test_services() -> None:
    services = rt("", "v1", "services")
    svc = {
        "metadata": {"name": "web", "creationTimestamp": ago(60)},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"},
        },
    }
    assert printed(services, svc, wide=True) == {
        "NAME": "web",
        "TYPE": "NodePort",
        "CLUSTER-IP": "10.96.0.10",
        "EXTERNAL-IP": "<none>",
        "PORT(S)": "80:30080/TCP,53/UDP",
        "AGE": "60s",
        "SELECTOR": "app=web",
    }
    lb = {
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"], "ports": []},
    }
    assert printed(services, lb)["EXTERNAL-IP"] == "<pending>"
    assert printed(services, lb)["PORT(S)"] == "<none>"
    assert printed(services, lb)["AGE"] == "<unknown>"
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
    assert printed(services, lb)["EXTERNAL-IP"] == "203.0.113.9"


def test_config_secrets_namespaces_accounts() -> None:
    cm = {
        "metadata": {"name": "cfg", "creationTimestamp": ago(10)},
        "data": {"a": "1", "b": "2"},
        "binaryData": {"c": "AA=="},
    }
    assert printed(rt("", "v1", "configmaps"), cm) == {"NAME": "cfg", "DATA": 3, "AGE": "10s"}
    secret = {
        "metadata": {"name": "tls", "creationTimestamp": ago(10)},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""},
    }
    assert printed(rt("", "v1", "secrets"), secret) == {
        "NAME": "tls",
        "TYPE": "kubernetes.io/tls",
        "DATA": 2,
        "AGE": "10s",
    }
    namespaces = rt("", "v1", "namespaces")
    ns = {"metadata": {"name": "team", "creationTimestamp": ago(10)}, "status": {"phase": "Active"}}
    assert printed(namespaces, ns) == {"NAME": "team", "STATUS": "Active", "AGE": "10s"}
    ns["metadata"]["deletionTimestamp"] = ago(1)
    assert printed(namespaces, ns)["STATUS"] == "Terminating"
    sa = {"metadata": {"name": "default", "creationTimestamp": ago(10)}}
    assert printed(rt("", "v1", "serviceaccounts"), sa) == {"NAME": "default", "SECRETS": 0, "AGE": "10s"}


def test_nodes() -> None:
    node: dict[str, Any] = {
        "metadata": {
            "name": "node-1",
            "creationTimestamp": ago(9000),
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "n"},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Simulated",
                "kernelVersion": "6.1",
                "containerRuntimeVersion": "sim://1",
            },
        },
    }
    assert printed(rt("", "v1", "nodes"), node, wide=True) == {
        "NAME": "node-1",
        "STATUS": "Ready,SchedulingDisabled",
        "ROLES": "control-plane",
        "AGE": "150m",
        "VERSION": "v1.32.0",
        "INTERNAL-IP": "192.168.1.2",
        "EXTERNAL-IP": "<none>",
        "OS-IMAGE": "Simulated",
        "KERNEL-VERSION": "6.1",
        "CONTAINER-RUNTIME": "sim://1",
    }
    node["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    node["spec"] = {}
    assert printed(rt("", "v1", "nodes"), node)["STATUS"] == "NotReady"


def test_endpoints_events_ingresses_claims_leases() -> None:
    ep = {
        "metadata": {"name": "web", "creationTimestamp": ago(5)},
        "subsets": [{"addresses": [{"ip": f"10.1.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}],
    }
    assert printed(rt("", "v1", "endpoints"), ep)["ENDPOINTS"] == "10.1.0.1:80,10.1.0.2:80,10.1.0.3:80 + 2 more..."
    assert printed(rt("", "v1", "endpoints"), {"metadata": {"name": "x"}})["ENDPOINTS"] == "<none>"

    event = {
        "metadata": {"name": "crash.17a", "creationTimestamp": ago(600)},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "count": 5,
        "involvedObject": {"kind": "Pod", "name": "crash", "fieldPath": "spec.containers{app}"},
        "firstTimestamp": ago(600),
        "lastTimestamp": ago(30),
        "source": {"component": "kubelet", "host": "n1"},
    }
    assert printed(rt("", "v1", "events"), event) == {
        "LAST SEEN": "30s",
        "TYPE": "Warning",
        "REASON": "BackOff",
        "OBJECT": "pod/crash",
        "MESSAGE": "Back-off restarting failed container",
    }
    wide = printed(rt("", "v1", "events"), event, wide=True)
    assert (wide["SOURCE"], wide["COUNT"], wide["FIRST SEEN"]) == ("kubelet, n1", 5, "10m")

    ing = {
        "metadata": {"name": "web", "creationTimestamp": ago(5)},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}],
            "tls": [{"hosts": ["a.example.com"]}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}]}},
    }
    assert printed(rt("networking.k8s.io", "v1", "ingresses"), ing) == {
        "NAME": "web",
        "CLASS": "nginx",
        "HOSTS": "a.example.com,b.example.com",
        "ADDRESS": "203.0.113.5",
        "PORTS": "80, 443",
        "AGE": "5s",
    }

    pvc = {
        "metadata": {"name": "data", "creationTimestamp": ago(5)},
        "spec": {"volumeName": "pv-1", "storageClassName": "standard"},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]},
    }
    assert printed(rt("", "v1", "persistentvolumeclaims"), pvc) == {
        "NAME": "data",
        "STATUS": "Bound",
        "VOLUME": "pv-1",
        "CAPACITY": "1Gi",
        "ACCESS MODES": "RWO",
        "STORAGECLASS": "standard",
        "VOLUMEATTRIBUTESCLASS": "<unset>",
        "AGE": "5s",
    }

    lease = {
        "metadata": {"name": "node-1", "creationTimestamp": ago(5)},
        "spec": {"holderIdentity": "node-1"},
    }
    assert printed(rt("coordination.k8s.io", "v1", "leases"), lease) == {
        "NAME": "node-1",
        "HOLDER": "node-1",
        "AGE": "5s",
    }


def test_crds_and_roles_print_created_at_like_the_default_convertor() -> None:
    crd = {"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-05-01T10:00:00Z"}}
    table = tables.table(rt("apiextensions.k8s.io", "v1", "customresourcedefinitions"), [crd], NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    assert table["columnDefinitions"][1]["type"] == "date"
    assert table["rows"][0]["cells"] == ["widgets.example.com", "2024-05-01T10:00:00Z"]
    role = {"metadata": {"name": "reader", "creationTimestamp": "2024-05-01T10:00:00+00:00"}}
    assert printed(rt("rbac.authorization.k8s.io", "v1", "roles"), role)["CREATED AT"] == "2024-05-01T10:00:00Z"


def test_other_kinds_get_name_and_age() -> None:
    policy = {"metadata": {"name": "p", "creationTimestamp": ago(42)}}
    vap = rt("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies")
    assert printed(vap, policy) == {"NAME": "p", "AGE": "42s"}


def _widgets(columns: tuple[dict[str, Any], ...] = ()) -> ResourceType:
    return ResourceType("example.com", "v1", "Widget", "widgets", True, crd=True, printer_columns=columns)


def test_custom_resource_printer_columns() -> None:
    columns = (
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Image", "type": "string", "jsonPath": ".spec.containers[0].image", "priority": 1},
        {"name": "App", "type": "string", "jsonPath": ".metadata.labels.app\\.kubernetes\\.io/name"},
        {"name": "Tier", "type": "string", "jsonPath": ".metadata.labels['tier']"},
        {"name": "Size", "type": "number", "jsonPath": ".spec.size"},
        {"name": "Ports", "type": "string", "jsonPath": ".spec.ports"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {
            "name": "w1",
            "creationTimestamp": ago(90),
            "labels": {"app.kubernetes.io/name": "shop", "tier": "web"},
        },
        "spec": {"replicas": 2, "size": 1.5, "ports": [80, 443], "containers": [{"image": "nginx"}]},
        "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
    }
    table = tables.table(_widgets(columns), [widget], NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", *(c["name"] for c in columns)]
    assert table["columnDefinitions"][3]["priority"] == 1
    assert table["columnDefinitions"][1]["description"].endswith(".spec.replicas")
    assert table["rows"][0]["cells"] == ["w1", 2, "True", "nginx", "shop", "web", 1.5, "[80,443]", "90s"]
    empty = {"metadata": {"name": "w2", "creationTimestamp": ago(5)}, "spec": {"replicas": "many"}}
    assert tables.table(_widgets(columns), [empty], NOW)["rows"][0]["cells"] == [
        "w2",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        "5s",
    ]


def test_custom_resource_without_printer_columns_shows_age() -> None:
    table = tables.table(_widgets(), [{"metadata": {"name": "w", "creationTimestamp": ago(3700)}}], NOW)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [
        ("Name", "string"),
        ("Age", "date"),
    ]
    assert table["rows"][0]["cells"] == ["w", "61m"]


def test_include_object() -> None:
    obj = pod(phase="Running")
    default = tables.table(PODS, [obj], NOW)
    assert default["kind"] == "Table" and default["apiVersion"] == "meta.k8s.io/v1"
    partial = default["rows"][0]["object"]
    assert partial["kind"] == "PartialObjectMetadata" and partial["apiVersion"] == "meta.k8s.io/v1"
    assert partial["metadata"]["namespace"] == "default"
    assert partial["metadata"]["labels"] == {"app": "web"}
    assert tables.table(PODS, [obj], NOW, "Object")["rows"][0]["object"] is obj
    assert "object" not in tables.table(PODS, [obj], NOW, "None")["rows"][0]
    assert tables.table(PODS, [], NOW)["rows"] == []


def test_format_selector() -> None:
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
        ],
    }
    assert tables.format_selector(selector) == "a=1,b=2,!canary,env notin (dev,prod),zone"
    assert tables.format_selector(None) == "<none>"
    assert tables.format_selector({}) == "<none>"
