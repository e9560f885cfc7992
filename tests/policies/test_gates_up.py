"""`gitops up --policies default`: the bundle is loaded at start and gates kubectl."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

import yaml

from controllers.tls import ensure_serving_certs
from tests.conftest import Kubectl
from tests.gitops.conftest import running_up, up_exits


def test_gitops_up_with_the_default_bundle_gates_the_api(tmp_path: Path) -> None:
    data = tmp_path / "data"
    certs = ensure_serving_certs(tmp_path / "webhook-pki")  # as cert-manager would issue for the Service
    tls = ["--tls-port", "0", "--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    with running_up(data, "--policies", "default", "--nodes", "1", *tls) as up:
        lines = up.lines
        assert up.proc.poll() is None, up.out
        kubectl = Kubectl(data / "kubeconfig", tmp_path)
        names = kubectl("get", "clusterpolicies", "-o", "jsonpath={.items[*].metadata.name}").split()
        assert sorted(names) == ["disallow-latest-tag", "disallow-privileged-containers", "require-requests-limits"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx:latest"}]},
        }
        denied = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(pod), check=False)
        assert denied.returncode != 0 and "disallow-latest-tag: validate-image-tag:" in denied.stderr

        # The same policies answer AdmissionReviews on the web server, for real clusters' webhooks.
        dashboard = next(line.split()[-1] for line in lines if line.startswith("Dashboard:"))
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": "CREATE", "namespace": "default", "object": pod},
        }
        # ... over HTTPS too (API servers call webhooks over HTTPS only), verified with the CA.
        https = next(line.split()[1] for line in lines if line.startswith("HTTPS:"))
        assert https.startswith("https://127.0.0.1:")
        verified = ssl.create_default_context(cafile=str(certs.ca_cert))
        for base, context in ((dashboard, None), (https, verified)):
            req = urllib.request.Request(  # noqa: S310 (loopback)
                base + "api/admission/validate", data=json.dumps(review).encode(), method="POST"
            )
            with urllib.request.urlopen(req, timeout=30, context=context) as resp:  # noqa: S310
                answer = json.loads(resp.read())["response"]
            assert answer["uid"] == "u-1" and answer["allowed"] is False
            assert "disallow-latest-tag: validate-image-tag:" in answer["status"]["message"]


def test_signed_registries_need_a_key_and_the_default_bundle(tmp_path: Path) -> None:
    data = tmp_path / "d"
    no_key = up_exits(data, "--api-port", "0", "--policies", "default", "--signed-registry", "ghcr.io/acme/*")
    assert no_key.returncode == 2 and "--signed-registry needs --signing-key" in no_key.stderr
    (tmp_path / "pols").mkdir()
    key = tmp_path / "cosign.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n")
    own_dir = up_exits(
        data,
        "--api-port",
        "0",
        "--policies",
        str(tmp_path / "pols"),
        "--signed-registry",
        "ghcr.io/acme/*",
        "--signing-key",
        str(key),
    )
    assert own_dir.returncode == 2 and "use it with --policies default" in own_dir.stderr
    half_tls = up_exits(data, "--api-port", "0", "--tls-port", "0")
    assert half_tls.returncode == 2 and "--tls-port, --tls-cert and --tls-key go together" in half_tls.stderr
    missing = up_exits(data, "--api-port", "0", "--policies", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is neither `default` nor a directory" in missing.stderr
