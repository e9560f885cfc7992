"""The README's run command: `gitops up --demo` brings the example app up from git."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import Kubectl
from tests.gitops.conftest import running_up, up_exits


def test_gitops_up_demo_runs_the_example_app(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_up(data, "--demo") as up:
        out = up.out
        assert "Application demo: Synced Healthy" in out, out
        assert "Dashboard:       http://127.0.0.1:" in out, out
        assert out.count(" Running ") == 4, out
        pods = Kubectl(data / "kubeconfig", tmp_path)("get", "pods", "-n", "demo")
        assert pods.count("Running") == 4, pods


def test_a_config_file_sets_up_options_and_names_what_is_wrong(tmp_path: Path) -> None:
    config = tmp_path / "gitops.yaml"
    config.write_text("port: 0\nflux-mode: true\n")
    done = up_exits(tmp_path / "data", "--config", str(config))
    assert done.returncode == 2 and f"{config}: unknown option 'flux-mode'" in done.stderr

    # A mapping value reaches a KEY=VALUE option: the unknown provider is named.
    config.write_text("webhook-provider-secret:\n  gitlab: a\n  gitlub: b\n")
    done = up_exits(tmp_path / "data", "--config", str(config))
    assert done.returncode == 2 and "unknown provider(s) ['gitlub']" in done.stderr

    # The command line wins over the file: its value is the one checked.
    done = up_exits(tmp_path / "data", "--config", str(config), "--webhook-provider-secret", "gitlob=c")
    assert done.returncode == 2 and "['gitlob']" in done.stderr and "gitlub" not in done.stderr


def test_a_port_in_use_stops_what_started_and_exits_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = up_exits(tmp_path / "data", "--api-port", "0", "--port", str(port))
    assert done.returncode == 1, done.stderr
    assert f"the web server cannot listen on 127.0.0.1:{port} (--port)" in done.stderr
    assert "Address already in use" in done.stderr


APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guest
spec:
  project: default
  source: {repoURL: "https://git.example/repo.git", path: guestbook}
  destination: {server: "https://kubernetes.default.svc", namespace: guest}
"""


def test_app_files_go_to_the_namespace_served_and_a_bad_one_is_named(tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text(APP)
    data = tmp_path / "data"
    with running_up(data, "--namespace", "team", "--app", str(apps)) as up:
        assert f"application team/guest applied from {apps}" in up.out, up.out
        listed = Kubectl(data / "kubeconfig", tmp_path)("get", "applications", "-A")
        assert "team" in listed and "guest" in listed, listed

    apps.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n")
    done = up_exits(tmp_path / "data2", "--api-port", "0", "--port", "0", "--app", str(apps))
    assert done.returncode == 1, done.stderr
    assert f"--app {apps}: ConfigMap is not an Application" in done.stderr
    assert "Traceback" not in done.stderr
