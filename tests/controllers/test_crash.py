"""Crash safety: every write the API acknowledged survives kill -9 of `gitops up`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from controllers.client import RemoteClient


def start_up(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitops.cli", "up", "--data-dir", str(data_dir), "--api-port", "0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        m = re.search(r"Kubernetes API:\s+(\S+)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("gitops up did not print its API URL")


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, _url = start_up(data)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        client = RemoteClient.from_kubeconfig(str(data / "kubeconfig"))
        i = 0
        while not stop.is_set():
            name = f"w{n}-{i}"
            try:
                out = client.create(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "default"},
                        "data": {"i": str(i)},
                    }
                )
            except Exception:
                return  # the server died under us: this write was not acknowledged
            with lock:
                acked[name] = int(out["metadata"]["resourceVersion"])
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 50, "the burst should have written something before the kill"

    proc, _url = start_up(data)
    try:
        client = RemoteClient.from_kubeconfig(str(data / "kubeconfig"))
        live = client.list("v1", "ConfigMap", "default")
        names = {i["metadata"]["name"] for i in live["items"]}
        missing = set(acked) - names
        assert not missing, f"{len(missing)} acknowledged writes lost"
        assert int(live["metadata"]["resourceVersion"]) >= max(acked.values())
        after = client.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after", "namespace": "default"}}
        )
        assert int(after["metadata"]["resourceVersion"]) > max(acked.values())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
