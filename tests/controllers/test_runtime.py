"""The controller runtime: informer caches, the work queue and reconcile loops, over the
real in-process API and over HTTP."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from controllers.client import Client, RemoteClient
from controllers.cluster import EmbeddedCluster
from controllers.runtime import Controller, Informer, Result, WorkQueue, index_by_label
from tests.conftest import eventually


def cm(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
    }


@pytest.fixture(params=["local", "remote"])
def client(request: pytest.FixtureRequest, cluster: EmbeddedCluster, kubeconfig: Path) -> Client:
    return cluster.client if request.param == "local" else RemoteClient.from_kubeconfig(str(kubeconfig))


def test_informer_lists_then_follows_changes(client: Client, cluster: EmbeddedCluster) -> None:
    for i in range(3):
        cluster.client.create(cm(f"pre{i}", team="a"))
    inf = Informer(client, "v1", "ConfigMap", page_size=2)
    inf.cache.add_index("team", index_by_label("team"))
    events: list[tuple[str, str]] = []
    inf.add_handler(lambda t, o, _old: events.append((t, o["metadata"]["name"])))
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        assert {o["metadata"]["name"] for o in inf.cache.list("default")} >= {"pre0", "pre1", "pre2"}
        cluster.client.create(cm("new", team="b"))
        cluster.client.delete("v1", "ConfigMap", "pre0", "default")
        eventually(lambda: ("DELETED", "pre0") in events and ("ADDED", "new") in events)
        assert [o["metadata"]["name"] for o in inf.cache.by_index("team", "b")] == ["new"]
        assert inf.cache.get("default/pre0") is None
    finally:
        inf.stop()


def test_a_slow_informer_is_dropped_and_relists(cluster: EmbeddedCluster) -> None:
    cluster.store._watch_buffer = 2
    inf = Informer(cluster.client, "v1", "ConfigMap")
    gate = threading.Event()
    inf.add_handler(lambda _t, o, _old: gate.wait(5) if o["metadata"]["name"] == "slow" else None)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        cluster.client.create(cm("slow"))  # the handler blocks: the informer stops draining
        for i in range(6):
            cluster.client.create(cm(f"x{i}"))
        gate.set()
        eventually(lambda: inf.relists >= 1 and inf.cache.get("default/x5") is not None)
        assert {f"default/x{i}" for i in range(6)} <= set(inf.cache.list_keys())
        assert cluster.store.count("configmaps") == 7  # writers were never blocked
    finally:
        inf.stop()


def test_workqueue_dedupes_and_never_hands_a_key_to_two_workers() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    key = q.get(timeout=1)
    assert key == "a"
    q.add("a")  # re-added while processing: queued again only after done()
    assert q.get(timeout=1) == "b"
    assert q.get(timeout=0.05) is None
    q.done("a")
    assert q.get(timeout=1) == "a"


def test_workqueue_backoff_grows_and_caps() -> None:
    q = WorkQueue(base_delay=0.01, max_delay=0.04)
    delays = []
    for _ in range(5):
        start = time.monotonic()
        q.add_rate_limited("k")
        assert q.get(timeout=2) == "k"
        q.done("k")
        delays.append(time.monotonic() - start)
    assert delays[0] < delays[2]
    assert max(delays) < 0.2
    assert q.failures("k") == 5
    q.forget("k")
    assert q.failures("k") == 0


def test_workqueue_keeps_one_delayed_re_add_per_key_the_earliest() -> None:
    q = WorkQueue()
    for _ in range(1000):  # every event of a busy object asking to look again later
        q.add_after("k", 0.3)
    assert q.depth() == 1
    q.add_after("k", 0.05)  # an earlier one wins
    q.add_after("k", 5.0)  # a later one waits for the run the earlier one leads to
    start = time.monotonic()
    assert q.get(timeout=2) == "k"
    assert time.monotonic() - start < 0.25
    q.done("k")
    assert q.depth() == 0
    assert q.get(timeout=0.6) is None  # the superseded 0.3 s re-add does not run again


def test_controller_reconciles_on_events_retries_failures_and_requeues(cluster: EmbeddedCluster) -> None:
    inf = Informer(cluster.client, "v1", "ConfigMap")
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def reconcile(key: str) -> Result | None:
        with lock:
            calls[key] = calls.get(key, 0) + 1
            n = calls[key]
        if key.endswith("flaky") and n < 3:
            raise RuntimeError("transient")
        if key.endswith("timed") and n < 2:
            return Result(requeue_after=0.05)
        return None

    ctrl = Controller("test", reconcile, workers=2)
    ctrl.watch(inf)
    inf.start()
    ctrl.start()
    try:
        for name in ("plain", "flaky", "timed"):
            cluster.client.create(cm(name))
        eventually(lambda: calls.get("default/flaky") == 3 and calls.get("default/timed") == 2)
        time.sleep(0.2)
        assert calls["default/plain"] == 1  # nothing changed: not reconciled again
    finally:
        ctrl.stop()
        inf.stop()
