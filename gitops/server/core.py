"""What both faces of the web server (dashboard and REST API) do with an app: read it
from the informer-backed state, diff it, and request sync, refresh and rollback through
the same functions as the CLI (gitops/actions.py), each request logged and recorded as
an Event on the Application."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from flask import abort, current_app

from controllers import errors
from controllers.events import NORMAL, EventRecorder
from gitops import actions, apps
from gitops.engine import Engine
from gitops.server.auth import Tokens
from gitops.server.state import AppState, anchor
from gitops.source.git import GitError
from gitops.source.render import RenderError

Obj = dict[str, Any]
audit = logging.getLogger("gitops.audit")


@dataclass(frozen=True)
class DiffItem:
    group: str
    kind: str
    namespace: str
    name: str
    status: str
    diff: str

    @property
    def anchor(self) -> str:
        return anchor(self.group, self.kind, self.namespace, self.name)

    def as_json(self) -> Obj:
        return {
            "group": self.group,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "status": self.status,
            "diff": self.diff,
        }


class Services:
    def __init__(self, engine: Engine, tokens: Tokens, anonymous_read: bool) -> None:
        self.engine = engine
        self.client = engine.client
        self.tokens = tokens
        self.anonymous_read = anonymous_read
        self.state = AppState(engine.informers, engine.controller.settings.namespace)
        self.recorder = EventRecorder(engine.client, "gitops-server")
        self.closed = threading.Event()

    def close(self) -> None:
        """End live streams and the event recorder (the informers belong to the engine)."""
        self.closed.set()
        self.recorder.stop()

    def app(self, namespace: str, name: str) -> Obj:
        found = self.state.get(namespace, name)
        if found is None:
            abort(404, f'application "{namespace}/{name}" not found')
        return found

    def fresh(self, app: Obj) -> Obj:
        """The app as the API server has it now: actions check operation state on it,
        not on a cache that may lag by a watch event."""
        meta = app["metadata"]
        try:
            return self.client.get(app["apiVersion"], apps.KIND, meta["name"], meta["namespace"])
        except errors.NotFound:
            abort(404, f'application "{meta["namespace"]}/{meta["name"]}" not found')

    # ------------------------------------------------------------------ actions
    def sync(self, app: Obj, who: str, sync: Obj) -> str:
        app = self.fresh(app)
        actions.request_sync(self.client, app, sync, who)
        options = ", ".join(k for k in ("prune", "dryRun") if sync.get(k)) or "no options"
        return self._done(app, who, "SyncRequested", f"sync requested by {who} ({options})")

    def refresh(self, app: Obj, who: str, hard: bool) -> str:
        actions.request_refresh(self.client, app, hard)
        kind = "hard refresh" if hard else "refresh"
        return self._done(app, who, "RefreshRequested", f"{kind} requested by {who}")

    def rollback(self, app: Obj, who: str, history_id: int, force: bool) -> str:
        app = self.fresh(app)
        req = actions.rollback_request(app, history_id, force)
        actions.request_sync(self.client, app, req, who)
        message = f"rollback to history {history_id} ({req['revision'][:7]}) requested by {who}"
        return self._done(app, who, "RollbackRequested", message)

    def _done(self, app: Obj, who: str, reason: str, message: str) -> str:
        meta = app["metadata"]
        audit.info("%s %s/%s by %s: %s", reason, meta["namespace"], meta["name"], who, message)
        self.recorder.event(app, NORMAL, reason, message)
        return message

    # ------------------------------------------------------------------ diff
    def diff(self, app: Obj) -> tuple[str, list[DiffItem]]:
        """Per-resource diff at the revision the app was last compared at (Secrets masked);
        raises ActionError(502) when git or the render fails."""
        revision = str(((app.get("status") or {}).get("sync") or {}).get("revision") or "")
        try:
            found = actions.diff_app(self.client, self.engine.repos, self.engine.renderer, app, revision or None)
        except (GitError, RenderError, apps.SpecError) as exc:
            raise actions.ActionError(f"cannot compute the diff: {exc}", 502) from None
        items = [
            DiffItem(
                d.key.group,
                d.key.kind,
                d.key.namespace,
                d.key.name,
                d.status,
                d.diff.diff if d.diff is not None else "(not in git: would be pruned)",
            )
            for d in found
        ]
        return revision, items


def services() -> Services:
    svc: Services = current_app.extensions["gitops"]
    return svc
