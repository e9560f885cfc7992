"""The object store: current objects as JSON bytes, one global revision, compare-and-swap
writes, and a bounded event log that serves watches from an older revision.

Objects are kept serialized: a LIST or a watch event over HTTP is bytes concatenation, and
every reader that parses gets its own copy, so no caller can corrupt the store by
mutating what it was given. `SQLiteStore` adds durability: each acknowledged write is
in its journal before the caller hears back, so it survives kill -9, and reaches SQLite
in batches.
"""

from __future__ import annotations

import builtins
import collections
import os
import sqlite3
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
_RECORD_HEADER = struct.Struct("<II")  # a journal record: body length and CRC-32, then the body


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    pass


class KeyMissing(StoreError):
    pass


class RevisionMismatch(StoreError):
    """The object changed since the revision the writer read (optimistic concurrency)."""


class TooOld(StoreError):
    """A watch asked for a revision the event log no longer holds (HTTP 410 Gone)."""


@dataclass(frozen=True, slots=True)
class Record:
    namespace: str
    name: str
    rv: int
    raw: bytes

    def obj(self) -> dict[str, Any]:
        return orjson.loads(self.raw)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    resource: str
    namespace: str
    name: str
    rv: int
    raw: bytes
    prev_raw: bytes | None  # the object before a MODIFIED or DELETED, for selector transitions


class Watcher:
    """One watch: a bounded buffer filled by writers, drained by one reader.

    A writer never blocks on a slow reader: when the buffer is full the watcher is closed
    with `overflowed` set, and the reader resumes from its last revision (410 if the log
    moved past it), exactly like an apiserver dropping a slow watch."""

    def __init__(self, store: MemoryStore, resource: str, namespace: str, maxsize: int) -> None:
        self._store = store
        self.resource = resource
        self.namespace = namespace
        self._maxsize = maxsize
        self._buf: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self.closed = False
        self.overflowed = False

    def _offer(self, ev: Event) -> None:
        with self._cond:
            if self.closed:
                return
            if len(self._buf) >= self._maxsize:
                self.closed = True
                self.overflowed = True
                self._buf.clear()
            else:
                self._buf.append(ev)
            self._cond.notify()

    def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None on timeout or once closed and drained."""
        with self._cond:
            if not self._buf and not self.closed:
                self._cond.wait(timeout)
            if self._buf:
                return self._buf.popleft()
            return None

    def drain(self) -> list[Event]:
        """Everything buffered now, without waiting."""
        with self._cond:
            out = list(self._buf)
            self._buf.clear()
            return out

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._store._unsubscribe(self)


WriteHook = Callable[[Event], None]


class MemoryStore:
    """The store without durability (tests, benchmarks); `SQLiteStore` persists it."""

    def __init__(self, event_log_size: int = 100_000, watch_buffer: int = 10_000) -> None:
        self._lock = threading.RLock()
        self._rev = 0
        self._data: dict[str, dict[tuple[str, str], Record]] = {}
        self._log: collections.deque[Event] = collections.deque(maxlen=event_log_size)
        self._watchers: dict[str, set[Watcher]] = {}
        self._watch_buffer = watch_buffer

    # -- reads ---------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._rev

    def get(self, resource: str, namespace: str, name: str) -> Record | None:
        bucket = self._data.get(resource)
        return bucket.get((namespace, name)) if bucket else None

    def list(self, resource: str, namespace: str | None = None) -> tuple[list[Record], int]:
        """Records sorted by (namespace, name), and the revision they are consistent at."""
        with self._lock:
            bucket = self._data.get(resource)
            rev = self._rev
            if not bucket:
                return [], rev
            if namespace is None:
                items = list(bucket.items())
            else:
                items = [(k, r) for k, r in bucket.items() if k[0] == namespace]
        items.sort(key=lambda kv: kv[0])
        return [r for _, r in items], rev

    def count(self, resource: str) -> int:
        return len(self._data.get(resource, ()))

    def resources(self) -> builtins.list[str]:
        return [r for r, b in self._data.items() if b]

    # -- writes --------------------------------------------------------------------------
    def create(self, resource: str, namespace: str, name: str, obj: dict[str, Any]) -> Record:
        with self._lock:
            bucket = self._data.setdefault(resource, {})
            if (namespace, name) in bucket:
                raise KeyExists(name)
            return self._write(ADDED, resource, namespace, name, obj, None)

    def update(self, resource: str, namespace: str, name: str, obj: dict[str, Any], expected_rv: int | None) -> Record:
        """Replace the object if it is still at `expected_rv` (None: unconditionally)."""
        with self._lock:
            current = self.get(resource, namespace, name)
            if current is None:
                raise KeyMissing(name)
            if expected_rv is not None and current.rv != expected_rv:
                raise RevisionMismatch(name)
            return self._write(MODIFIED, resource, namespace, name, obj, current)

    def delete(self, resource: str, namespace: str, name: str, expected_rv: int | None = None) -> Record:
        with self._lock:
            current = self.get(resource, namespace, name)
            if current is None:
                raise KeyMissing(name)
            if expected_rv is not None and current.rv != expected_rv:
                raise RevisionMismatch(name)
            obj = orjson.loads(current.raw)
            return self._write(DELETED, resource, namespace, name, obj, current)

    def _write(
        self, kind: str, resource: str, namespace: str, name: str, obj: dict[str, Any], prev: Record | None
    ) -> Record:
        rev = self._rev + 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        raw = orjson.dumps(obj)
        self._persist(kind, resource, namespace, name, rev, raw)
        self._rev = rev
        rec = Record(namespace, name, rev, raw)
        bucket = self._data.setdefault(resource, {})
        if kind == DELETED:
            del bucket[(namespace, name)]
        else:
            bucket[(namespace, name)] = rec
        ev = Event(kind, resource, namespace, name, rev, raw, prev.raw if prev else None)
        self._log.append(ev)
        for w in tuple(self._watchers.get(resource, ())):
            if not w.namespace or w.namespace == namespace:
                w._offer(ev)
        return rec

    def _persist(self, kind: str, resource: str, namespace: str, name: str, rev: int, raw: bytes) -> None:
        """Durability hook: raise to refuse the write (nothing in memory has changed yet)."""

    # -- watches -------------------------------------------------------------------------
    def watch(self, resource: str, namespace: str, since_rv: int) -> Watcher:
        """Events for `resource` (in `namespace`, or all when empty) after `since_rv`.

        Raises TooOld when the log no longer reaches back to `since_rv`."""
        with self._lock:
            if since_rv > self._rev:
                since_rv = self._rev
            oldest = self._log[0].rv if self._log else self._rev + 1
            if since_rv < oldest - 1 and since_rv < self._rev:
                raise TooOld(f"too old resource version: {since_rv} ({oldest - 1})")
            w = Watcher(self, resource, namespace, self._watch_buffer)
            for ev in self._log:
                if ev.rv > since_rv and ev.resource == resource and (not namespace or ev.namespace == namespace):
                    w._offer(ev)
            self._watchers.setdefault(resource, set()).add(w)
            return w

    def _unsubscribe(self, w: Watcher) -> None:
        with self._lock:
            self._watchers.get(w.resource, set()).discard(w)

    def watcher_count(self) -> int:
        return sum(len(s) for s in self._watchers.values())

    def close_watchers(self) -> None:
        """End every open watch (their readers see the stream end and return)."""
        for ws in list(self._watchers.values()):
            for w in list(ws):
                w.close()

    def close(self) -> None:
        self.close_watchers()


class SQLiteStore(MemoryStore):
    """MemoryStore whose every write is durable before it is visible: appended to a journal
    file, then applied to SQLite (WAL) in batches.

    The whole state is loaded into memory at start; SQLite is the durable copy, read only
    on restart. An acknowledged write is in the journal: one write() to the file, which the
    OS keeps when the process dies (kill -9), at a fraction of the cost of an SQLite
    commit per write. Every `batch` writes (and on close) the journal is applied to SQLite
    in one transaction and emptied; a restart first applies what the journal still holds.
    Like SQLite's synchronous=NORMAL, nothing is fsynced: an OS crash or power loss could
    lose the newest writes, a process crash loses none."""

    def __init__(self, path: str | Path, batch: int = 1000, **kw: Any) -> None:
        super().__init__(**kw)
        self.path = str(path)
        self._batch = batch
        self._pending: list[tuple[str, str, str, str, int, bytes]] = []
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # One process owns a data dir: exclusive locking skips the per-transaction shared
        # lock work and makes a second `gitops up` on the same dir fail instead of racing.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (resource TEXT NOT NULL, namespace TEXT NOT NULL, "
            "name TEXT NOT NULL, rv INTEGER NOT NULL, data BLOB NOT NULL, "
            "PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        self._journal_path = self.path + ".journal"
        self._journal = os.open(self._journal_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._journal_size = 0
        self._replay()
        self._rev = self._db_revision()
        for resource, namespace, name, rv, data in self._db.execute(
            "SELECT resource, namespace, name, rv, data FROM objects"
        ):
            self._data.setdefault(resource, {})[(namespace, name)] = Record(namespace, name, rv, bytes(data))

    def _db_revision(self) -> int:
        row = self._db.execute(
            "SELECT max(coalesce((SELECT v FROM meta WHERE k='revision'), 0), "
            "coalesce((SELECT max(rv) FROM objects), 0))"
        ).fetchone()
        return int(row[0])

    def _persist(self, kind: str, resource: str, namespace: str, name: str, rev: int, raw: bytes) -> None:
        # Called under the store lock, in revision order. Applying a full batch first means
        # an SQLite failure refuses this write before anything of it was journaled.
        if len(self._pending) >= self._batch:
            self._apply_pending()
        body = orjson.dumps([kind, resource, namespace, name, rev]) + b"\0" + raw
        record = _RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self._journal, view) :]
        except OSError:
            os.ftruncate(self._journal, self._journal_size)  # no torn record in front of later ones
            raise
        self._journal_size += len(record)
        self._pending.append((kind, resource, namespace, name, rev, raw))

    def _apply_pending(self) -> None:
        """Apply the journaled writes to SQLite in one transaction, then empty the journal."""
        if self._pending:
            self._apply(self._pending)
            self._pending.clear()
        os.ftruncate(self._journal, 0)
        self._journal_size = 0

    def _apply(self, writes: list[tuple[str, str, str, str, int, bytes]]) -> None:
        latest: dict[tuple[str, str, str], tuple[str, int, bytes]] = {}
        for kind, resource, namespace, name, rev, raw in writes:
            latest[(resource, namespace, name)] = (kind, rev, raw)
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?)",
                [(*key, rev, raw) for key, (kind, rev, raw) in latest.items() if kind != DELETED],
            )
            db.executemany(
                "DELETE FROM objects WHERE resource=? AND namespace=? AND name=?",
                [key for key, (kind, _, _) in latest.items() if kind == DELETED],
            )
            # A deletion leaves no row behind: the revision is recorded for the next start.
            db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (writes[-1][4],))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _replay(self) -> None:
        """Apply what the journal holds beyond SQLite's revision: the writes acknowledged
        since the last batch before the process died. A torn tail was never acknowledged."""
        with open(self._journal_path, "rb") as f:
            data = f.read()
        known = self._db_revision()
        writes = []
        offset = 0
        while offset + _RECORD_HEADER.size <= len(data):
            size, crc = _RECORD_HEADER.unpack_from(data, offset)
            body = data[offset + _RECORD_HEADER.size : offset + _RECORD_HEADER.size + size]
            if len(body) < size or zlib.crc32(body) != crc:
                break
            head, _, raw = body.partition(b"\0")
            kind, resource, namespace, name, rev = orjson.loads(head)
            if rev > known:
                writes.append((kind, resource, namespace, name, int(rev), raw))
            offset += _RECORD_HEADER.size + size
        if writes:
            self._apply(writes)
        os.ftruncate(self._journal, 0)

    def close(self) -> None:
        super().close()
        with self._lock:
            try:
                self._apply_pending()
            finally:
                os.close(self._journal)
                self._db.close()


def open_store(path: str | Path | None) -> MemoryStore:
    """SQLite at `path`, or memory when None."""
    return SQLiteStore(path) if path else MemoryStore()
