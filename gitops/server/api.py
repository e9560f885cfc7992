"""The REST API under /api/v1 (documented in openapi.yaml): apps list, get, resource
tree, diff, history, and the sync, refresh and rollback actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from gitops import actions
from gitops.server.auth import ADMIN, READONLY, require
from gitops.server.core import services
from gitops.server.state import Query

OPENAPI = Path(__file__).with_name("openapi.yaml")
bp = Blueprint("api", __name__, url_prefix="/api/v1")
Obj = dict[str, Any]


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    resp = jsonify({"error": exc.description or exc.name})
    if exc.code == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="gitops"'
    return resp, exc.code or 500


@bp.errorhandler(actions.ActionError)
def _action_error(exc: actions.ActionError) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), exc.code


@bp.get("/openapi.yaml")
def openapi() -> Response:
    return Response(OPENAPI.read_bytes(), mimetype="application/yaml")


@bp.get("/applications")
@require(READONLY)
def list_apps() -> Response:
    page = services().state.query(Query.parse(request.args))
    return jsonify(
        {
            "items": [r.as_json() for r in page.rows],
            "total": page.total,
            "page": page.query.page,
            "perPage": page.query.per_page,
        }
    )


@bp.get("/applications/<namespace>/<name>")
@require(READONLY)
def get_app(namespace: str, name: str) -> Response:
    svc = services()
    app = svc.app(namespace, name)
    meta = {k: v for k, v in app["metadata"].items() if k != "managedFields"}
    return jsonify(
        {
            "summary": svc.state.row(app).as_json(),
            "application": {**app, "metadata": meta},
        }
    )


@bp.get("/applications/<namespace>/<name>/resource-tree")
@require(READONLY)
def resource_tree(namespace: str, name: str) -> Response:
    svc = services()
    return jsonify({"nodes": [n.as_json() for n in svc.state.tree(svc.app(namespace, name))]})


@bp.get("/applications/<namespace>/<name>/diff")
@require(READONLY)
def diff(namespace: str, name: str) -> Response:
    svc = services()
    revision, items = svc.diff(svc.app(namespace, name))
    return jsonify({"revision": revision, "items": [i.as_json() for i in items]})


@bp.get("/applications/<namespace>/<name>/history")
@require(READONLY)
def history(namespace: str, name: str) -> Response:
    app = services().app(namespace, name)
    return jsonify({"items": list((app.get("status") or {}).get("history") or [])})


def _body() -> Obj:
    if not request.data:
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise actions.ActionError("the body must be a JSON object", 400)
    return body


def _field(body: Obj, name: str, kind: type, default: Any) -> Any:
    value = body.get(name, default)
    if value is not None and not isinstance(value, kind):
        raise actions.ActionError(f"{name} must be a {kind.__name__}", 400)
    return value


@bp.post("/applications/<namespace>/<name>/sync")
@require(ADMIN)
def sync(namespace: str, name: str) -> tuple[Response, int]:
    svc = services()
    body = _body()
    resources = _field(body, "resources", list, None)
    for r in resources or []:
        if not isinstance(r, dict) or not r.get("kind") or not r.get("name"):
            raise actions.ActionError("each of resources needs kind and name (group, namespace optional)", 400)
    req = actions.sync_request(
        prune=bool(_field(body, "prune", bool, False)),
        dry_run=bool(_field(body, "dryRun", bool, False)),
        revision=_field(body, "revision", str, None),
        resources=resources,
    )
    message = svc.sync(svc.app(namespace, name), g.identity.user, req)
    return jsonify({"message": message}), 202


@bp.post("/applications/<namespace>/<name>/refresh")
@require(ADMIN)
def refresh(namespace: str, name: str) -> tuple[Response, int]:
    svc = services()
    hard = bool(_field(_body(), "hard", bool, False)) or request.args.get("hard") == "true"
    message = svc.refresh(svc.app(namespace, name), g.identity.user, hard)
    return jsonify({"message": message}), 202


@bp.post("/applications/<namespace>/<name>/rollback")
@require(ADMIN)
def rollback(namespace: str, name: str) -> tuple[Response, int]:
    svc = services()
    body = _body()
    history_id = _field(body, "id", int, None)
    if history_id is None or isinstance(history_id, bool):
        raise actions.ActionError("id (a history entry id) is required", 400)
    force = bool(_field(body, "force", bool, False))
    message = svc.rollback(svc.app(namespace, name), g.identity.user, history_id, force)
    return jsonify({"message": message}), 202
