"""The Kubernetes REST facade: the HTTP API that kubectl and the official client speak,
as a plain WSGI application over `APIServer`.

Plain WSGI rather than a web framework because this is the hot path (every GET, LIST and
watch line) and the routing is the fixed Kubernetes URL grammar. Served by cheroot, a
threaded production server that flushes every chunk, so watch events reach the client
the moment they happen."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from controllers import discovery, errors, openapi, tables
from controllers.admission import UserInfo
from controllers.apiserver import (
    PATCH_APPLY,
    PATCH_TYPES,
    APIServer,
    APIWatch,
    DeleteOptions,
    WriteOptions,
)
from controllers.kinds import ResourceType

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
JSON = "application/json"
_BOOKMARK_EVERY = 30.0  # seconds between bookmarks on an idle watch that asked for them
_DEFAULT_WATCH_TIMEOUT = 1800


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    user: UserInfo


@dataclass
class Route:
    rt: ResourceType
    namespace: str
    name: str
    subresource: str


# the request headers the API reads (`Request.headers` keys), with their WSGI names
_HEADERS = (
    ("accept", "HTTP_ACCEPT"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("content-type", "CONTENT_TYPE"),
    ("user-agent", "HTTP_USER_AGENT"),
)


class KubeAPI:
    """The WSGI application. `token` is the bearer token every request must carry
    (compared in constant time); None disables authentication."""

    def __init__(self, server: APIServer, token: str | None) -> None:
        self.server = server
        self.token = token

    # ------------------------------------------------------------------ WSGI entry
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            req = self._request(environ)
            return self._dispatch(req, start_response)
        except errors.APIError as exc:
            return _respond(start_response, exc.code, exc.status())
        except Exception as exc:  # the server must answer, whatever broke
            log.exception("internal error serving %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return _respond(start_response, 500, errors.InternalError(f"internal error: {exc}").status())

    def _request(self, environ: dict[str, Any]) -> Request:
        path = environ.get("PATH_INFO", "/")
        query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        headers = {name: environ[key] for name, key in _HEADERS if environ.get(key)}
        user = self._authenticate(path, headers)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        return Request(environ.get("REQUEST_METHOD", "GET"), path, query, headers, body, user)

    def _authenticate(self, path: str, headers: dict[str, str]) -> UserInfo:
        if path in ("/healthz", "/readyz", "/livez", "/version"):
            return UserInfo("system:anonymous", ("system:unauthenticated",))
        if self.token is None:
            return UserInfo()
        auth = headers.get("authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), self.token.encode()):
            return UserInfo()
        raise errors.Unauthorized("Unauthorized")

    # ------------------------------------------------------------------ routing
    def _dispatch(self, req: Request, start_response: StartResponse) -> Iterable[bytes]:
        path = req.path.rstrip("/") or "/"
        if path in ("/healthz", "/readyz", "/livez"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        if path == "/version":
            return _respond(start_response, 200, discovery.version_info())
        if path.startswith("/openapi"):
            return self._openapi(req, path, start_response)
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        if parts[0] == "api":
            if len(parts) == 1:
                return self._discovery(req, start_response, "api")
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis":
            if len(parts) == 1:
                return self._discovery(req, start_response, "apis")
            if len(parts) == 2:
                doc = discovery.api_group(self.server.registry, parts[1])
                if doc is None:
                    raise errors.NotFound("the server could not find the requested resource")
                return _respond(start_response, 200, doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.NotFound("the server could not find the requested resource")
        if not rest:
            doc = discovery.api_resource_list(self.server.registry, group, version)
            if doc is None:
                raise errors.NotFound("the server could not find the requested resource")
            return _respond(start_response, 200, doc)
        route = self._route(group, version, rest)
        return self._serve(req, route, start_response)

    def _route(self, group: str, version: str, rest: list[str]) -> Route:
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.NotFound("the server could not find the requested resource")
        rt = self.server.resource(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if namespace and not rt.namespaced:
            raise errors.NotFound("the server could not find the requested resource")
        if sub and sub not in rt.subresources and not (rt.kind == "Namespace" and sub == "finalize"):
            raise errors.NotFound(f"the server could not find the requested resource ({rt.plural}/{sub})")
        return Route(rt, namespace, name, sub)

    def _discovery(self, req: Request, start_response: StartResponse, root: str) -> Iterable[bytes]:
        accept = req.headers.get("accept", "")
        if discovery.wants_aggregated(accept):
            body, content_type = discovery.aggregated_discovery(self.server.registry, legacy_core=root == "api")
            return _respond(start_response, 200, body, content_type=content_type)
        if root == "api":
            return _respond(start_response, 200, discovery.api_versions())
        return _respond(start_response, 200, discovery.api_group_list(self.server.registry))

    def _openapi(self, req: Request, path: str, start_response: StartResponse) -> Iterable[bytes]:
        registry = self.server.registry
        if path == "/openapi/v2":
            answer = openapi.openapi_v2_response(registry, req.headers.get("accept", ""))
            if answer is None:
                return _respond(
                    start_response, 406, errors.APIError("only the protobuf form of /openapi/v2 is served").status()
                )
            return _respond_raw(start_response, 200, answer[0], answer[1])
        if path == "/openapi/v3":
            return _respond(start_response, 200, openapi.openapi_v3_index(registry))
        if path.startswith("/openapi/v3/"):
            doc = openapi.openapi_v3_group_version_bytes(registry, path[len("/openapi/v3/") :])
            if doc is None:
                raise errors.NotFound("the server could not find the requested resource")
            return _respond_raw(start_response, 200, doc, cache=True)
        raise errors.NotFound("the server could not find the requested resource")

    # ------------------------------------------------------------------ verbs
    def _serve(self, req: Request, route: Route, start_response: StartResponse) -> Iterable[bytes]:
        q = req.query
        server, rt = self.server, route.rt
        method = req.method
        if method == "GET":
            if route.name and route.subresource == "scale":
                return _respond(start_response, 200, server.get_scale(rt, route.namespace, route.name))
            if route.name and not _truthy(q.get("watch")):
                raw = server.get_raw(rt, route.namespace, route.name)
                if route.subresource and route.subresource != "status":
                    raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
                if tables.wants_table(req.headers.get("accept", "")):
                    return self._table(req, start_response, route, [orjson.loads(raw)], None)
                return _respond_raw(start_response, 200, raw)
            if _truthy(q.get("watch")):
                return self._watch(req, route, start_response)
            return self._list(req, route, start_response)
        opts = self._write_options(req)
        if method == "POST":
            if route.subresource == "binding" or (route.name and route.rt.kind == "Pod" and route.subresource):
                server.bind(route.namespace, route.name, _decode(req), opts)
                return _respond(
                    start_response,
                    201,
                    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                    warnings=opts.warnings,
                )
            if route.name:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            obj = _decode(req)
            created = server.create(rt, route.namespace, obj, opts)
            return _respond(start_response, 201, created, warnings=opts.warnings)
        if method == "PUT":
            if not route.name:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            if route.subresource == "scale":
                body = server.update_scale(rt, route.namespace, route.name, _decode(req), opts)
                return _respond(start_response, 200, body, warnings=opts.warnings)
            if route.subresource == "finalize":
                return _respond(start_response, 200, self._finalize_namespace(route, _decode(req), opts))
            updated = server.update(rt, route.namespace, route.name, _decode(req), opts, route.subresource)
            return _respond(start_response, 200, updated, warnings=opts.warnings)
        if method == "PATCH":
            if not route.name:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            ctype = req.headers.get("content-type", "").split(";")[0].strip()
            if ctype not in PATCH_TYPES:
                raise errors.UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(PATCH_TYPES)}"
                )
            body = _decode(req, yaml_ok=ctype == PATCH_APPLY)
            if route.subresource == "scale":
                scale = server.get_scale(rt, route.namespace, route.name)
                merged = server._patched(rt, scale, ctype, body) if ctype != PATCH_APPLY else body
                result = server.update_scale(rt, route.namespace, route.name, merged, opts)
            else:
                result = server.patch(rt, route.namespace, route.name, ctype, body, opts, route.subresource)
            return _respond(start_response, 200, result, warnings=opts.warnings)
        if method == "DELETE":
            dopts = self._delete_options(req)
            if not route.name:
                return self._delete_collection(req, route, dopts, start_response)
            result = server.delete(rt, route.namespace, route.name, dopts)
            pending = bool(result.get("metadata", {}).get("deletionTimestamp")) and not dopts.dry_run
            return _respond(start_response, 202 if pending else 200, result)
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")

    def _finalize_namespace(self, route: Route, body: dict[str, Any], opts: WriteOptions) -> dict[str, Any]:
        """namespaces/finalize: the namespace controller clears spec.finalizers here."""
        current = self.server.get(route.rt, "", route.name)
        current["spec"] = {**current.get("spec", {}), "finalizers": (body.get("spec") or {}).get("finalizers") or []}
        return self.server.update(route.rt, "", route.name, current, opts)

    def _write_options(self, req: Request) -> WriteOptions:
        q = req.query
        dry = q.get("dryRun", "")
        if dry and dry != "All":
            raise errors.BadRequest(f'Invalid value: "{dry}": supported values: "All"')
        manager = q.get("fieldManager") or _manager_from_agent(req.headers.get("user-agent", ""))
        validation = q.get("fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise errors.BadRequest(f"fieldValidation must be one of Strict, Warn, Ignore, got {validation!r}")
        return WriteOptions(
            dry_run=bool(dry),
            field_manager=manager,
            force=_truthy(q.get("force")),
            field_validation=validation,
            user=req.user,
        )

    def _delete_options(self, req: Request) -> DeleteOptions:
        q = req.query
        body: dict[str, Any] = {}
        if req.body:
            body = _decode(req)
        pre = body.get("preconditions") or {}
        dry = q.get("dryRun") or ",".join(body.get("dryRun") or [])
        grace = q.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        policy = q.get("propagationPolicy") or body.get("propagationPolicy")
        if policy is None and body.get("orphanDependents") is not None:
            policy = "Orphan" if body["orphanDependents"] else "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.BadRequest(f"propagationPolicy: Unsupported value: {policy!r}")
        return DeleteOptions(
            dry_run=bool(dry),
            propagation_policy=policy,
            grace_period_seconds=int(grace) if grace not in (None, "") else None,
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            user=req.user,
        )

    def _delete_collection(
        self, req: Request, route: Route, dopts: DeleteOptions, start_response: StartResponse
    ) -> Iterable[bytes]:
        listing = self.server.list(
            route.rt, route.namespace, req.query.get("labelSelector", ""), req.query.get("fieldSelector", "")
        )
        deleted = []
        for obj in listing.objects():
            meta = obj["metadata"]
            try:
                deleted.append(self.server.delete(route.rt, meta.get("namespace", ""), meta["name"], dopts))
            except errors.NotFound:
                continue
        body = {
            "kind": route.rt.list_kind,
            "apiVersion": route.rt.api_version,
            "metadata": {"resourceVersion": str(self.server.store.revision)},
            "items": deleted,
        }
        return _respond(start_response, 200, body)

    # ------------------------------------------------------------------ list
    def _list(self, req: Request, route: Route, start_response: StartResponse) -> Iterable[bytes]:
        q = req.query
        limit = int(q.get("limit") or 0)
        result = self.server.list(
            route.rt,
            route.namespace,
            q.get("labelSelector", ""),
            q.get("fieldSelector", ""),
            limit,
            q.get("continue", ""),
        )
        if tables.wants_table(req.headers.get("accept", "")):
            return self._table(req, start_response, route, result.objects(), result)
        meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            meta["continue"] = result.continue_token
            meta["remainingItemCount"] = result.remaining
        head = orjson.dumps({"kind": route.rt.list_kind, "apiVersion": route.rt.api_version, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(result.items) + b"]}"
        return _respond_raw(start_response, 200, body)

    def _table(
        self,
        req: Request,
        start_response: StartResponse,
        route: Route,
        objects: list[dict[str, Any]],
        result: Any,
    ) -> Iterable[bytes]:
        include = req.query.get("includeObject") or "Metadata"
        table = tables.table(route.rt, objects, dt.datetime.now(dt.UTC), include)
        meta: dict[str, Any] = {"resourceVersion": str(self.server.store.revision)}
        if result is not None:
            meta["resourceVersion"] = str(result.resource_version)
            if result.continue_token:
                meta["continue"] = result.continue_token
                meta["remainingItemCount"] = result.remaining
        table["metadata"] = meta
        return _respond(start_response, 200, table)

    # ------------------------------------------------------------------ watch
    def _watch(self, req: Request, route: Route, start_response: StartResponse) -> Iterable[bytes]:
        q = req.query
        field_selector = q.get("fieldSelector", "")
        if route.name:
            name_sel = f"metadata.name={route.name}"
            field_selector = f"{field_selector},{name_sel}" if field_selector else name_sel
        rv = q.get("resourceVersion", "")
        # sendInitialEvents=true replays the state even from a given resourceVersion.
        if _truthy(q.get("sendInitialEvents")):
            rv = ""
        watch = self.server.watch(route.rt, route.namespace, rv, q.get("labelSelector", ""), field_selector)
        timeout = float(q.get("timeoutSeconds") or _DEFAULT_WATCH_TIMEOUT)
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        initial_bookmark = _truthy(q.get("sendInitialEvents")) and bookmarks
        as_table = tables.wants_table(req.headers.get("accept", ""))
        write = start_response(
            "200 OK", [("Content-Type", JSON), ("Cache-Control", "no-cache, private"), ("X-Accel-Buffering", "no")]
        )
        # Send the headers now: clients wait for them before they read any event, and the
        # server would otherwise hold them back until the first event.
        write(b"")
        include = req.query.get("includeObject") or "Metadata"
        return _WatchStream(self, route, watch, timeout, bookmarks, initial_bookmark, include if as_table else "")


class _WatchStream:
    """The body of a watch response: one JSON event per line, written as it happens.

    An iterable with close() so that the server stops the underlying watch when the
    client goes away or the timeout ends."""

    def __init__(
        self,
        api: KubeAPI,
        route: Route,
        watch: APIWatch,
        timeout: float,
        bookmarks: bool,
        initial_bookmark: bool,
        table_include: str,
    ) -> None:
        self.api, self.route, self.watch = api, route, watch
        self.deadline = time.monotonic() + timeout
        self.bookmarks = bookmarks
        self.initial_bookmark = initial_bookmark
        self.table_include = table_include  # "" for plain objects, else a Table per event
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        rt = self.route.rt
        last_bookmark = time.monotonic()
        initial_done = not self.initial_bookmark
        try:
            while True:
                now = time.monotonic()
                if now >= self.deadline:
                    return
                wait = min(self.deadline - now, 1.0)
                item = self.watch.next(timeout=wait)
                if item is None:
                    if self.watch.overflowed:
                        yield _event_line(
                            "ERROR",
                            orjson.dumps(
                                errors.Gone(
                                    "the watch fell too far behind; resume from the last resourceVersion"
                                ).status()
                            ),
                        )
                        return
                    if self.watch.closed:
                        return
                    if not initial_done:
                        initial_done = True
                        yield self._bookmark(initial=True)
                        last_bookmark = time.monotonic()
                    elif self.bookmarks and time.monotonic() - last_bookmark >= _BOOKMARK_EVERY:
                        last_bookmark = time.monotonic()
                        yield self._bookmark()
                    continue
                etype, raw = item
                if self.table_include:
                    table = tables.table(rt, [orjson.loads(raw)], dt.datetime.now(dt.UTC), self.table_include)
                    raw = orjson.dumps(table)
                yield _event_line(etype, raw)
        finally:
            self.watch.stop()

    def _bookmark(self, initial: bool = False) -> bytes:
        rt = self.route.rt
        meta: dict[str, Any] = {"resourceVersion": str(max(self.watch.last_rv, 0))}
        if initial:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _event_line("BOOKMARK", orjson.dumps({"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}))

    def close(self) -> None:
        self.watch.stop()


def _event_line(etype: str, raw: bytes) -> bytes:
    return b'{"type":"' + etype.encode() + b'","object":' + raw + b"}\n"


# ---------------------------------------------------------------------- helpers
def _truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "true", "yes")


def _manager_from_agent(agent: str) -> str:
    """Kubernetes names an unnamed field manager after the client's user agent."""
    name = agent.split("/")[0].strip()
    return name[:128] or "unknown"


def _decode(req: Request, yaml_ok: bool = False) -> Any:
    if not req.body:
        raise errors.BadRequest("the request body is empty")
    ctype = req.headers.get("content-type", "")
    if "protobuf" in ctype or "cbor" in ctype:
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml ({ctype.split(';')[0]} is not served)"
        )
    try:
        if yaml_ok or "yaml" in ctype:
            return yaml.safe_load(req.body)
        return orjson.loads(req.body)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise errors.BadRequest(f"the request body could not be decoded: {exc}") from None


_STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    202: "202 Accepted",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    410: "410 Gone",
    415: "415 Unsupported Media Type",
    422: "422 Unprocessable Entity",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
}


def _respond(
    start_response: StartResponse, code: int, body: Any, content_type: str = JSON, warnings: list[str] | None = None
) -> list[bytes]:
    return _respond_raw(start_response, code, orjson.dumps(body), content_type, warnings=warnings)


def _respond_raw(
    start_response: StartResponse,
    code: int,
    raw: bytes,
    content_type: str = JSON,
    warnings: list[str] | None = None,
    cache: bool = False,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(raw)))]
    if cache:
        headers.append(("Cache-Control", "public, immutable"))
    for w in warnings or []:
        headers.append(("Warning", '299 - "' + w.replace('"', "'").replace("\n", " ") + '"'))
    start_response(_STATUS_TEXT.get(code, f"{code} Error"), headers)
    return [raw]
