"""The official `kubernetes` Python client, unmodified, against the embedded API."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config, dynamic, watch
from kubernetes.client.rest import ApiException

from controllers.cluster import EmbeddedCluster


@pytest.fixture
def api(kubeconfig: Path) -> k8s.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def _deployment(name: str) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=2,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image="nginx:1.25")]),
            ),
        ),
    )


def test_core_and_apps_crud(api: k8s.ApiClient) -> None:
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="team")))
    assert "team" in [n.metadata.name for n in core.list_namespace().items]
    core.create_namespaced_config_map("team", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="c"), data={"a": "1"}))
    assert core.read_namespaced_config_map("c", "team").data == {"a": "1"}
    svc = core.create_namespaced_service(
        "team",
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="s"),
            spec=k8s.V1ServiceSpec(selector={"app": "x"}, ports=[k8s.V1ServicePort(port=80)]),
        ),
    )
    assert svc.spec.cluster_ip.startswith("10.")
    assert svc.spec.ports[0].target_port == 80

    dep = apps.create_namespaced_deployment("team", _deployment("web"))
    assert dep.spec.strategy.rolling_update.max_surge == "25%"
    dep.spec.replicas = 4
    replaced = apps.replace_namespaced_deployment("web", "team", dep)
    assert replaced.spec.replicas == 4 and replaced.metadata.generation == 2
    scaled = apps.patch_namespaced_deployment_scale("web", "team", {"spec": {"replicas": 6}})
    assert scaled.spec.replicas == 6
    assert apps.read_namespaced_deployment_scale("web", "team").spec.replicas == 6

    with pytest.raises(ApiException) as stale:
        apps.replace_namespaced_deployment("web", "team", dep)  # still at the old resourceVersion
    assert stale.value.status == 409

    apps.delete_namespaced_deployment("web", "team")
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("web", "team")
    assert missing.value.status == 404


def test_custom_objects(api: k8s.ApiClient) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                ],
            },
        }
    )
    co = k8s.CustomObjectsApi(api)
    body = {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "nightly"},
        "spec": {"cronSpec": "* * * * */5"},
    }
    co.create_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs", body)
    got = co.get_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs", "nightly")
    assert got["spec"]["cronSpec"] == "* * * * */5"
    co.patch_namespaced_custom_object(
        "stable.example.com", "v1", "default", "crontabs", "nightly", {"spec": {"cronSpec": "0 0 * * *"}}
    )
    items = co.list_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs")["items"]
    assert [i["spec"]["cronSpec"] for i in items] == ["0 0 * * *"]
    co.delete_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs", "nightly")
    assert co.list_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs")["items"] == []


def test_watch_stream_resumes_from_a_resource_version(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    first = core.create_namespaced_config_map("default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="a")))
    core.create_namespaced_config_map("default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="b")))
    core.delete_namespaced_config_map("a", "default")
    w = watch.Watch()
    seen = []
    for ev in w.stream(
        core.list_namespaced_config_map, "default", resource_version=first.metadata.resource_version, timeout_seconds=5
    ):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", "b"), ("DELETED", "a")]


def test_expired_resource_version_answers_410(api: k8s.ApiClient, cluster: EmbeddedCluster) -> None:
    core = k8s.CoreV1Api(api)
    first = core.create_namespaced_config_map("default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="a")))
    log = cluster.store._log
    for i in range(3):
        core.create_namespaced_config_map("default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"n{i}")))
    cluster.store._log = type(log)(list(log)[-1:], maxlen=log.maxlen)
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map(
            "default",
            watch=True,
            resource_version=first.metadata.resource_version,
            timeout_seconds=2,
            _preload_content=False,
        )
    assert exc.value.status == 410


def test_dynamic_client_discovery(api: k8s.ApiClient) -> None:
    dyn = dynamic.DynamicClient(api)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and deployments.name == "deployments"
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    body = api.sanitize_for_serialization(_deployment("dyn")) | {"apiVersion": "apps/v1", "kind": "Deployment"}
    dyn.create(deployments, body=body, namespace="default")
    assert dyn.get(deployments, name="dyn", namespace="default").spec.replicas == 2
    assert dyn.get(pods, namespace="default").items == []
