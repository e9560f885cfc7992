"""The web server of `gitops up`: dashboard, REST API (/api/v1), /metrics, /healthz and
/readyz on one Flask app, served by the house's WSGI server (controllers/wsgi.py).
Other edges (git-provider webhooks, admission review) come in as blueprints that the
CLI wiring passes to `create_app`."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

from flask import Blueprint, Flask, Response, g
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from gitops import metrics
from gitops.engine import Engine
from gitops.server import api, auth, views
from gitops.server.core import Services

HERE = Path(__file__).parent


def create_app(
    engine: Engine,
    tokens: auth.Tokens,
    blueprints: list[Blueprint] | None = None,
    anonymous_read: bool = False,
    secret_key: bytes | None = None,
) -> Flask:
    """The WSGI app over a running engine. `tokens` are the accepted bearer tokens (and
    login passwords); `anonymous_read` lets anyone view (never act); `secret_key` signs
    session cookies (random per process by default: a restart logs everyone out)."""
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="gitops_session",
        MAX_CONTENT_LENGTH=None,  # the webhook blueprint enforces its own limit
        JSON_SORT_KEYS=False,
    )
    svc = Services(engine, tokens, anonymous_read)
    app.extensions["gitops"] = svc
    state_registry = CollectorRegistry(auto_describe=True)
    state_registry.register(metrics.StateCollector(svc.state.all_apps, engine.controller.controller.queue.depth))

    @app.before_request
    def _identify() -> None:
        g.identity = auth.identify(tokens, anonymous_read)

    @app.context_processor
    def _template_globals() -> dict[str, object]:
        return {"identity": g.get("identity"), "csrf_token": auth.csrf_token, "short_time": _short_time}

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if resp.mimetype == "text/html":
            resp.headers.setdefault("X-Frame-Options", "DENY")
            resp.headers.setdefault(
                "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'"
            )
        return resp

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        if not svc.state.synced():
            return Response("application cache not synced yet\n", status=503, mimetype="text/plain")
        return Response("ok\n", mimetype="text/plain")

    @app.get("/metrics")
    def prometheus() -> Response:
        body = generate_latest(REGISTRY) + generate_latest(state_registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST)

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    for bp in blueprints or []:
        app.register_blueprint(bp)
    return app


def close_app(app: Flask) -> None:
    """Stop what the app started (live streams end, the event recorder stops)."""
    svc: Services = app.extensions["gitops"]
    svc.close()


def _short_time(value: str) -> str:
    """RFC 3339 as `2024-05-01 12:00:03`, or '' for nothing."""
    if not value:
        return ""
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value
