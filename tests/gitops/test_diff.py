"""The diff as users see it: Synced when the cluster holds what Git says (server defaults
and all), OutOfSync with a readable diff when it does not, ignoreDifferences honoured,
Secret values never shown."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from controllers.cluster import EmbeddedCluster
from gitops.diff import EXTRANEOUS, MISSING, OUT_OF_SYNC, SYNCED, compare, mask_secret
from gitops.resources import TRACKING

Obj = dict[str, Any]


def deployment(image: str = "nginx:1.25", replicas: int = 2) -> Obj:
    """A Deployment as it sits in Git."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                        },
                        {"name": "log", "image": "busybox:1.36", "args": ["tail", "-f", "/var/log/app.log"]},
                    ]
                },
            },
        },
    }


def live_deployment(desired: Obj, replicas_owner: str = "gitops") -> Obj:
    """`desired` as the API server stores it after our apply and a rollout: server
    metadata, defaults, bookkeeping annotations, status."""
    live = copy.deepcopy(desired)
    meta = live["metadata"]
    meta.update(
        uid="6f1c1a52-0d0e-4d4e-9a57-3c1b8f0b7a11",
        resourceVersion="4711",
        generation=3,
        creationTimestamp="2024-05-01T10:00:00Z",
        annotations={TRACKING: "argocd_shop:apps/Deployment:shop/web", "deployment.kubernetes.io/revision": "3"},
    )
    spec_fields = {"f:selector": {}, "f:template": {"f:spec": {"f:containers": {}}}}
    if replicas_owner == "gitops":
        spec_fields["f:replicas"] = {}
    meta["managedFields"] = [
        {
            "manager": "gitops",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": "2024-05-01T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": spec_fields},
        },
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "subresource": "status",
            "time": "2024-05-01T10:01:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:replicas": {}, "f:readyReplicas": {}}},
        },
    ]
    if replicas_owner != "gitops":
        meta["managedFields"].append(
            {
                "manager": replicas_owner,
                "operation": "Update",
                "apiVersion": "apps/v1",
                "subresource": "scale",
                "time": "2024-05-01T10:02:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }
        )
    spec = live["spec"]
    spec.update(
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        revisionHistoryLimit=10,
        progressDeadlineSeconds=600,
    )
    pod = spec["template"]["spec"]
    pod.update(
        restartPolicy="Always",
        terminationGracePeriodSeconds=30,
        dnsPolicy="ClusterFirst",
        schedulerName="default-scheduler",
        securityContext={},
    )
    for container in pod["containers"]:
        container.update(
            terminationMessagePath="/dev/termination-log",
            terminationMessagePolicy="File",
            imagePullPolicy="IfNotPresent",
        )
        for port in container.get("ports", []):
            port["protocol"] = "TCP"
    live["status"] = {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
    return live


def set_image(obj: Obj, image: str, container: int = 0) -> Obj:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"][container]["image"] = image
    return out


def predicted_after_apply(live: Obj, **spec: Any) -> Obj:
    """What a forced server-side apply dry run answers: live with our new values and a
    fresh managedFields time."""
    predicted = copy.deepcopy(live)
    predicted["spec"].update(spec)
    predicted["metadata"]["managedFields"][0]["time"] = "2024-06-01T09:00:00Z"
    return predicted


# --------------------------------------------------------------------------- sync status and diff


def test_live_object_full_of_server_defaults_is_synced() -> None:
    desired = deployment()
    live = live_deployment(desired)
    result = compare(desired, copy.deepcopy(live), live)
    assert result.status == SYNCED
    assert result.diff == ""
    assert result.patch == []
    # The client-side fallback agrees: defaults and server metadata are not differences.
    assert compare(desired, None, live).status == SYNCED


def test_changed_image_is_out_of_sync_with_a_readable_diff_and_patch() -> None:
    desired = set_image(deployment(), "nginx:1.26")
    live = live_deployment(deployment())
    predicted = set_image(predicted_after_apply(live), "nginx:1.26")
    result = compare(desired, predicted, live)
    assert result.status == OUT_OF_SYNC
    assert result.diff.startswith("--- live\n+++ desired\n")
    changed = [line for line in result.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert changed == ["-      - image: nginx:1.25", "+      - image: nginx:1.26"]
    assert result.patch == [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.26"}]
    # What the dashboard shows side by side: no server bookkeeping, keys in stable order.
    target = result.normalized_target
    assert target is not None
    assert list(target) == ["apiVersion", "kind", "metadata", "spec"]
    assert set(target["metadata"]) == {"labels", "name", "namespace"}


def test_fallback_reads_quantities_and_ports_as_the_server_does() -> None:
    live = live_deployment(deployment())
    desired = deployment()
    web = desired["spec"]["template"]["spec"]["containers"][0]
    web["resources"]["requests"] = {"cpu": "0.5", "memory": "262144Ki"}
    web["ports"] = [{"containerPort": "8080"}]  # quoted by a template
    desired["metadata"]["annotations"] = {}
    desired["spec"]["template"]["spec"]["containers"][1]["env"] = []
    assert compare(desired, None, live).status == SYNCED

    web["resources"]["requests"]["cpu"] = "1"
    result = compare(desired, None, live)
    assert result.status == OUT_OF_SYNC
    assert "-            cpu: 500m\n+            cpu: '1'\n" in result.diff


def test_fallback_keeps_a_string_target_port_distinct_from_the_number() -> None:
    """In an int-or-string field a string is a port name: "8080" is not 8080."""
    desired = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": "80", "targetPort": 8080}]},
    }
    live = copy.deepcopy(desired)
    live["spec"]["ports"] = [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]
    live["spec"].update(type="ClusterIP", clusterIP="10.96.0.10", sessionAffinity="None")
    assert compare(desired, None, live).status == SYNCED

    desired["spec"]["ports"][0]["targetPort"] = "8080"
    result = compare(desired, None, live)
    assert result.status == OUT_OF_SYNC
    assert result.patch == [{"op": "replace", "path": "/spec/ports/0/targetPort", "value": "8080"}]


# --------------------------------------------------------------------------- ignoreDifferences


def test_ignore_json_pointer_hides_replicas_changed_by_an_autoscaler() -> None:
    desired = deployment(replicas=2)
    live = live_deployment(desired)
    live["spec"]["replicas"] = 5
    predicted = predicted_after_apply(live, replicas=2)
    assert compare(desired, predicted, live).status == OUT_OF_SYNC

    rule = {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}
    result = compare(desired, predicted, live, [rule])
    assert result.status == SYNCED
    assert result.diff == ""
    # Rules for other objects leave this one alone.
    for other in ({**rule, "name": "api"}, {**rule, "namespace": "other"}, {**rule, "group": ""}):
        assert compare(desired, predicted, live, [other]).status == OUT_OF_SYNC


def test_ignore_jq_path_hides_one_containers_image_only() -> None:
    desired = deployment()
    live = set_image(live_deployment(desired), "nginx:1.25-patched")  # set by an image updater
    predicted = set_image(live, "nginx:1.25")
    rule = {
        "group": "apps",
        "kind": "Deployment",
        "jqPathExpressions": ['.spec.template.spec.containers[] | select(.name == "web") | .image'],
    }
    assert compare(desired, predicted, live).status == OUT_OF_SYNC
    assert compare(desired, predicted, live, [rule]).status == SYNCED

    # The sidecar's image is still compared.
    desired_log = set_image(desired, "busybox:1.37", container=1)
    result = compare(desired_log, set_image(predicted, "busybox:1.37", container=1), live, [rule])
    assert result.status == OUT_OF_SYNC
    assert "+        image: busybox:1.37" in result.diff
    assert "nginx" not in "".join(line for line in result.diff.splitlines() if line[:1] in "+-")


def test_ignore_a_jq_expression_that_does_not_compile_is_reported() -> None:
    desired = deployment()
    live = set_image(live_deployment(desired), "nginx:2")
    with pytest.raises(ValueError, match="jqPathExpression"):
        compare(
            desired,
            set_image(live, "nginx:1.25"),
            live,
            [{"kind": "Deployment", "group": "apps", "jqPathExpressions": [".spec[["]}],
        )


def test_ignore_managed_fields_manager_gives_way_to_the_autoscaler() -> None:
    desired = deployment(replicas=2)
    live = live_deployment(desired, replicas_owner="kube-controller-manager")
    live["spec"]["replicas"] = 7
    predicted = predicted_after_apply(live, replicas=2)
    rule = {"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["kube-controller-manager"]}
    assert compare(desired, predicted, live).status == OUT_OF_SYNC
    assert compare(desired, predicted, live, [rule]).status == SYNCED

    # Fields the trusted manager does not own are still ours to compare.
    result = compare(set_image(desired, "nginx:1.26"), set_image(predicted, "nginx:1.26"), live, [rule])
    assert result.status == OUT_OF_SYNC
    assert [op["path"] for op in result.patch] == ["/spec/template/spec/containers/0/image"]


# --------------------------------------------------------------------------- Secrets


def secret(**data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "stringData": data}


def live_secret(**data: str) -> Obj:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    last_applied = json.dumps({"apiVersion": "v1", "kind": "Secret", "data": encoded})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "db",
            "namespace": "shop",
            "uid": "0b6b2e3c-1111-4a5b-9c0d-2e3f4a5b6c7d",
            "resourceVersion": "99",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
        },
        "data": encoded,
    }


def test_secret_change_is_visible_but_no_value_leaks() -> None:
    live = live_secret(username="app-user", password="hunter2")
    assert compare(secret(username="app-user", password="hunter2"), None, live).status == SYNCED

    result = compare(secret(username="app-user", password="correct-horse"), None, live)
    assert result.status == OUT_OF_SYNC
    shown = result.diff + json.dumps(result.patch) + json.dumps([result.normalized_live, result.normalized_target])
    for value in ("hunter2", "correct-horse", "app-user"):
        for form in (value, base64.b64encode(value.encode()).decode()):
            assert f"'{form}'" not in shown and f'"{form}"' not in shown and f": {form}\n" not in shown
    changed = [line for line in result.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert len(changed) == 2 and changed[0].startswith("-  password: ") and changed[1].startswith("+  password: ")
    assert changed[0] != changed[1]
    assert set(changed[0].split(": ")[1].strip("'")) == {"+"}
    assert [op["path"] for op in result.patch] == ["/data/password"]


def test_mask_secret_hides_values_in_data_and_in_the_last_applied_annotation() -> None:
    live = live_secret(password="hunter2", token="hunter2")
    masked = mask_secret(live)
    assert masked is not None
    text = json.dumps(masked)
    assert base64.b64encode(b"hunter2").decode() not in text
    assert masked["data"]["password"] == masked["data"]["token"] == "++++++++"
    assert live["data"]["password"] != "++++++++"  # the input is left alone
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"mode": "fast"}}
    assert mask_secret(config) == config  # only Secrets hide their data


# --------------------------------------------------------------------------- presence


def test_missing_and_extraneous() -> None:
    desired = deployment()
    missing = compare(desired, None, None)
    assert missing.status == MISSING
    assert missing.normalized_live is None
    assert "+kind: Deployment" in missing.diff

    live = live_deployment(desired)
    extraneous = compare(None, None, live)
    assert extraneous.status == EXTRANEOUS
    assert extraneous.normalized_target is None
    assert str(extraneous.key) == "apps/Deployment:shop/web"
    assert "-kind: Deployment" in extraneous.diff


# --------------------------------------------------------------------------- the real API server


def test_server_side_diff_against_the_embedded_api(cluster: EmbeddedCluster) -> None:
    client = cluster.client
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80}],
                            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }
    client.apply(manifest, field_manager="gitops")

    def diff(desired: Obj) -> Any:
        live = client.get("apps/v1", "Deployment", "web", "default")
        predicted = client.apply(desired, field_manager="gitops", force=True, dry_run=True)
        return compare(desired, predicted, live)

    # The server filled in strategy, probes' defaults, dnsPolicy...: none of it is a difference.
    same = diff(manifest)
    assert same.status == SYNCED, same.diff

    changed = copy.deepcopy(manifest)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    result = diff(changed)
    assert result.status == OUT_OF_SYNC
    assert [op["path"] for op in result.patch] == ["/spec/template/spec/containers/0/image"]

    # A label we applied before and dropped from Git: the dry run removes it.
    dropped = copy.deepcopy(manifest)
    del dropped["metadata"]["labels"]["tier"]
    result = diff(dropped)
    assert result.status == OUT_OF_SYNC
    assert result.patch == [{"op": "remove", "path": "/metadata/labels/tier"}]
    assert "-    tier: front" in result.diff
