"""`gitops up --policies default`: the bundle is loaded at start and gates kubectl."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.conftest import Kubectl


def test_gitops_up_with_the_default_bundle_gates_the_api(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "gitops.cli", "up", "--policies", "default", "--nodes", "1"]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(data), "--api-port", "0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line or line.startswith("Press Ctrl-C"):
                break
            lines.append(line)
        assert proc.poll() is None, "".join(lines)
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
        req = urllib.request.Request(  # noqa: S310 (loopback)
            dashboard + "api/admission/validate", data=json.dumps(review).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            answer = json.loads(resp.read())["response"]
        assert answer["uid"] == "u-1" and answer["allowed"] is False
        assert "disallow-latest-tag: validate-image-tag:" in answer["status"]["message"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_signed_registries_need_a_key_and_the_default_bundle(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "gitops.cli", "up", "--data-dir", str(tmp_path / "d"), "--api-port", "0"]
    no_key = subprocess.run(
        [*base, "--policies", "default", "--signed-registry", "ghcr.io/acme/*"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_key.returncode == 2 and "--signed-registry needs --signing-key" in no_key.stderr
    (tmp_path / "pols").mkdir()
    key = tmp_path / "cosign.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n")
    own_dir = subprocess.run(
        [*base, "--policies", str(tmp_path / "pols"), "--signed-registry", "ghcr.io/acme/*", "--signing-key", str(key)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert own_dir.returncode == 2 and "use it with --policies default" in own_dir.stderr
    missing = subprocess.run([*base, "--policies", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "is neither `default` nor a directory" in missing.stderr
