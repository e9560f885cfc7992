"""The README's run command: `gitops up --demo` brings the example app up from git."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Kubectl


def test_gitops_up_demo_runs_the_example_app(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitops.cli", "up", "--demo", "--data-dir", str(data), "--api-port", "0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        out = "".join(lines)
        assert "Application demo: Synced Healthy" in out, out
        assert "Dashboard:       http://127.0.0.1:" in out, out
        assert out.count(" Running ") == 4, out
        pods = Kubectl(data / "kubeconfig", tmp_path)("get", "pods", "-n", "demo")
        assert pods.count("Running") == 4, pods
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
