"""Who is asking, and may they: bearer tokens for the API, a login session for the
dashboard, two roles (read-only and admin), CSRF tokens for actions made with a session.

A bearer token is sent deliberately by its holder, so it needs no CSRF token; a session
cookie is sent by the browser on any request, so every state-changing request that
relies on it must also carry the session's CSRF token (form field or X-CSRF-Token)."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import abort, g, redirect, request, session, url_for

ADMIN, READONLY = "admin", "readonly"
_RANK = {READONLY: 1, ADMIN: 2}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Tokens:
    """The accepted bearer tokens: one admin token, any number of read-only ones."""

    admin: str
    readonly: tuple[str, ...] = ()

    def role(self, token: str) -> str | None:
        """The role of a token; every candidate is compared (in constant time) so the
        answer's timing says nothing about which one matched."""
        role = None
        for candidate, r in [(self.admin, ADMIN), *((t, READONLY) for t in self.readonly)]:
            if candidate and hmac.compare_digest(candidate.encode(), token.encode()) and role is None:
                role = r
        return role


@dataclass(frozen=True)
class Identity:
    user: str
    role: str | None
    via_session: bool


def identify(tokens: Tokens, anonymous_read: bool) -> Identity:
    """The caller of the current request (stored on flask.g)."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        role = tokens.role(header[7:].strip())
        return Identity(role or "", role, False)
    if session.get("role") in _RANK:
        return Identity(str(session.get("user", "")), str(session["role"]), True)
    return Identity("anonymous", READONLY if anonymous_read else None, False)


def csrf_token() -> str:
    """The session's CSRF token, made on first use (also before login: the login form has one)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_ok() -> bool:
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), sent.encode())


def login(role: str, user: str) -> None:
    """A fresh session (no fixation): new CSRF token too."""
    session.clear()
    session["role"], session["user"] = role, user
    csrf_token()


def logout() -> None:
    session.clear()


def require(role: str, html: bool = False) -> Callable[[F], F]:
    """Allow the view to callers with at least `role`: 401 without credentials (HTML
    pages redirect to the login page instead), 403 with too small a role or a session
    request that changes state without the CSRF token."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            who: Identity = g.identity
            if who.role is None:
                if html and request.method == "GET":
                    return redirect(url_for("dashboard.login_page", next=request.full_path))
                abort(401)
            if _RANK[who.role] < _RANK[role]:
                abort(403)
            if who.via_session and request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_ok():
                abort(403, "missing or wrong CSRF token")
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
