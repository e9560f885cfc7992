"""The object store: revisions, compare-and-swap, the event log, durability."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.store import (
    ADDED,
    DELETED,
    MODIFIED,
    KeyExists,
    MemoryStore,
    RevisionMismatch,
    SQLiteStore,
    TooOld,
)


def cm(name: str, value: str = "1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"v": value},
    }


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryStore:
    return (
        MemoryStore(event_log_size=10)
        if request.param == "memory"
        else SQLiteStore(tmp_path / "state.db", event_log_size=10)
    )


def test_one_global_revision_is_every_objects_resource_version(store: MemoryStore) -> None:
    a = store.create("configmaps", "default", "a", cm("a"))
    b = store.create("secrets", "default", "b", cm("b"))
    assert (a.rv, b.rv) == (1, 2)
    assert a.obj()["metadata"]["resourceVersion"] == "1"
    assert store.revision == 2


def test_writes_are_compare_and_swap(store: MemoryStore) -> None:
    rec = store.create("configmaps", "default", "a", cm("a"))
    store.update("configmaps", "default", "a", cm("a", "2"), rec.rv)
    with pytest.raises(RevisionMismatch):
        store.update("configmaps", "default", "a", cm("a", "3"), rec.rv)
    with pytest.raises(KeyExists):
        store.create("configmaps", "default", "a", cm("a"))
    assert store.get("configmaps", "default", "a").obj()["data"] == {"v": "2"}  # type: ignore[union-attr]


def test_watch_resumes_from_an_old_revision_and_expires_past_the_log(store: MemoryStore) -> None:
    rec = store.create("configmaps", "default", "a", cm("a"))
    store.update("configmaps", "default", "a", cm("a", "2"), rec.rv)
    store.delete("configmaps", "default", "a")
    w = store.watch("configmaps", "", rec.rv - 1)
    assert [e.type for e in w.drain()] == [ADDED, MODIFIED, DELETED]
    w.close()
    for i in range(20):
        store.create("configmaps", "default", f"n{i}", cm("x"))
    with pytest.raises(TooOld):
        store.watch("configmaps", "", 1)


def test_a_slow_watcher_is_dropped_not_waited_for() -> None:
    s = MemoryStore(watch_buffer=5)
    w = s.watch("configmaps", "", 0)
    for i in range(10):
        s.create("configmaps", "default", f"n{i}", cm("x"))
    assert w.overflowed and w.closed
    assert s.count("configmaps") == 10


def test_sqlite_state_and_revision_survive_a_restart(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "state.db")
    s.create("configmaps", "default", "a", cm("a"))
    s.create("configmaps", "default", "b", cm("b"))
    s.delete("configmaps", "default", "b")
    rev = s.revision
    s.close()
    again = SQLiteStore(tmp_path / "state.db")
    assert again.revision == rev  # a deletion's revision is not reused
    assert [r.name for r in again.list("configmaps")[0]] == ["a"]
    assert again.create("configmaps", "default", "c", cm("c")).rv == rev + 1
