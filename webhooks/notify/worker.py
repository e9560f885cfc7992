"""Deliveries on a background thread with retries and exponential back-off, so that a
slow or failing notification service never holds up a sync.

Jobs carry a key: a newer job with the same key replaces one not yet delivered (a commit
status that moved from pending to success need only send success; the order of jobs with
one key is kept)."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from webhooks.notify.http import DeliveryError

log = logging.getLogger(__name__)


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    key: str = field(compare=False)
    send: Callable[[], None] = field(compare=False)
    attempt: int = field(default=0, compare=False)


class DeliveryWorker:
    def __init__(
        self, attempts: int = 5, base_delay: float = 0.5, max_delay: float = 60.0, max_pending: int = 10_000
    ) -> None:
        self.attempts, self.base_delay, self.max_delay, self.max_pending = attempts, base_delay, max_delay, max_pending
        self.delivered = 0
        self.failed = 0
        self._heap: list[_Job] = []
        self._latest: dict[str, int] = {}  # key -> seq of its newest job (older ones are dropped)
        self._seq = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="notify-worker", daemon=True)
        self._thread.start()

    def submit(self, key: str, send: Callable[[], None]) -> None:
        """Queue `send`; never blocks. Above `max_pending` jobs the new one is dropped."""
        with self._cond:
            if len(self._heap) >= self.max_pending:
                log.warning("notification %s dropped: %d deliveries pending", key, len(self._heap))
                return
            self._seq += 1
            self._latest[key] = self._seq
            heapq.heappush(self._heap, _Job(time.monotonic(), self._seq, key, send))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0].due > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0].due - time.monotonic())
                if self._stopped:
                    return
                job = heapq.heappop(self._heap)
                if self._latest.get(job.key) != job.seq:
                    continue  # superseded by a newer job with the same key
            try:
                job.send()
            except DeliveryError as exc:
                self._failed(job, str(exc), exc.retry)
            except Exception as exc:  # a bug in one notifier must not stop the others
                log.exception("notification %s failed", job.key)
                self._failed(job, str(exc), False)
            else:
                self.delivered += 1
                self._forget(job)

    def _failed(self, job: _Job, message: str, retry: bool) -> None:
        job.attempt += 1
        if not retry or job.attempt >= self.attempts:
            log.warning("notification %s given up after %d attempt(s): %s", job.key, job.attempt, message)
            self.failed += 1
            self._forget(job)
            return
        delay = min(self.base_delay * 2 ** (job.attempt - 1), self.max_delay)
        log.info("notification %s failed (%s); retry in %.1fs", job.key, message, delay)
        with self._cond:
            if self._latest.get(job.key) == job.seq:
                job.due = time.monotonic() + delay
                heapq.heappush(self._heap, job)
                self._cond.notify()

    def _forget(self, job: _Job) -> None:
        with self._cond:
            if self._latest.get(job.key) == job.seq:
                del self._latest[job.key]
