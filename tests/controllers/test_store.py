"""The object store: revisions, compare-and-swap, the event log, durability."""

from __future__ import annotations

import signal
import subprocess
import sys
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


def write_then_die(db: Path, writes: str) -> None:
    """Run `writes` on a SQLiteStore `s` (batches of 100) in a process that is then
    killed with SIGKILL: nothing is closed or flushed."""
    script = "\n".join(
        [
            "import os, signal",
            "from controllers.store import SQLiteStore",
            f"s = SQLiteStore({str(db)!r}, batch=100)",
            writes,
            "os.kill(os.getpid(), signal.SIGKILL)",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2], check=False)
    assert proc.returncode == -signal.SIGKILL


def test_sqlite_journaled_writes_survive_a_killed_process(tmp_path: Path) -> None:
    """Writes reach SQLite in batches: the ones still only in the journal when the process
    dies are applied on the next start, deletions and updates included."""
    write_then_die(
        tmp_path / "state.db",
        """
for i in range(250):
    s.create("configmaps", "default", f"c{i}", {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}})
s.delete("configmaps", "default", "c7")
s.update("configmaps", "default", "c8", {"metadata": {"name": "c8"}, "data": {"i": "new"}}, None)
""",
    )
    s = SQLiteStore(tmp_path / "state.db")
    names = {r.name for r in s.list("configmaps")[0]}
    assert names == {f"c{i}" for i in range(250)} - {"c7"}
    c8 = s.get("configmaps", "default", "c8")
    assert c8 is not None and c8.obj()["data"] == {"i": "new"}
    assert s.revision == 252
    assert s.create("configmaps", "default", "next", cm("next")).rv == 253
    s.close()
    again = SQLiteStore(tmp_path / "state.db")  # applied to SQLite and the journal emptied on close
    assert again.revision == 253 and again.count("configmaps") == 250
    assert (tmp_path / "state.db.journal").stat().st_size == 0
    again.close()


def test_a_torn_journal_tail_is_ignored(tmp_path: Path) -> None:
    """A record cut short was never acknowledged: the start applies what precedes it."""
    write_then_die(tmp_path / "state.db", 's.create("configmaps", "default", "a", {"metadata": {"name": "a"}})')
    write_then_die(tmp_path / "state.db", 's.create("configmaps", "default", "b", {"metadata": {"name": "b"}})')
    journal = tmp_path / "state.db.journal"
    journal.write_bytes(journal.read_bytes()[:-5])  # b's record, not completely written
    again = SQLiteStore(tmp_path / "state.db")
    assert [r.name for r in again.list("configmaps")[0]] == ["a"]
    assert again.revision == 1
    again.close()
