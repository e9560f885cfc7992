"""One contract for the cluster client: LocalClient in-process and RemoteClient over HTTP
against the same embedded API must behave the same."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controllers import errors
from controllers.client import Client, RemoteClient
from controllers.cluster import EmbeddedCluster


@pytest.fixture(params=["local", "remote"])
def client(request: pytest.FixtureRequest, cluster: EmbeddedCluster, kubeconfig: Path) -> Iterator[Client]:
    if request.param == "local":
        yield cluster.client
    else:
        yield RemoteClient.from_kubeconfig(str(kubeconfig))


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.25") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def configmap(name: str, labels: dict | None = None, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "data": data,
    }


def test_create_get_update_delete(client: Client) -> None:
    created = client.create(deployment("web"))
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    assert created["spec"]["progressDeadlineSeconds"] == 600
    got = client.get("apps/v1", "Deployment", "web", "default")
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    got["spec"]["replicas"] = 3
    updated = client.update(got)
    assert updated["metadata"]["generation"] == 2
    with pytest.raises(errors.Conflict):
        client.update(got)  # stale resourceVersion
    with pytest.raises(errors.AlreadyExists):
        client.create(deployment("web"))
    client.delete("apps/v1", "Deployment", "web", "default")
    with pytest.raises(errors.NotFound):
        client.get("apps/v1", "Deployment", "web", "default")


def test_status_is_written_only_through_the_status_subresource(client: Client) -> None:
    dep = client.create(deployment("web"))
    dep["status"] = {"replicas": 7}
    after_main = client.update(dep)
    assert "replicas" not in after_main.get("status", {})
    after_main["status"] = {"replicas": 7, "observedGeneration": 1}
    after_main["spec"]["replicas"] = 9
    after_status = client.update_status(after_main)
    assert after_status["status"]["replicas"] == 7
    assert after_status["spec"]["replicas"] == 1
    assert after_status["metadata"]["generation"] == 1


def test_list_with_selectors_and_paging(client: Client) -> None:
    for i in range(7):
        client.create(configmap(f"cm{i}", {"tier": "a" if i % 2 else "b"}))
    assert {c["metadata"]["name"] for c in client.list("v1", "ConfigMap", "default", "tier=a")["items"]} == {
        "cm1",
        "cm3",
        "cm5",
    }
    assert len(client.list("v1", "ConfigMap", "default", "tier in (a,b),tier!=b")["items"]) == 3
    only = client.list("v1", "ConfigMap", "default", field_selector="metadata.name=cm4")["items"]
    assert [c["metadata"]["name"] for c in only] == ["cm4"]
    names, token = [], ""
    while True:
        page = client.list("v1", "ConfigMap", "default", "tier", limit=3, continue_token=token)
        names += [c["metadata"]["name"] for c in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert names == [f"cm{i}" for i in range(7)]


def test_patch_types_and_dry_run(client: Client) -> None:
    client.create(deployment("web"))
    out = client.patch("apps/v1", "Deployment", "web", {"spec": {"replicas": 4}}, "default", "merge")
    assert out["spec"]["replicas"] == 4
    out = client.patch(
        "apps/v1", "Deployment", "web", [{"op": "replace", "path": "/spec/replicas", "value": 2}], "default", "json"
    )
    assert out["spec"]["replicas"] == 2
    out = client.patch(
        "apps/v1",
        "Deployment",
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox:1"}]}}}},
        "default",
        "strategic",
    )
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["side", "main"]
    dry = client.patch("apps/v1", "Deployment", "web", {"spec": {"replicas": 8}}, "default", dry_run=True)
    assert dry["spec"]["replicas"] == 8
    assert client.get("apps/v1", "Deployment", "web", "default")["spec"]["replicas"] == 2
    client.create(configmap("dry"), dry_run=True)
    with pytest.raises(errors.NotFound):
        client.get("v1", "ConfigMap", "dry", "default")


def test_server_side_apply_ownership(client: Client) -> None:
    applied = client.apply(configmap("owned", a="1", b="2"), field_manager="team-a")
    assert applied["data"] == {"a": "1", "b": "2"}
    client.apply(configmap("owned", a="1"), field_manager="team-a")
    assert client.get("v1", "ConfigMap", "owned", "default")["data"] == {"a": "1"}  # b no longer applied
    with pytest.raises(errors.Conflict) as exc:
        client.apply(configmap("owned", a="other"), field_manager="team-b")
    assert "team-a" in exc.value.message and ".data.a" in exc.value.message
    forced = client.apply(configmap("owned", a="other"), field_manager="team-b", force=True)
    assert forced["data"]["a"] == "other"


def test_watch_from_a_resource_version_and_gone(client: Client, cluster: EmbeddedCluster) -> None:
    first = client.create(configmap("w1"))
    client.create(configmap("w2"))
    client.delete("v1", "ConfigMap", "w1", "default")
    stream = client.watch("v1", "ConfigMap", "default", first["metadata"]["resourceVersion"], timeout_seconds=5)
    seen = []
    for ev in stream:
        seen.append((ev.type, ev.object["metadata"]["name"]))
        if len(seen) == 2:
            stream.stop()
    assert seen == [("ADDED", "w2"), ("DELETED", "w1")]
    # Push the log past the old revision: resuming from it answers 410 Gone.
    cluster.store._log = type(cluster.store._log)(list(cluster.store._log)[-1:], maxlen=cluster.store._log.maxlen)
    with pytest.raises(errors.Gone):
        for _ in client.watch("v1", "ConfigMap", "default", first["metadata"]["resourceVersion"], timeout_seconds=2):
            pass


def test_watch_sees_writes_by_others_as_they_happen(client: Client, cluster: EmbeddedCluster) -> None:
    start = client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    stream = client.watch("v1", "ConfigMap", "default", start, label_selector="team=x", timeout_seconds=10)
    got: list[tuple[str, str]] = []

    def consume() -> None:
        for ev in stream:
            got.append((ev.type, ev.object["metadata"]["name"]))
            if len(got) == 3:
                stream.stop()

    t = threading.Thread(target=consume)
    t.start()
    cluster.client.create(configmap("x1", {"team": "x"}))
    cluster.client.create(configmap("y1", {"team": "y"}))
    cluster.client.patch("v1", "ConfigMap", "x1", {"metadata": {"labels": {"team": "z"}}}, "default")
    cluster.client.patch("v1", "ConfigMap", "y1", {"metadata": {"labels": {"team": "x"}}}, "default")
    t.join(10)
    # Leaving the selector is a DELETED, entering it an ADDED, as the apiserver reports.
    assert got == [("ADDED", "x1"), ("DELETED", "x1"), ("ADDED", "y1")]


def test_finalizers_hold_deletion_until_removed(client: Client) -> None:
    cm = configmap("held")
    cm["metadata"]["finalizers"] = ["example.com/hold"]
    client.create(cm)
    out = client.delete("v1", "ConfigMap", "held", "default")
    assert out["metadata"]["deletionTimestamp"]
    live = client.get("v1", "ConfigMap", "held", "default")
    assert live["metadata"]["deletionTimestamp"]
    client.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, "default")
    with pytest.raises(errors.NotFound):
        client.get("v1", "ConfigMap", "held", "default")


def test_invalid_object_names_the_field(client: Client) -> None:
    bad = deployment("bad")
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    with pytest.raises(errors.Invalid) as exc:
        client.create(bad)
    assert "spec.template.spec.containers[0].image" in exc.value.message


def test_custom_resources_are_served_once_their_crd_exists(client: Client) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }
    client.create(crd)
    g = client.create(
        {
            "apiVersion": "example.com/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1", "namespace": "default"},
            "spec": {"size": 2},
        }
    )
    g["status"] = {"ready": True}
    assert client.update_status(g)["status"] == {"ready": True}
    assert [i["metadata"]["name"] for i in client.list("example.com/v1", "Gadget", "default")["items"]] == ["g1"]
    with pytest.raises(errors.Invalid):
        client.create(
            {
                "apiVersion": "example.com/v1",
                "kind": "Gadget",
                "metadata": {"name": "g2", "namespace": "default"},
                "spec": {"size": "big"},
            }
        )
    client.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", "gadgets.example.com")
    with pytest.raises(errors.NotFound):
        client.list("example.com/v1", "Gadget", "default")


def test_namespaced_objects_need_their_namespace(client: Client) -> None:
    cm = configmap("lost")
    cm["metadata"]["namespace"] = "nowhere"
    with pytest.raises(errors.NotFound) as exc:
        client.create(cm)
    assert 'namespaces "nowhere" not found' in exc.value.message
