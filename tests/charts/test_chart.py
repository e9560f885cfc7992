"""The Helm chart (charts/gitops): linted and rendered with the Helm SDK (helm-python-sdk
bundles Helm's own Go library, so `lint` is `helm lint`), installed into the embedded
cluster with the real kubectl, and deployed by the engine itself from a git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import orjson
import pytest
import yaml

from controllers.client import LocalClient
from controllers.cluster import EmbeddedCluster
from gitops import apps
from gitops.controller import EngineSettings
from gitops.engine import Engine
from gitops.yamlload import load_manifests
from tests.conftest import Kubectl, eventually

CHART = Path(__file__).resolve().parents[2] / "charts" / "gitops"
NS = "gitops-system"
CRD_HEADER = "# Generated from gitops/apps.py (application_crd); tests/charts checks it is identical.\n"
# Every optional part switched on.
EVERYTHING = {
    "ingress": {"enabled": True, "className": "nginx", "tls": [{"secretName": "t", "hosts": ["gitops.example.com"]}]},
    "admission": {
        "enabled": True,
        "mutating": True,
        "caBundle": "Y2E=",
        "failurePolicy": "Ignore",
        "tlsSecretName": "gitops-webhook-tls",
    },
    "rbac": {"deploy": {"anyKind": True}},
}
# Fixed secrets: a render must be the same every time for the engine to see it in sync.
FIXED = {"secrets": {"webhookSecret": "hook-secret", "adminToken": "admin-token"}}

Obj = dict[str, Any]


def crd_text(group: str) -> str:
    return CRD_HEADER + yaml.safe_dump(apps.application_crd(group), sort_keys=False)


def write_crds() -> None:
    """Regenerate charts/gitops/crds from gitops/apps.py (after changing the CRD there)."""
    for group in (apps.GROUP, "argoproj.io"):
        (CHART / "crds" / f"applications.{group}.yaml").write_text(crd_text(group))


def render(values: Obj | None = None, release: str = "gitops") -> list[Obj]:
    with helm_python.Chart.load(CHART) as chart:
        out = chart.render(values or {}, name=release, namespace=NS, is_install=True)
        crds = chart.crds
    objects = [o for c in crds for o in load_manifests(c["data"], c["filename"])]
    for name, text in sorted(out.items()):
        if not name.endswith("NOTES.txt"):
            objects.extend(load_manifests(text, name))
    return objects


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {[o['metadata']['name'] for o in found]}"
    return found[0]


# ---------------------------------------------------------------------- lint and render
@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["defaults", "everything"])
def test_helm_lint_is_clean(values: Obj) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace=NS)
    assert report["errors"] == []
    assert report["total_charts_linted"] == 1
    # Severity 1 is INFO (only "icon is recommended"); warnings and errors fail strict lint.
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_the_chart_crds_are_the_engine_crds() -> None:
    for group in (apps.GROUP, "argoproj.io"):
        path = CHART / "crds" / f"applications.{group}.yaml"
        assert path.read_text() == crd_text(group), (
            f"{path} differs from gitops/apps.py: regenerate it with "
            "`python -c 'from tests.charts.test_chart import write_crds; write_crds()'`"
        )


def test_values_schema_names_the_bad_value() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="/replicaCount.*want integer"):
        render({"replicaCount": "two"})
    with pytest.raises(helm_python.HelmValuesError, match="'pollinterval' not allowed"):
        render({"engine": {"pollinterval": 3}})
    with pytest.raises(helm_python.HelmValuesError, match="/admission/failurePolicy"):
        render({"admission": {"failurePolicy": "Sometimes"}})


def test_deployment_runs_non_root_read_only_with_probes_and_leader_election() -> None:
    objects = render({"replicaCount": 3, "engine": {"leaderElection": {"leaseDuration": 20}}})
    deploy = one(objects, "Deployment")
    assert deploy["spec"]["replicas"] == 3
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["limits"]["memory"] == "1Gi"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/data"]] and "emptyDir" in volumes[mounts["/tmp"]]
    assert {"up", "--in-cluster", f"--namespace={NS}", "--data-dir=/data", "--leader-elect"} <= set(c["args"])
    assert "--lease-duration=20" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["GITOPS_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "gitops", "key": "admin-token"}
    assert env["GITOPS_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "webhook-secret"
    assert pod["serviceAccountName"] == "gitops"


def test_rbac_is_least_privilege_unless_any_kind_is_asked_for() -> None:
    objects = render()
    role = one(objects, "Role")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {
        ("gitops.dev", "applications"),
        ("coordination.k8s.io", "leases"),
        ("", "events"),
        ("", "secrets"),
    } <= granted
    secrets_rule = next(r for r in role["rules"] if "secrets" in r["resources"])
    assert set(secrets_rule["verbs"]) == {"get", "list", "watch"}  # read only
    cluster_rules = [r for cr in by_kind(objects, "ClusterRole") for r in cr["rules"]]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in cluster_rules)
    crd_rule = next(r for r in cluster_rules if "patch" in r["verbs"] and "customresourcedefinitions" in r["resources"])
    assert crd_rule["resourceNames"] == ["applications.gitops.dev", "applications.argoproj.io"]
    deploy = one(objects, "ClusterRole", "gitops-deploy")
    assert {"deployments", "services", "configmaps", "jobs"} <= {
        r for rule in deploy["rules"] for r in rule["resources"]
    }
    bindings = by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding")
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": "gitops", "namespace": NS}] for b in bindings)

    anything = one(render({"rbac": {"deploy": {"anyKind": True}}}), "ClusterRole", "gitops-deploy")
    assert anything["rules"] == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]


def test_optional_parts_are_off_by_default_and_render_when_asked() -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"Ingress", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    objects = render(EVERYTHING)
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "gitops", "port": {"name": "http"}}
    for kind, path in (("ValidatingWebhookConfiguration", "validate"), ("MutatingWebhookConfiguration", "mutate")):
        (hook,) = one(objects, kind)["webhooks"]
        assert hook["clientConfig"]["service"]["path"] == f"/api/admission/{path}"
        assert hook["clientConfig"]["caBundle"] == "Y2E="
        assert hook["failurePolicy"] == "Ignore"
        (expr,) = hook["namespaceSelector"]["matchExpressions"]
        assert expr["operator"] == "NotIn" and {NS, "kube-system"} <= set(expr["values"])
    # The webhooks reach the engine's HTTPS listener with the serving certificate's Secret.
    service_port = next(p for p in one(objects, "Service")["spec"]["ports"] if p["name"] == "admission")
    assert (service_port["port"], service_port["targetPort"]) == (443, "https")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (engine,) = pod["containers"]
    assert {"--tls-port=8443", "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"} <= set(engine["args"])
    assert {"name": "https", "containerPort": 8443, "protocol": "TCP"} in engine["ports"]
    assert {"name": "tls", "secret": {"secretName": "gitops-webhook-tls"}} in pod["volumes"]
    with pytest.raises(Exception, match="admission.tlsSecretName"):
        render({"admission": {"enabled": True}})


def test_secrets_are_generated_once_or_taken_from_values() -> None:
    generated = one(render(), "Secret")["data"]
    assert len(generated["admin-token"]) >= 40 and generated["admin-token"] != generated["webhook-secret"]
    fixed = one(render(FIXED), "Secret")["data"]
    assert fixed == {"webhook-secret": "aG9vay1zZWNyZXQ=", "admin-token": "YWRtaW4tdG9rZW4="}
    existing = render({"secrets": {"existingSecret": "mine"}})
    assert not by_kind(existing, "Secret")
    env = one(existing, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    } == {"mine"}


# ---------------------------------------------------------------------- installed
def pods_running(kubectl: Kubectl, want: int) -> bool:
    pods = orjson.loads(kubectl("get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=gitops", "-o", "json"))
    phases = [p["status"].get("phase") for p in pods["items"]]
    return phases.count("Running") == want and len(phases) == want


def test_the_rendered_chart_installs_and_its_pods_run(kube_kubectl: Kubectl, tmp_path: Path) -> None:
    values = {**FIXED, "ingress": {"enabled": True}}
    manifest = tmp_path / "chart.yaml"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    manifest.write_text("---\n".join(yaml.safe_dump(o) for o in [namespace, *render(values)]))
    out = kube_kubectl("apply", "--server-side", "-f", str(manifest))
    assert "deployment.apps/gitops serverside-applied" in out
    eventually(lambda: pods_running(kube_kubectl, 2), 90, "2 engine pods Running")
    status = kube_kubectl("rollout", "status", "deployment/gitops", "-n", NS, "--timeout=60s")
    assert "successfully rolled out" in status
    assert "applications.gitops.dev" in kube_kubectl("get", "crd")
    assert "gitops" in kube_kubectl("get", "serviceaccount", "-n", NS)
    assert "gitops.example.com" in kube_kubectl("get", "ingress", "-n", NS)


def test_the_engine_deploys_its_own_chart_from_git(kube: EmbeddedCluster, tmp_path: Path) -> None:
    """The showcase: an Application whose source is this chart in a git repository."""
    bare = tmp_path / "engine.git"
    work = tmp_path / "work"
    shutil.copytree(CHART, work / "charts" / "gitops")
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for args, cwd in (
        (["init", "-q", "--bare", "-b", "main", str(bare)], tmp_path),
        (["init", "-q", "-b", "main"], work),
        (["add", "-A"], work),
        (["commit", "-q", "-m", "the engine's chart"], work),
        (["push", "-q", str(bare), "main"], work),
    ):
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)
    engine = Engine(LocalClient(kube.api), tmp_path / "data", EngineSettings(poll_seconds=600)).start()
    try:
        engine.client.apply(
            {
                "apiVersion": apps.API_VERSION,
                "kind": apps.KIND,
                "metadata": {"name": "gitops", "namespace": "default"},
                "spec": {
                    "source": {
                        "repoURL": bare.as_uri(),
                        "path": "charts/gitops",
                        "targetRevision": "main",
                        "helm": {"valuesObject": FIXED},
                    },
                    "destination": {"server": apps.IN_CLUSTER, "namespace": NS},
                    "syncPolicy": {"automated": {"prune": True}, "syncOptions": ["CreateNamespace=true"]},
                },
            },
            field_manager="test",
            force=True,
        )

        def synced_healthy() -> Obj | None:
            status = engine.client.get(apps.API_VERSION, apps.KIND, "gitops", "default").get("status") or {}
            ok = (status.get("sync") or {}).get("status") == "Synced"
            return status if ok and (status.get("health") or {}).get("status") == "Healthy" else None

        status = eventually(synced_healthy, 120, "the engine's own app Synced and Healthy")
        assert status["sourceType"] == "Helm"
        kinds = {r["kind"] for r in status["resources"]}
        assert {"Deployment", "Service", "ServiceAccount", "Role", "ClusterRole", "Secret"} <= kinds
        pods = LocalClient(kube.api).list("v1", "Pod", NS, label_selector="app.kubernetes.io/name=gitops")["items"]
        assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
    finally:
        engine.stop()
