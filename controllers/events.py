"""Recording Kubernetes Events (Scheduled, Pulling, Started, ScalingReplicaSet...) the way
client-go's recorder does: asynchronously, so a controller never waits on them, and
aggregated, so a repeated event bumps `count` instead of piling up objects."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from typing import Any

from controllers import errors
from controllers.client import Client
from controllers.clock import now_rfc3339

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"


class EventRecorder:
    """Emits core/v1 Events about objects on behalf of one component (e.g. `kubelet`,
    `default-scheduler`, `deployment-controller`)."""

    def __init__(self, client: Client, component: str, host: str = "", buffer: int = 10_000) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: queue.Queue[tuple[dict[str, Any], str, str, str] | None] = queue.Queue(buffer)
        self._seen: dict[tuple[str, str, str, str], str] = {}  # (uid, type, reason, message) -> event name
        self._thread = threading.Thread(target=self._run, name=f"events-{component}", daemon=True)
        self._thread.start()

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event about `obj`; never blocks (dropped when the buffer is full)."""
        try:
            self._queue.put_nowait((obj, type_, reason, message))
        except queue.Full:
            log.debug("event dropped: %s %s", reason, message)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued events are written (for tests and orderly shutdown)."""
        done = threading.Event()
        self._queue.put(({"__flush__": done}, "", "", ""))
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            obj, type_, reason, message = item
            if "__flush__" in obj:
                obj["__flush__"].set()
                continue
            try:
                self._write(obj, type_, reason, message)
            except errors.APIError as exc:
                log.debug("event %s for %s not written: %s", reason, obj.get("metadata", {}).get("name"), exc)
            except Exception:
                log.exception("event %s not written", reason)

    def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        uid = meta.get("uid", "")
        namespace = meta.get("namespace") or "default"
        key = (uid, type_, reason, message)
        now = now_rfc3339()
        existing = self._seen.get(key)
        if existing:
            try:
                live = self.client.get("v1", "Event", existing, namespace)
                self.client.patch(
                    "v1",
                    "Event",
                    existing,
                    {"count": int(live.get("count") or 1) + 1, "lastTimestamp": now},
                    namespace,
                )
                return
            except errors.NotFound:
                pass
        name = f"{meta.get('name', 'unknown')}.{int(dt.datetime.now(dt.UTC).timestamp() * 1e9):x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "uid": uid,
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        self.client.create(event, field_manager=self.component)
        if len(self._seen) > 50_000:
            self._seen.clear()
        self._seen[key] = name
