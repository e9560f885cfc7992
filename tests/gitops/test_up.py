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


def up_exits(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops.cli", "up", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_config_file_sets_up_options_and_names_what_is_wrong(tmp_path: Path) -> None:
    config = tmp_path / "gitops.yaml"
    config.write_text("port: 0\nflux-mode: true\n")
    done = up_exits(tmp_path, "--config", str(config))
    assert done.returncode == 2 and f"{config}: unknown option 'flux-mode'" in done.stderr

    # A mapping value reaches a KEY=VALUE option: the unknown provider is named.
    config.write_text("webhook-provider-secret:\n  gitlab: a\n  gitlub: b\n")
    done = up_exits(tmp_path, "--config", str(config))
    assert done.returncode == 2 and "unknown provider(s) ['gitlub']" in done.stderr

    # The command line wins over the file: its value is the one checked.
    done = up_exits(tmp_path, "--config", str(config), "--webhook-provider-secret", "gitlob=c")
    assert done.returncode == 2 and "['gitlob']" in done.stderr and "gitlub" not in done.stderr
