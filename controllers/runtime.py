"""The controller runtime: informers, work queues and reconcile loops.

Every controller of the house (Deployment, scheduler, the GitOps app controller...) has
the same level-triggered shape as controller-runtime: informers keep a cache of the
kinds it reads, change events turn into keys on a de-duplicating, rate-limited work
queue, and workers call `reconcile(key)`, which reads the caches, makes one step toward
the desired state and returns (requeue after N seconds, or done). No sleep-and-poll."""

from __future__ import annotations

import builtins
import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from controllers import errors
from controllers.client import Client

log = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]
# handler(event_type, new_or_last_state, old_state_or_None); event_type ADDED/MODIFIED/DELETED
Handler = Callable[[str, Obj, Obj | None], None]


def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects, as cache.MetaNamespaceKeyFunc."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


def index_by_namespace(obj: Obj) -> list[str]:
    return [obj.get("metadata", {}).get("namespace", "")]


def index_by_owner(obj: Obj) -> list[str]:
    return [ref["uid"] for ref in obj.get("metadata", {}).get("ownerReferences") or [] if ref.get("uid")]


def index_by_label(label: str) -> IndexFunc:
    def fn(obj: Obj) -> list[str]:
        value = (obj.get("metadata", {}).get("labels") or {}).get(label)
        return [value] if value is not None else []

    return fn


class Indexer:
    """A thread-safe object cache with secondary indexes (namespace, owner uid, ...)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._items: dict[str, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {"namespace": index_by_namespace, "owner": index_by_owner}
        self._indexes: dict[str, dict[str, set[str]]] = {"namespace": {}, "owner": {}}

    def add_index(self, name: str, fn: IndexFunc) -> None:
        with self._lock:
            self._index_funcs[name] = fn
            idx: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for v in fn(obj):
                    idx.setdefault(v, set()).add(key)
            self._indexes[name] = idx

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._index_funcs.items():
            idx = self._indexes[name]
            for v in fn(obj):
                keys = idx.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[v]

    def _index(self, key: str, obj: Obj) -> None:
        for name, fn in self._index_funcs.items():
            idx = self._indexes[name]
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)

    def put(self, obj: Obj) -> Obj | None:
        key = object_key(obj)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._unindex(key, old)
            self._items[key] = obj
            self._index(key, obj)
            return old

    def remove(self, key: str) -> Obj | None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            return old

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list_keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            with self._lock:
                return list(self._items.values())
        return self.by_index("namespace", namespace)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        with self._lock:
            return [self._items[k] for k in self._indexes[name].get(value, ()) if k in self._items]

    def __len__(self) -> int:
        return len(self._items)


class Informer:
    """List + watch of one kind into an `Indexer`, resuming watches from the last seen
    resourceVersion and relisting when the server answers 410 Gone.

    Cached objects are shared: handlers and readers must copy before mutating."""

    def __init__(
        self,
        client: Client,
        api_version: str,
        kind: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 500,
    ) -> None:
        self.client = client
        self.api_version, self.kind = api_version, kind
        self.namespace = namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.page_size = page_size
        self.cache = Indexer()
        self._handlers: list[Handler] = []
        # Held while events are delivered, so a handler added meanwhile misses none.
        self._dispatch = threading.RLock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None
        self.last_rv = ""
        self.relists = 0

    def add_handler(self, handler: Handler) -> None:
        with self._dispatch:
            self._handlers.append(handler)
            if self._synced.is_set():  # late handlers see the current state, as client-go does
                for obj in self.cache.list():
                    handler("ADDED", obj, None)

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # -- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.2
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch_once()
                backoff = 0.2
            except errors.Gone:
                need_list = True
                self.relists += 1
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("informer %s/%s: %s; retrying in %.1fs", self.api_version, self.kind, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                need_list = True

    def _list(self) -> None:
        items: list[Obj] = []
        token = ""
        while True:
            page = self.client.list(
                self.api_version,
                self.kind,
                self.namespace,
                self.label_selector,
                self.field_selector,
                limit=self.page_size,
                continue_token=token,
            )
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            rv = (page.get("metadata") or {}).get("resourceVersion") or ""
            if not token:
                break
        with self._dispatch:
            self._replace(items)
            self.last_rv = rv
            self._synced.set()

    def _replace(self, items: list[Obj]) -> None:
        """Swap in a fresh listing, telling handlers what appeared, changed and vanished."""
        fresh = {object_key(o): o for o in items}
        for key in self.cache.list_keys():
            if key not in fresh:
                old = self.cache.remove(key)
                if old is not None:
                    self._notify("DELETED", old, None)
        for obj in items:
            old = self.cache.put(obj)
            if old is None:
                self._notify("ADDED", obj, None)
            elif old.get("metadata", {}).get("resourceVersion") != obj.get("metadata", {}).get("resourceVersion"):
                self._notify("MODIFIED", obj, old)

    def _watch_once(self) -> None:
        w = self.client.watch(
            self.api_version,
            self.kind,
            self.namespace,
            self.last_rv,
            self.label_selector,
            self.field_selector,
            timeout_seconds=300 + random.uniform(0, 60),
            allow_bookmarks=True,
        )
        self._watch = w
        try:
            for ev in w:
                if self._stop.is_set():
                    return
                rv = (ev.object.get("metadata") or {}).get("resourceVersion")
                if ev.type == "BOOKMARK":
                    if rv:
                        self.last_rv = rv
                    continue
                key = object_key(ev.object)
                with self._dispatch:
                    if ev.type == "DELETED":
                        old = self.cache.remove(key)
                        self._notify("DELETED", ev.object, old)
                    else:
                        old = self.cache.put(ev.object)
                        self._notify("ADDED" if old is None else "MODIFIED", ev.object, old)
                if rv:
                    self.last_rv = rv
        finally:
            w.stop()
            self._watch = None

    def _notify(self, etype: str, obj: Obj, old: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(etype, obj, old)
            except Exception:
                log.exception("informer %s handler failed", self.kind)


class WorkQueue:
    """A work queue of keys as client-go's: a key is queued at most once, is never handed
    to two workers at once (a re-add while it is processed runs again after done()),
    failures back off exponentially per key up to a cap, and a key waits for at most
    one delayed re-add, the earliest asked (the run it leads to asks again for later)."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 300.0) -> None:
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []  # a heap; superseded entries stay until due
        self._waiting: dict[str, float] = {}  # key -> when its delayed re-add is due
        self._seq = 0
        self._failures: dict[str, int] = {}
        self.base_delay, self.max_delay = base_delay, max_delay
        self._shutdown = False

    def add(self, key: str) -> None:
        with self._cond:
            if self._shutdown or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay
        with self._cond:
            if self._shutdown:
                return
            pending = self._waiting.get(key)
            if pending is not None and pending <= due:
                return
            self._waiting[key] = due
            self._seq += 1
            heapq.heappush(self._delayed, (due, self._seq, key))
            self._cond.notify()

    def add_rate_limited(self, key: str) -> None:
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2**n), self.max_delay))

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> str | None:
        """The next key to process, or None on shutdown or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_delayed()
                if self._queue:
                    key = self._queue.pop(0)
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                if self._shutdown:
                    return None
                wait = None
                if self._delayed:
                    wait = max(0.0, self._delayed[0][0] - time.monotonic())
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def _promote_delayed(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._waiting.get(key) != due:
                continue  # an earlier re-add of the key superseded this one
            del self._waiting[key]
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._processing:
                    self._queue.append(key)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def depth(self) -> int:
        """Queued plus waiting-to-retry keys (for metrics)."""
        with self._cond:
            return len(self._queue) + len(self._waiting)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()


@dataclass(frozen=True)
class Result:
    """What a reconcile returns: `requeue_after` seconds to look again, or None for done."""

    requeue_after: float | None = None


Reconciler = Callable[[str], "Result | None"]


class Controller:
    """Workers draining one queue into `reconcile(key)`.

    An exception from reconcile requeues the key with back-off; a Result with
    requeue_after re-adds it after that delay; otherwise the key is forgotten until an
    event enqueues it again."""

    def __init__(self, name: str, reconcile: Reconciler, workers: int = 1) -> None:
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.queue = WorkQueue()
        self._threads: list[threading.Thread] = []
        self._informers: list[Informer] = []

    def watch(self, informer: Informer, mapper: Callable[[Obj], Iterable[str]] | None = None) -> None:
        """Enqueue keys for every change in `informer` (default: the object's own key)."""
        key_of = mapper or (lambda o: [object_key(o)])

        def handler(_etype: str, obj: Obj, old: Obj | None) -> None:
            keys = set(key_of(obj))
            if old is not None:
                keys.update(key_of(old))
            for k in keys:
                self.queue.add(k)

        informer.add_handler(handler)
        self._informers.append(informer)

    def start(self) -> Controller:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self.queue.shutdown()
        for t in self._threads:
            t.join(timeout=5)

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                result = self.reconcile(key)
            except errors.Conflict:
                # Someone wrote in between: look again at once with fresh caches.
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: reconcile %s failed", self.name, key)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
                if result is not None and result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.queue.done(key)


class InformerFactory:
    """One shared informer per (apiVersion, kind, namespace), as client-go's
    SharedInformerFactory: every controller that reads pods reads the same cache."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._informers: dict[tuple[str, str, str], Informer] = {}
        self._started = False

    def informer(self, api_version: str, kind: str, namespace: str = "") -> Informer:
        key = (api_version, kind, namespace)
        with self._lock:
            inf = self._informers.get(key)
            if inf is None:
                inf = Informer(self.client, api_version, kind, namespace)
                self._informers[key] = inf
                if self._started:
                    inf.start()
            return inf

    def start(self) -> None:
        with self._lock:
            self._started = True
            for inf in self._informers.values():
                if inf._thread is None:
                    inf.start()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for inf in list(self._informers.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not inf.wait_for_sync(left):
                return False
        return True

    def stop(self) -> None:
        with self._lock:
            informers = list(self._informers.values())
        for inf in informers:
            inf.stop()
