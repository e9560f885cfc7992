"""The fields the embedded API server adds are the ones a real cluster adds, so a
`kubectl get -o yaml` (and the GitOps diff) looks the same on both."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from controllers.defaults import apply_defaults, image_pull_policy
from controllers.kinds import ResourceType, builtin_types


def rt(group: str, kind: str) -> ResourceType:
    return next(r for r in builtin_types() if r.group == group and r.kind == kind)


def defaulted(group: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    apply_defaults(rt(group, kind), obj)
    again = copy.deepcopy(obj)
    apply_defaults(rt(group, kind), again)
    assert again == obj, "defaulting must be idempotent (updates are defaulted again)"
    return obj


def template(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}], **spec},
    }


DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()},
}


def test_deployment_defaults() -> None:
    spec = defaulted("apps", "Deployment", DEPLOYMENT)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["selector"] == {"matchLabels": {"app": "web"}}  # apps/v1 never defaults the selector


def test_deployment_keeps_user_values_and_recreate_has_no_rolling_update() -> None:
    obj = copy.deepcopy(DEPLOYMENT)
    obj["spec"].update(replicas=0, strategy={"type": "Recreate"})
    spec = defaulted("apps", "Deployment", obj)["spec"]
    assert spec["replicas"] == 0
    assert spec["strategy"] == {"type": "Recreate"}
    obj["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 1}}
    assert defaulted("apps", "Deployment", obj)["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 1,
        "maxUnavailable": "25%",
    }


def test_pod_template_defaults() -> None:
    pod_spec = defaulted("apps", "Deployment", DEPLOYMENT)["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["dnsPolicy"] == "ClusterFirst"
    assert pod_spec["schedulerName"] == "default-scheduler"
    assert pod_spec["terminationGracePeriodSeconds"] == 30
    assert pod_spec["securityContext"] == {}
    container = pod_spec["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {}
    # Pod-only admission effects do not touch templates.
    for key in ("enableServiceLinks", "tolerations", "priority", "serviceAccountName"):
        assert key not in pod_spec


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
        ("localhost:5000/team/app", "Always"),  # the registry port is not a tag
        ("localhost:5000/team/app:v2", "IfNotPresent"),
    ],
)
def test_image_pull_policy_by_tag(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_explicit_image_pull_policy_is_kept() -> None:
    obj = {
        "metadata": {"name": "p", "namespace": "d"},
        "spec": {"containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never"}]},
    }
    assert defaulted("", "Pod", obj)["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_container_details_probes_ports_env_and_volumes() -> None:
    obj = {
        "metadata": {"name": "p", "namespace": "d"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "app:1",
                    "ports": [{"containerPort": 8080}],
                    "livenessProbe": {"httpGet": {"port": 8080}},
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                    "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                }
            ],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "s", "secret": {"secretName": "s"}},
                {"name": "scratch"},
            ],
        },
    }
    spec = defaulted("", "Pod", obj)["spec"]
    c = spec["containers"][0]
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["livenessProbe"] == {
        "httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert c["readinessProbe"]["periodSeconds"] == 5
    assert c["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name", "apiVersion": "v1"}
    assert spec["volumes"][0]["configMap"]["defaultMode"] == 420
    assert spec["volumes"][1]["secret"]["defaultMode"] == 420
    assert spec["volumes"][2]["emptyDir"] == {}


def test_pod_only_defaults_from_admission_plugins() -> None:
    obj = {
        "metadata": {"name": "p", "namespace": "d"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "app:1",
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                }
            ]
        },
    }
    spec = defaulted("", "Pod", obj)["spec"]
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["tolerations"] == [
        {"key": f"node.kubernetes.io/{key}", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        for key in ("not-ready", "unreachable")
    ]
    # requests default to limits, but only where unset
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


def test_default_tolerations_respect_user_tolerations() -> None:
    obj = {
        "metadata": {"name": "p", "namespace": "d"},
        "spec": {
            "containers": [{"name": "c", "image": "app:1"}],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 10,
                }
            ],
        },
    }
    tolerations = defaulted("", "Pod", obj)["spec"]["tolerations"]
    keys = [t["key"] for t in tolerations]
    assert keys == ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]
    assert tolerations[0]["tolerationSeconds"] == 10


def test_statefulset_and_daemonset_defaults() -> None:
    sts = defaulted(
        "apps",
        "StatefulSet",
        {
            "metadata": {"name": "db", "namespace": "d"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(),
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
            },
        },
    )
    spec = sts["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    ds = defaulted(
        "apps",
        "DaemonSet",
        {
            "metadata": {"name": "agent", "namespace": "d"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()},
        },
    )
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert (
        defaulted("apps", "ReplicaSet", {"metadata": {"name": "r"}, "spec": {"template": template()}})["spec"][
            "replicas"
        ]
        == 1
    )


JOB: dict[str, Any] = {
    "metadata": {"name": "pi", "namespace": "d", "uid": "3f1c-uid"},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}}},
}


def test_job_defaults_and_generated_selector() -> None:
    job = defaulted("batch", "Job", JOB)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "3f1c-uid"}}
    expected = {
        "batch.kubernetes.io/controller-uid": "3f1c-uid",
        "controller-uid": "3f1c-uid",
        "batch.kubernetes.io/job-name": "pi",
        "job-name": "pi",
    }
    assert spec["template"]["metadata"]["labels"] == expected
    assert job["metadata"]["labels"] == expected  # what `kubectl get job -o yaml` shows
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_job_completions_stay_unset_for_work_queues() -> None:
    obj = copy.deepcopy(JOB)
    obj["spec"]["parallelism"] = 3
    spec = defaulted("batch", "Job", obj)["spec"]
    assert spec["parallelism"] == 3 and "completions" not in spec


def test_job_labels_copied_from_template_and_manual_selector_left_alone() -> None:
    obj = copy.deepcopy(JOB)
    obj["spec"]["template"]["metadata"] = {"labels": {"app": "batch"}}
    job = defaulted("batch", "Job", obj)
    assert job["metadata"]["labels"] == {"app": "batch"}
    manual = copy.deepcopy(JOB)
    manual["spec"].update(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    manual["spec"]["template"]["metadata"] = {"labels": {"app": "x"}}
    spec = defaulted("batch", "Job", manual)["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "x"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "x"}


def test_job_template_restart_policy_is_defaulted_like_any_pod_spec() -> None:
    # Kubernetes defaults Always here too; validation then rejects it for a Job.
    obj = copy.deepcopy(JOB)
    del obj["spec"]["template"]["spec"]["restartPolicy"]
    assert defaulted("batch", "Job", obj)["spec"]["template"]["spec"]["restartPolicy"] == "Always"


def test_cronjob_defaults() -> None:
    cj = defaulted(
        "batch",
        "CronJob",
        {
            "metadata": {"name": "c", "namespace": "d"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": JOB["spec"]}},
        },
    )
    spec = cj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"]) == ("Allow", False)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    job_spec = spec["jobTemplate"]["spec"]
    assert job_spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert "backoffLimit" not in job_spec and "selector" not in job_spec  # only real Jobs get those


def test_service_defaults_without_allocating_a_cluster_ip() -> None:
    svc = defaulted(
        "",
        "Service",
        {
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80}, {"name": "m", "port": 9090, "targetPort": "metrics"}],
            },
        },
    )
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1]["targetPort"] == "metrics"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("SingleStack", ["IPv4"])
    assert "clusterIP" not in spec  # the apiserver allocates it


def test_node_port_and_external_name_services() -> None:
    def svc(stype: str) -> dict[str, Any]:
        return defaulted("", "Service", {"metadata": {"name": "w"}, "spec": {"type": stype, "ports": [{"port": 80}]}})

    assert svc("NodePort")["spec"]["externalTrafficPolicy"] == "Cluster"
    assert svc("LoadBalancer")["spec"]["allocateLoadBalancerNodePorts"] is True
    ext = defaulted(
        "", "Service", {"metadata": {"name": "w"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}
    )
    assert "ipFamilies" not in ext["spec"] and "internalTrafficPolicy" not in ext["spec"]


def test_secret_namespace_and_crd_defaults() -> None:
    secret = defaulted("", "Secret", {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}})
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    ns = defaulted("", "Namespace", {"metadata": {"name": "team-a"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}
    crd = defaulted(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        {"metadata": {"name": "widgets.example.com"}, "spec": {"names": {"kind": "Widget"}}},
    )
    assert crd["spec"]["names"]["singular"] == "widget"
    assert crd["spec"]["names"]["listKind"] == "WidgetList"


def test_custom_resource_schema_defaults() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "mode": {"type": "string", "default": "fast"},
                    "tls": {
                        "type": "object",
                        "default": {},
                        "properties": {"enabled": {"type": "boolean", "default": True}},
                    },
                    "note": {"type": "string"},
                    "ports": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}},
                    },
                },
            }
        },
    }
    widget = ResourceType("example.com", "v1", "Widget", "widgets", True, schema=schema, crd=True)
    obj: dict[str, Any] = {"metadata": {"name": "w"}, "spec": {"mode": None, "note": None, "ports": [{}]}}
    apply_defaults(widget, obj)
    assert obj["spec"] == {"replicas": 1, "mode": "fast", "tls": {"enabled": True}, "ports": [{"protocol": "TCP"}]}
