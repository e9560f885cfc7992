"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics, so that
several replicas of the engine can run and only one reconciles.

- A candidate takes the Lease when it is free (no holder, or a holder released it) or
  when the holder stopped renewing: the record must stay unchanged for
  `leaseDurationSeconds` *as this process observed it* (its own monotonic clock, so clock
  skew between machines does not matter; renewTime is informational).
- Every write carries the resourceVersion it read (optimistic concurrency): of two
  candidates racing for a free Lease exactly one wins, the other gets a Conflict.
- The leader renews every `retry_period`; if no renewal succeeds within `renew_deadline`
  it stops leading (before the others may take over, since renew_deadline < lease_duration).
- acquireTime and leaseTransitions change only when the holder changes.
- On a clean stop the leader releases the Lease (empty holder), so a successor need not
  wait out the lease duration.

One elector runs one term, as client-go's `Run`: after losing the Lease it does not stand
again. A process that lost leadership should exit and start over with fresh caches
(kube-controller-manager does the same)."""

from __future__ import annotations

import concurrent.futures
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controllers import errors
from controllers.client import Client
from controllers.events import EventRecorder
from controllers.nodes import micro_time

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
JITTER = 1.2  # client-go's JitterFactor: candidates retry at retry_period * [1, 1.2)


def default_identity() -> str:
    """hostname_uuid, as client-go's examples: the pod name in a cluster, unique anyway."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        """The same checks as client-go's NewLeaderElector: the leader must give up before
        anyone else may take over, and retry often enough to renew in time."""
        if not self.name or not self.namespace:
            raise ValueError("leader election: the lease name and namespace are required")
        if not self.identity:
            raise ValueError("leader election: the identity must not be empty")
        if self.lease_duration < 1:
            raise ValueError(f"leader election: lease duration {self.lease_duration:g}s must be at least 1s")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"leader election: lease duration ({self.lease_duration:g}s) must be greater than "
                f"the renew deadline ({self.renew_deadline:g}s)"
            )
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(
                f"leader election: renew deadline ({self.renew_deadline:g}s) must be greater than "
                f"{JITTER} x retry period ({self.retry_period:g}s)"
            )
        if self.retry_period <= 0:
            raise ValueError("leader election: retry period must be positive")


class LeaderElector:
    """Runs the election in a background thread and calls `on_started_leading` when this
    process becomes the leader and `on_stopped_leading` when it stops (lost, or stop())."""

    def __init__(
        self,
        client: Client,
        config: LeaseConfig,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        on_new_leader: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self._stop = threading.Event()
        self._leading = threading.Event()
        self._thread: threading.Thread | None = None
        self._observed: dict[str, Any] | None = None  # the Lease spec last seen
        self._observed_rv = ""
        self._observed_at = 0.0  # monotonic time the spec last changed, as seen here
        self._reported_leader = ""
        self._events = EventRecorder(client, "gitops", socket.gethostname())
        # Attempts run in a worker so that a hung API call cannot keep us "leading" past
        # the renew deadline.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease")

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def leader(self) -> str:
        """The holder last observed ("" when unknown or free)."""
        return str((self._observed or {}).get("holderIdentity") or "")

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop campaigning; a leader releases the Lease and calls on_stopped_leading."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.renew_deadline + 5)
        self._events.flush(2.0)
        self._events.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wait_leading(self, timeout: float | None = None) -> bool:
        return self._leading.wait(timeout)

    # ------------------------------------------------------------------ the term
    def _run(self) -> None:
        if not self._acquire():
            return
        self._leading.set()
        log.info("%s became the leader (lease %s/%s)", self.config.identity, self.config.namespace, self.config.name)
        try:
            self.on_started_leading()
        except Exception:
            log.exception("leader election: on_started_leading failed")
        self._renew()
        self._leading.clear()
        if self._stop.is_set():
            self._release()
        else:
            log.error("%s lost the lease %s/%s", self.config.identity, self.config.namespace, self.config.name)
        try:
            self.on_stopped_leading()
        except Exception:
            log.exception("leader election: on_stopped_leading failed")

    def _acquire(self) -> bool:
        """Try until the Lease is ours (True) or stop() (False)."""
        while not self._stop.is_set():
            if self._attempt(self.config.renew_deadline):
                return True
            self._stop.wait(self.config.retry_period * random.uniform(1.0, JITTER))  # noqa: S311
        return False

    def _renew(self) -> None:
        """Renew every retry period until stop() or until no renewal succeeded for
        `renew_deadline` seconds (or another holder took the Lease)."""
        last_renewed = time.monotonic()
        while not self._stop.wait(self.config.retry_period):
            left = last_renewed + self.config.renew_deadline - time.monotonic()
            if left > 0 and self._attempt(left):
                last_renewed = time.monotonic()
                continue
            if self.leader and self.leader != self.config.identity:
                return  # someone else holds it now
            if time.monotonic() - last_renewed >= self.config.renew_deadline:
                return

    def _attempt(self, timeout: float) -> bool:
        future = self._pool.submit(self._try_acquire_or_renew)
        try:
            return future.result(timeout=max(timeout, 0.001))
        except concurrent.futures.TimeoutError:
            log.warning("leader election: the API did not answer within %.1fs", timeout)
            return False
        except errors.Conflict:
            return False  # someone wrote first: read again next time
        except errors.APIError as exc:
            log.warning("leader election: %s", exc.message)
            return False
        except Exception as exc:  # network errors: keep campaigning
            log.warning("leader election: %s", exc)
            return False

    def _try_acquire_or_renew(self) -> bool:
        cfg = self.config
        now = micro_time()
        duration = max(1, round(cfg.lease_duration))
        try:
            lease = self.client.get(LEASE_API, "Lease", cfg.name, cfg.namespace)
        except errors.NotFound:
            spec = {
                "holderIdentity": cfg.identity,
                "leaseDurationSeconds": duration,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            try:
                created = self.client.create(
                    {
                        "apiVersion": LEASE_API,
                        "kind": "Lease",
                        "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                        "spec": spec,
                    },
                    field_manager="gitops-leader-election",
                )
            except errors.AlreadyExists:
                return False
            self._observe(created)
            self._became(created)
            return True
        self._observe(lease)
        old = lease.get("spec") or {}
        holder = str(old.get("holderIdentity") or "")
        if holder and holder != cfg.identity and not self._expired(old):
            return False
        spec = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": duration,
            "renewTime": now,
        }
        if holder == cfg.identity:
            spec["acquireTime"] = old.get("acquireTime") or now
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        else:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
        lease["spec"] = spec
        updated = self.client.update(lease, field_manager="gitops-leader-election")  # carries resourceVersion
        self._observe(updated)
        if holder != cfg.identity:
            self._became(updated)
        return True

    def _expired(self, spec: dict[str, Any]) -> bool:
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        return time.monotonic() >= self._observed_at + duration

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        rv = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        if spec != self._observed or rv != self._observed_rv:
            self._observed, self._observed_rv = dict(spec), rv
            self._observed_at = time.monotonic()
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            if self.on_new_leader is not None:
                try:
                    self.on_new_leader(holder)
                except Exception:
                    log.exception("leader election: on_new_leader failed")

    def _became(self, lease: dict[str, Any]) -> None:
        self._events.event(lease, "Normal", "LeaderElection", f"{self.config.identity} became leader")

    def _release(self) -> None:
        """Give the Lease up (empty holder, 1s duration) so a successor takes it at once;
        only if we still hold it."""
        cfg = self.config
        try:
            lease = self.client.get(LEASE_API, "Lease", cfg.name, cfg.namespace)
            old = lease.get("spec") or {}
            if old.get("holderIdentity") != cfg.identity:
                return
            now = micro_time()
            lease["spec"] = {
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": int(old.get("leaseTransitions") or 0),
            }
            self.client.update(lease, field_manager="gitops-leader-election")
            log.info("%s released the lease %s/%s", cfg.identity, cfg.namespace, cfg.name)
        except (errors.APIError, OSError) as exc:
            log.warning("leader election: could not release the lease: %s", exc)
