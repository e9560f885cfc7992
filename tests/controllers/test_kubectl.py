"""The real kubectl binary against the embedded API, as a user would drive it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

from controllers.cluster import EmbeddedCluster
from tests.conftest import Kubectl

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: prod
      - name: sidecar
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
"""

WIDGET = """\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: gear
  namespace: shop
spec:
  size: 3
  color: red
"""


def _apply_all(kubectl: Kubectl, tmp_path: Path) -> Path:
    app = tmp_path / "app.yaml"
    app.write_text(MANIFEST)
    out = kubectl("apply", "-f", str(app))
    assert "namespace/shop created" in out
    assert "deployment.apps/web created" in out
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created" in out
    widget = tmp_path / "widget.yaml"
    widget.write_text(WIDGET)
    assert "widget.example.com/gear created" in kubectl("apply", "-f", str(widget))
    return app


def test_apply_get_and_reapply_an_edited_file(kubectl: Kubectl, tmp_path: Path) -> None:
    app = _apply_all(kubectl, tmp_path)

    dep = yaml.safe_load(kubectl("get", "deployment", "web", "-n", "shop", "-o", "yaml"))
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]

    wide = kubectl("get", "deployments", "-n", "shop", "-o", "wide")
    assert "CONTAINERS" in wide and "nginx:1.25,busybox:1.36" in wide
    svc = kubectl("get", "svc", "web", "-n", "shop")
    assert "ClusterIP" in svc and "80/TCP" in svc
    assert "gear" in kubectl("get", "wd", "-n", "shop")

    # Edit the file: new image, one env var dropped, the sidecar removed; apply again.
    edited = (
        MANIFEST.replace("nginx:1.25", "nginx:1.26")
        .replace("        env:\n        - name: MODE\n          value: prod\n", "")
        .replace("      - name: sidecar\n        image: busybox:1.36\n", "")
    )
    app.write_text(edited)
    out = kubectl("apply", "-f", str(app))
    assert "deployment.apps/web configured" in out
    assert "configmap/settings unchanged" in out
    dep = yaml.safe_load(kubectl("get", "deployment", "web", "-n", "shop", "-o", "yaml"))
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web"]
    assert containers[0]["image"] == "nginx:1.26"
    assert "env" not in containers[0]
    assert dep["metadata"]["generation"] == 2


def test_server_side_apply_and_diff(kubectl: Kubectl, tmp_path: Path) -> None:
    app = _apply_all(kubectl, tmp_path)
    cm = tmp_path / "cm.yaml"
    cm.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: shop}\ndata: {a: '1'}\n")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(cm))
    live = json.loads(kubectl("get", "cm", "ssa", "-n", "shop", "-o", "json", "--show-managed-fields"))
    managers = {m["manager"]: m for m in live["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:a" in managers["kubectl"]["fieldsV1"]["f:data"]

    # No change: diff exits 0. A change: diff shows it and exits 1.
    assert kubectl.run("diff", "-f", str(app), check=False).returncode == 0
    app.write_text(MANIFEST.replace("color: blue", "color: green"))
    proc = kubectl.run("diff", "-f", str(app), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "-  color: blue" in proc.stdout and "+  color: green" in proc.stdout


def test_watch_prints_changes_made_by_another_client(
    kubectl: Kubectl, cluster: EmbeddedCluster, kubeconfig: Path
) -> None:
    kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {k: v}\n")
    proc = subprocess.Popen(
        [kubectl.binary, "--kubeconfig", str(kubeconfig), "get", "configmaps", "--watch-only", "-o", "name"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let kubectl open its watch
        cluster.client.patch("v1", "ConfigMap", "watched", {"data": {"k": "changed"}}, namespace="default")
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "configmap/watched"
    finally:
        proc.kill()
        proc.wait()


def test_delete_label_annotate_patch_scale(kubectl: Kubectl, tmp_path: Path) -> None:
    _apply_all(kubectl, tmp_path)
    ns = ("-n", "shop")
    kubectl("label", "deployment", "web", "tier=frontend", *ns)
    kubectl("annotate", "deployment", "web", "owner=team-a", *ns)
    kubectl("patch", "deployment", "web", *ns, "--type", "merge", "-p", '{"spec":{"minReadySeconds":5}}')
    kubectl(
        "patch",
        "deployment",
        "web",
        *ns,
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]',
    )
    kubectl(
        "patch",
        "deployment",
        "web",
        *ns,
        "--type",
        "strategic",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}',
    )
    assert "scaled" in kubectl("scale", "deployment", "web", "--replicas=5", *ns)
    dep = json.loads(kubectl("get", "deployment", "web", *ns, "-o", "json"))
    assert dep["metadata"]["labels"]["tier"] == "frontend"
    assert dep["metadata"]["annotations"]["owner"] == "team-a"
    assert dep["spec"]["minReadySeconds"] == 5
    assert dep["spec"]["revisionHistoryLimit"] == 3
    assert dep["spec"]["replicas"] == 5
    images = {c["name"]: c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert images == {"web": "nginx:1.27", "sidecar": "busybox:1.36"}

    proc = kubectl.run(
        "patch",
        "deployment",
        "web",
        *ns,
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/spec/replicas","value":9}]',
        check=False,
    )
    assert proc.returncode != 0

    assert "deleted" in kubectl("delete", "configmap", "settings", *ns)
    proc = kubectl.run("get", "configmap", "settings", *ns, check=False)
    assert proc.returncode == 1
    assert 'configmaps "settings" not found' in proc.stderr

    out = kubectl("delete", "deployment", "web", *ns, "--cascade=foreground", "--wait=false")
    assert "deleted" in out
    dep = json.loads(kubectl("get", "deployment", "web", *ns, "-o", "json"))
    assert "foregroundDeletion" in dep["metadata"]["finalizers"]
    assert dep["metadata"]["deletionTimestamp"]


def test_invalid_objects_are_refused_with_the_field_named(kubectl: Kubectl, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\n"
        "spec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n"
        "    spec:\n      containers: [{name: c, image: nginx:1.25}]\n"
    )
    proc = kubectl.run("apply", "-f", str(bad), check=False)
    assert proc.returncode == 1
    assert "spec.template.metadata.labels" in proc.stderr
    assert "selector" in proc.stderr


def test_unknown_fields_are_refused_by_strict_validation(kubectl: Kubectl, tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: typo}\n"
        "spec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n"
        "    spec:\n      containers: [{name: c, image: nginx:1.25, imagePullPolice: Always}]\n"
    )
    proc = kubectl.run("apply", "-f", str(typo), check=False)
    assert proc.returncode == 1
    assert 'unknown field "spec.template.spec.containers[0].imagePullPolice"' in proc.stderr
    proc = kubectl.run("apply", "--validate=false", "-f", str(typo), check=False)
    assert proc.returncode == 0, proc.stderr
    dep = json.loads(kubectl("get", "deployment", "typo", "-o", "json"))
    assert "imagePullPolice" not in dep["spec"]["template"]["spec"]["containers"][0]
