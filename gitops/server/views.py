"""The dashboard: server-rendered pages (app list, app page, diff), the login session,
the actions as CSRF-protected form posts, the live feed (Server-Sent Events; the pages
fall back to polling when a proxy holds the stream back) and the status badges."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import orjson
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import escape
from werkzeug.wrappers.response import Response as BaseResponse

from gitops import actions
from gitops.server import auth
from gitops.server.auth import ADMIN, READONLY, require
from gitops.server.core import Services, services
from gitops.server.state import SORT_FIELDS, Query

bp = Blueprint("dashboard", __name__)
STREAM_SECONDS = 300.0  # a stream ends after this; EventSource reconnects by itself
PING_SECONDS = 10.0
SYNC_STATUSES = ("Synced", "OutOfSync", "Unknown")
HEALTH_STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")


@bp.get("/")
@require(READONLY, html=True)
def index() -> str:
    svc = services()
    version = svc.state.changes.version  # before reading: the stream replays what follows
    page = svc.state.query(Query.parse(request.args))
    return render_template(
        "list.html",
        page=page,
        version=version,
        args=request.args,
        sort_fields=SORT_FIELDS,
        sync_statuses=SYNC_STATUSES,
        health_statuses=HEALTH_STATUSES,
    )


@bp.get("/apps/<namespace>/<name>")
@require(READONLY, html=True)
def app_page(namespace: str, name: str) -> str:
    svc = services()
    version = svc.state.changes.version  # before reading: the stream replays what follows
    app = svc.app(namespace, name)
    return render_template("app.html", **{**_app_context(svc, app), "version": version})


@bp.get("/apps/<namespace>/<name>/live")
@require(READONLY)
def app_live(namespace: str, name: str) -> str:
    """The parts of the app page that change, for live updates."""
    svc = services()
    return render_template("_live.html", **_app_context(svc, svc.app(namespace, name)))


def _app_context(svc: Services, app: dict) -> dict:
    st = app.get("status") or {}
    conditions = st.get("conditions") or []
    return {
        "app": app,
        "row": svc.state.row(app),
        "tree": svc.state.tree(app),
        "history": list(reversed(st.get("history") or [])),
        "events": svc.state.events(app),
        "conditions": [c for c in conditions if c.get("type") not in ("PolicyViolation", "PolicyWarning")],
        "violations": [c for c in conditions if c.get("type") in ("PolicyViolation", "PolicyWarning")],
        "op": st.get("operationState") or {},
    }


@bp.get("/apps/<namespace>/<name>/diff")
@require(READONLY, html=True)
def diff_page(namespace: str, name: str) -> str | tuple[str, int]:
    svc = services()
    app = svc.app(namespace, name)
    try:
        revision, items = svc.diff(app)
        error = ""
    except actions.ActionError as exc:
        revision, items, error = "", [], str(exc)
    return render_template("diff.html", app=app, row=svc.state.row(app), revision=revision, items=items, error=error)


# ---------------------------------------------------------------------- actions
def _back(namespace: str, name: str) -> BaseResponse:
    return redirect(url_for("dashboard.app_page", namespace=namespace, name=name))


@bp.post("/apps/<namespace>/<name>/sync")
@require(ADMIN)
def sync(namespace: str, name: str) -> BaseResponse:
    svc = services()
    req = actions.sync_request(prune=bool(request.form.get("prune")), dry_run=bool(request.form.get("dry_run")))
    return _act(namespace, name, lambda: svc.sync(svc.app(namespace, name), g.identity.user, req))


@bp.post("/apps/<namespace>/<name>/refresh")
@require(ADMIN)
def refresh(namespace: str, name: str) -> BaseResponse:
    svc = services()
    hard = request.form.get("hard") == "true"
    return _act(namespace, name, lambda: svc.refresh(svc.app(namespace, name), g.identity.user, hard))


@bp.post("/apps/<namespace>/<name>/rollback")
@require(ADMIN)
def rollback(namespace: str, name: str) -> BaseResponse:
    svc = services()
    try:
        history_id = int(request.form.get("id", ""))
    except ValueError:
        abort(400, "id must be a history entry id")
    force = bool(request.form.get("force"))
    return _act(namespace, name, lambda: svc.rollback(svc.app(namespace, name), g.identity.user, history_id, force))


def _act(namespace: str, name: str, action: object) -> BaseResponse:
    try:
        message = action()  # type: ignore[operator]
        flash(str(message), "ok")
    except actions.ActionError as exc:
        flash(str(exc), "error")
    return _back(namespace, name)


# ---------------------------------------------------------------------- login
@bp.get("/login")
def login_page() -> str:
    return render_template("login.html", next=_safe_next(request.args.get("next", "")))


@bp.post("/login")
def login() -> BaseResponse | tuple[str, int]:
    if not auth.csrf_ok():
        abort(403, "missing or wrong CSRF token")
    role = services().tokens.role(request.form.get("token", ""))
    nxt = _safe_next(request.form.get("next", ""))
    if role is None:
        flash("wrong token", "error")
        return render_template("login.html", next=nxt), 401
    auth.login(role, role)
    return redirect(nxt or url_for("dashboard.index"))


@bp.post("/logout")
def logout() -> BaseResponse:
    if not auth.csrf_ok():
        abort(403, "missing or wrong CSRF token")
    auth.logout()
    return redirect(url_for("dashboard.login_page"))


def _safe_next(target: str) -> str:
    """Only paths of this site (no open redirect to another host)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return ""
    return target


# ---------------------------------------------------------------------- live feed
@bp.get("/ui/stream")
@require(READONLY)
def stream() -> Response:
    """Server-Sent Events: `row` (an app's list row) for the list, `app` for one app's
    page (?app=namespace/name), `ping` every few seconds. Padding first and
    X-Accel-Buffering off so proxies pass events at once; the pages poll when no event
    arrives anyway."""
    svc = services()
    key = request.args.get("app", "")
    try:  # the change version the page was rendered at: what changed since is sent at once
        start = int(request.args.get("since", ""))
    except ValueError:
        start = -1

    def events() -> Iterator[bytes]:
        yield b":" + b" " * 2048 + b"\n\nretry: 3000\nevent: hello\ndata: {}\n\n"
        now = svc.state.changes.version
        since = start if 0 <= start <= now else now
        end = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < end and not svc.closed.is_set():
            version = svc.state.changes.wait(since, PING_SECONDS)
            if version <= since:
                yield b"event: ping\ndata: {}\n\n"
                continue
            time.sleep(0.25 if key else 0.05)  # a burst of changes makes one event
            version = svc.state.changes.version
            if key:
                if svc.state.changes.changed(key, since):
                    yield b"event: app\ndata: " + orjson.dumps({"key": key}) + b"\n\n"
            else:
                for k in svc.state.changes.apps_since(since):
                    ns, _, name = k.partition("/")
                    app = svc.state.get(ns, name)
                    data = {"key": k, **svc.state.row(app).as_json()} if app is not None else {"key": k, "gone": True}
                    yield b"event: row\ndata: " + orjson.dumps(data) + b"\n\n"
            since = version

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(events(), mimetype="text/event-stream", headers=headers)


# ---------------------------------------------------------------------- badge
_COLORS = {
    "Synced": "#18be52",
    "OutOfSync": "#f4c030",
    "Healthy": "#18be52",
    "Progressing": "#0dadea",
    "Degraded": "#e96d76",
    "Missing": "#f4c030",
    "Suspended": "#766f94",
}


@bp.get("/badge/<namespace>/<name>.svg")
def badge(namespace: str, name: str) -> Response:
    """A status badge for READMEs (public, like the status it shows; no names inside)."""
    app = services().state.get(namespace, name)
    st = (app or {}).get("status") or {}
    sync = str((st.get("sync") or {}).get("status") or "Unknown") if app else "Not Found"
    health = str((st.get("health") or {}).get("status") or "Unknown") if app else ""
    parts = [("sync", sync, _COLORS.get(sync, "#9f9f9f"))]
    if health:
        parts.append(("health", health, _COLORS.get(health, "#9f9f9f")))
    svg = _badge_svg(parts)
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-cache, max-age=0"})


def _badge_svg(parts: list[tuple[str, str, str]]) -> str:
    x, rects, texts = 0, [], []
    for label, value, color in parts:
        lw, vw = 7 * len(label) + 10, 7 * len(value) + 10
        rects.append(f'<rect x="{x}" width="{lw}" height="20" fill="#555"/>')
        rects.append(f'<rect x="{x + lw}" width="{vw}" height="20" fill="{color}"/>')
        texts.append(f'<text x="{x + lw / 2}" y="14">{escape(label)}</text>')
        texts.append(f'<text x="{x + lw + vw / 2}" y="14">{escape(value)}</text>')
        x += lw + vw
    title = escape(", ".join(f"{label}: {value}" for label, value, _ in parts))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{x}" height="20" role="img" aria-label="{title}">'
        f"<title>{title}</title>{''.join(rects)}"
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f"{''.join(texts)}</g></svg>"
    )
