"""The scheduling queue, as kube-scheduler's: three places a pending pod can wait.

- active: pods to try now, highest priority first, then the longest waiting;
- backoff: pods that failed recently and wait 1 s, 2 s, 4 s ... (at most 10 s) before
  their next attempt, so one bad pod does not spin the scheduler;
- unschedulable: pods no node fits. They are not retried until something changes that
  could help them (a node is added or changes, an assigned pod goes away...), which the
  scheduler reports with `move(plugins)`: only the pods rejected by one of those plugins
  move, as kube-scheduler's queueing hints do. As a safety net a pod is retried anyway
  after `max_unschedulable_seconds`.

An event that arrives while a pod is being scheduled sends it to backoff rather than to
unschedulable if that attempt fails, so the change is not missed."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Collection
from typing import Any

Obj = dict[str, Any]


class QueuedPod:
    """A pending pod and its scheduling history."""

    __slots__ = ("key", "pod", "priority", "timestamp", "attempts", "failed_at", "rejected_by", "cycle", "seq")

    def __init__(self, key: str, pod: Obj, now: float) -> None:
        self.key = key
        self.pod = pod
        self.priority = int((pod.get("spec") or {}).get("priority") or 0)
        self.timestamp = now  # when it (re)entered the active queue: the FIFO order among equals
        self.attempts = 0
        self.failed_at = 0.0
        self.rejected_by: frozenset[str] = frozenset()
        self.cycle = 0  # the scheduling cycle of its last attempt
        self.seq = 0  # identifies its current heap entry (stale entries are skipped)


class SchedulingQueue:
    def __init__(
        self,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_unschedulable_seconds: float = 60.0,
    ) -> None:
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.max_unschedulable_seconds = max_unschedulable_seconds
        self._cond = threading.Condition()
        self._active: dict[str, QueuedPod] = {}
        self._active_heap: list[tuple[int, float, int, str]] = []
        self._backoff: dict[str, QueuedPod] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []
        self._unschedulable: dict[str, QueuedPod] = {}  # insertion order = time of entry
        self._in_flight: dict[str, QueuedPod] = {}
        self._seq = 0
        self._cycle = 0
        # Moves requested while pods were in flight: (cycle, plugins; None for any plugin).
        self._moves: list[tuple[int, frozenset[str] | None]] = []
        self._closed = False

    # -- informer side -------------------------------------------------------------------
    def add(self, key: str, pod: Obj) -> None:
        """A pending pod appeared or changed. A change to its spec or labels may make an
        unschedulable pod fit now, so that moves it on; a status-only change does not."""
        with self._cond:
            if self._closed:
                return
            flying = self._in_flight.get(key)
            if flying is not None:
                if _changed(flying.pod, pod):
                    self._moves.append((self._cycle, None))
                flying.pod = pod
                return
            qp = self._active.get(key) or self._backoff.get(key)
            if qp is not None:
                qp.pod = pod
                return
            qp = self._unschedulable.get(key)
            if qp is None:
                self._push_active(QueuedPod(key, pod, time.monotonic()))
            else:
                changed = _changed(qp.pod, pod)
                qp.pod = pod
                if changed:
                    del self._unschedulable[key]
                    self._requeue(qp, time.monotonic())

    def delete(self, key: str) -> None:
        """The pod is gone, was bound, or is no longer pending."""
        with self._cond:
            self._active.pop(key, None)
            self._backoff.pop(key, None)
            self._unschedulable.pop(key, None)

    def move(self, plugins: Collection[str]) -> None:
        """Something changed in the cluster that may let pods rejected by `plugins` fit."""
        with self._cond:
            if self._in_flight:
                self._moves.append((self._cycle, frozenset(plugins)))
            if not self._unschedulable:
                return
            now = time.monotonic()
            for key, qp in list(self._unschedulable.items()):
                if not qp.rejected_by or not qp.rejected_by.isdisjoint(plugins):
                    del self._unschedulable[key]
                    self._requeue(qp, now)

    # -- scheduler side ------------------------------------------------------------------
    def pop(self) -> QueuedPod | None:
        """The next pod to schedule, waiting for one (it is then "in flight" until `done`
        or a requeue); None once closed."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                self._flush(now)
                qp = self._pop_active()
                if qp is not None:
                    self._cycle += 1
                    qp.cycle = self._cycle
                    qp.attempts += 1
                    self._in_flight[qp.key] = qp
                    return qp
                wake = self._next_wake()
                self._cond.wait(None if wake is None else max(0.0, wake - now))
            return None

    def done(self, key: str) -> None:
        """The attempt ended with the pod placed (or dropped)."""
        with self._cond:
            self._land(key)

    def requeue_unschedulable(self, qp: QueuedPod, pod: Obj, rejected_by: Collection[str]) -> None:
        """No node fits: wait for a change that could help (or, if one came during the
        attempt, back off and retry)."""
        with self._cond:
            rejected = frozenset(rejected_by)
            moved = any(
                cycle >= qp.cycle and (plugins is None or not plugins.isdisjoint(rejected))
                for cycle, plugins in self._moves
            )
            self._land(qp.key)
            if self._closed:
                return
            qp.pod, qp.rejected_by, qp.failed_at = pod, rejected, time.monotonic()
            if moved:
                self._push_backoff(qp)
            else:
                self._unschedulable[qp.key] = qp

    def requeue_backoff(self, qp: QueuedPod, pod: Obj) -> None:
        """The attempt failed for another reason (an error, a lost binding): retry later."""
        with self._cond:
            self._land(qp.key)
            if self._closed:
                return
            qp.pod, qp.rejected_by, qp.failed_at = pod, frozenset(), time.monotonic()
            self._push_backoff(qp)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- internals -----------------------------------------------------------------------
    def _land(self, key: str) -> None:
        self._in_flight.pop(key, None)
        if not self._in_flight:
            self._moves.clear()

    def backoff_seconds(self, attempts: int) -> float:
        return min(self.initial_backoff * 2 ** max(0, attempts - 1), self.max_backoff)

    def _requeue(self, qp: QueuedPod, now: float) -> None:
        if qp.attempts and qp.failed_at + self.backoff_seconds(qp.attempts) > now:
            self._push_backoff(qp)
        else:
            qp.timestamp = now
            self._push_active(qp)

    def _push_active(self, qp: QueuedPod) -> None:
        self._seq += 1
        qp.seq = self._seq
        self._active[qp.key] = qp
        heapq.heappush(self._active_heap, (-qp.priority, qp.timestamp, qp.seq, qp.key))
        self._cond.notify()

    def _pop_active(self) -> QueuedPod | None:
        while self._active_heap:
            _, _, seq, key = heapq.heappop(self._active_heap)
            qp = self._active.get(key)
            if qp is not None and qp.seq == seq:
                del self._active[key]
                return qp
        return None

    def _push_backoff(self, qp: QueuedPod) -> None:
        self._seq += 1
        qp.seq = self._seq
        self._backoff[qp.key] = qp
        expiry = qp.failed_at + self.backoff_seconds(qp.attempts)
        heapq.heappush(self._backoff_heap, (expiry, qp.seq, qp.key))
        self._cond.notify()

    def _flush(self, now: float) -> None:
        """Move pods whose back-off is over, and pods unschedulable for too long, to active."""
        while self._backoff_heap and self._backoff_heap[0][0] <= now:
            _, seq, key = heapq.heappop(self._backoff_heap)
            qp = self._backoff.get(key)
            if qp is not None and qp.seq == seq:
                del self._backoff[key]
                qp.timestamp = now
                self._push_active(qp)
        while self._unschedulable:
            key, qp = next(iter(self._unschedulable.items()))
            if qp.failed_at + self.max_unschedulable_seconds > now:
                break
            del self._unschedulable[key]
            self._requeue(qp, now)

    def _next_wake(self) -> float | None:
        times = []
        if self._backoff_heap:
            times.append(self._backoff_heap[0][0])
        if self._unschedulable:
            times.append(next(iter(self._unschedulable.values())).failed_at + self.max_unschedulable_seconds)
        return min(times) if times else None


def _changed(old: Obj, new: Obj) -> bool:
    """Whether an update could change where the pod fits (not just its status)."""
    if old.get("spec") != new.get("spec"):
        return True
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return old_meta.get("labels") != new_meta.get("labels") or old_meta.get("annotations") != new_meta.get(
        "annotations"
    )
