"""The cluster client: the one door through which everything above the store talks to a
cluster, embedded or real.

`LocalClient` calls the in-process API machinery; `RemoteClient` speaks HTTP through the
official `kubernetes` package to any API server. Both raise the same `errors.APIError`
classes and yield the same watch events, and one contract test suite runs against both.
Objects are addressed by apiVersion and kind, as controller-runtime does."""

from __future__ import annotations

import builtins
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson

from controllers import errors
from controllers.apiserver import (
    PATCH_APPLY,
    PATCH_JSON,
    PATCH_MERGE,
    PATCH_STRATEGIC,
    APIServer,
    APIWatch,
    DeleteOptions,
    WriteOptions,
)

PATCH_TYPES = {"json": PATCH_JSON, "merge": PATCH_MERGE, "strategic": PATCH_STRATEGIC, "apply": PATCH_APPLY}


class WatchEvent(NamedTuple):
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict[str, Any]


class WatchStream(Protocol):
    """Iterate for events; the iteration ends on timeout or stop(), and raises
    `errors.Gone` when the server says the requested revision is too old."""

    def __iter__(self) -> Iterator[WatchEvent]: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ResourceInfo:
    api_version: str
    kind: str
    plural: str
    namespaced: bool
    subresources: tuple[str, ...]


class Client(Protocol):
    def resource_info(self, api_version: str, kind: str) -> ResourceInfo: ...

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any]: ...

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: float | None = None,
        allow_bookmarks: bool = False,
    ) -> WatchStream: ...

    def create(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]: ...

    def update(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]: ...

    def update_status(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]: ...

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str = "",
        patch_type: str = "merge",
        field_manager: str = "",
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]: ...

    def apply(
        self,
        obj: dict[str, Any],
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]: ...

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str = "",
        propagation_policy: str | None = None,
        dry_run: bool = False,
        grace_period_seconds: int | None = None,
        precondition_uid: str | None = None,
    ) -> dict[str, Any]: ...


def _meta(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("name", ""), meta.get("namespace", "")


def _patch_media_type(patch_type: str) -> str:
    try:
        return PATCH_TYPES[patch_type]
    except KeyError:
        raise errors.BadRequest(f"unknown patch type {patch_type!r}; use one of {sorted(PATCH_TYPES)}") from None


# ---------------------------------------------------------------------- LocalClient
class _LocalWatch:
    def __init__(self, watch: APIWatch, timeout: float | None) -> None:
        self._watch = watch
        self._timeout = timeout
        self._stopped = threading.Event()

    def __iter__(self) -> Iterator[WatchEvent]:
        import time

        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            while not self._stopped.is_set():
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    return
                item = self._watch.next(wait)
                if item is None:
                    if self._watch.overflowed:
                        raise errors.Gone("the watch fell too far behind")
                    if self._watch.closed:
                        return
                    continue
                yield WatchEvent(item[0], orjson.loads(item[1]))
        finally:
            self._watch.stop()

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


class LocalClient:
    """The in-process fast path: no HTTP, no serialization beyond the store's own."""

    def __init__(self, server: APIServer, field_manager: str = "gitops") -> None:
        self.server = server
        self.default_manager = field_manager

    def _rt(self, api_version: str, kind: str) -> Any:
        return self.server.resource_for(api_version, kind)

    def resource_info(self, api_version: str, kind: str) -> ResourceInfo:
        rt = self._rt(api_version, kind)
        return ResourceInfo(rt.api_version, rt.kind, rt.plural, rt.namespaced, rt.subresources)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        return self.server.get(self._rt(api_version, kind), namespace, name)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        rt = self._rt(api_version, kind)
        result = self.server.list(rt, namespace, label_selector, field_selector, limit, continue_token)
        meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            meta["continue"] = result.continue_token
            meta["remainingItemCount"] = result.remaining
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": result.objects()}

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: float | None = None,
        allow_bookmarks: bool = False,
    ) -> WatchStream:
        rt = self._rt(api_version, kind)
        w = self.server.watch(rt, namespace, resource_version, label_selector, field_selector)
        return _LocalWatch(w, timeout_seconds)

    def _opts(self, dry_run: bool, field_manager: str, force: bool = False) -> WriteOptions:
        return WriteOptions(dry_run=dry_run, field_manager=field_manager or self.default_manager, force=force)

    def create(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]:
        api_version, kind, _, namespace = _meta(obj)
        return self.server.create(self._rt(api_version, kind), namespace, obj, self._opts(dry_run, field_manager))

    def update(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]:
        api_version, kind, name, namespace = _meta(obj)
        rt = self._rt(api_version, kind)
        return self.server.update(rt, namespace, name, obj, self._opts(dry_run, field_manager))

    def update_status(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]:
        api_version, kind, name, namespace = _meta(obj)
        rt = self._rt(api_version, kind)
        return self.server.update(rt, namespace, name, obj, self._opts(dry_run, field_manager), "status")

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str = "",
        patch_type: str = "merge",
        field_manager: str = "",
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]:
        rt = self._rt(api_version, kind)
        media = _patch_media_type(patch_type)
        opts = self._opts(dry_run, field_manager, force)
        if subresource == "scale":
            scale = self.server.get_scale(rt, namespace, name)
            return self.server.update_scale(rt, namespace, name, self.server._patched(rt, scale, media, patch), opts)
        return self.server.patch(rt, namespace, name, media, patch, opts, subresource)

    def apply(
        self,
        obj: dict[str, Any],
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]:
        api_version, kind, name, namespace = _meta(obj)
        return self.patch(api_version, kind, name, obj, namespace, "apply", field_manager, force, dry_run, subresource)

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str = "",
        propagation_policy: str | None = None,
        dry_run: bool = False,
        grace_period_seconds: int | None = None,
        precondition_uid: str | None = None,
    ) -> dict[str, Any]:
        opts = DeleteOptions(
            dry_run=dry_run,
            propagation_policy=propagation_policy,
            grace_period_seconds=grace_period_seconds,
            precondition_uid=precondition_uid,
        )
        return self.server.delete(self._rt(api_version, kind), namespace, name, opts)


# ---------------------------------------------------------------------- RemoteClient
_ERRORS_BY_CODE: dict[int, type[errors.APIError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    410: errors.Gone,
    415: errors.UnsupportedMediaType,
    422: errors.Invalid,
    429: errors.TooManyRequests,
    500: errors.InternalError,
}


def _error_from_status(code: int, body: bytes | str | None) -> errors.APIError:
    """Turn an HTTP error answer back into the APIError the local path would raise."""
    status: dict[str, Any] = {}
    if body:
        try:
            status = orjson.loads(body)
        except orjson.JSONDecodeError:
            status = {"message": body.decode() if isinstance(body, bytes) else body}
    reason = status.get("reason", "")
    message = status.get("message") or f"HTTP {code}"
    details = status.get("details") or {}
    cls: type[errors.APIError]
    if code == 409:
        cls = errors.AlreadyExists if reason == "AlreadyExists" else errors.Conflict
    else:
        cls = _ERRORS_BY_CODE.get(code, errors.InternalError)
    err = cls(
        message,
        kind=details.get("kind", ""),
        name=details.get("name", ""),
        group=details.get("group", ""),
        causes=details.get("causes"),
    )
    err.code = code
    return err


class _RemoteWatch:
    def __init__(self, response: Any) -> None:
        self._resp = response
        self._stopped = False

    def __iter__(self) -> Iterator[WatchEvent]:
        buf = b""
        try:
            for chunk in self._resp.stream(65536, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield self._event(line)
            if buf.strip():
                yield self._event(buf)
        except Exception:
            if not self._stopped:
                raise
        finally:
            self.stop()

    def _event(self, line: bytes) -> WatchEvent:
        ev = orjson.loads(line)
        if ev.get("type") == "ERROR":
            obj = ev.get("object") or {}
            raise _error_from_status(int(obj.get("code") or 500), orjson.dumps(obj))
        return WatchEvent(ev["type"], ev["object"])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        # Closing a response that another thread is reading waits for that read to return
        # (the next event, or the server's watch timeout minutes later): shutting the socket
        # down first ends the blocked read at once.
        sock = getattr(getattr(self._resp, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._resp.close()
            self._resp.release_conn()
        except Exception:  # noqa: S110 - closing a dead connection may fail; nothing to do
            pass


class RemoteClient:
    """Any Kubernetes API server through the official client (discovery by DynamicClient,
    requests through its transport, so kubeconfig auth, TLS and proxies all work)."""

    def __init__(self, api_client: Any, field_manager: str = "gitops") -> None:
        from kubernetes.dynamic import DynamicClient

        self.api_client = api_client
        self._dyn = DynamicClient(api_client)
        self.default_manager = field_manager
        self._info: dict[tuple[str, str], ResourceInfo] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None, field_manager: str = "gitops"
    ) -> RemoteClient:
        from kubernetes import config

        return cls(config.new_client_from_config(config_file=path, context=context), field_manager)

    def resource_info(self, api_version: str, kind: str) -> ResourceInfo:
        key = (api_version, kind)
        info = self._info.get(key)
        if info is not None:
            return info
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        with self._lock:
            try:
                res = self._dyn.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                # A CRD may have appeared since discovery was cached.
                self._dyn.resources.invalidate_cache()
                try:
                    res = self._dyn.resources.get(api_version=api_version, kind=kind)
                except ResourceNotFoundError:
                    raise errors.NotFound(f'no matches for kind "{kind}" in version "{api_version}"') from None
            subs = tuple(sorted((getattr(res, "subresources", None) or {}).keys()))
            info = ResourceInfo(api_version, kind, res.name, bool(res.namespaced), subs)
            self._info[key] = info
            return info

    def _path(self, info: ResourceInfo, namespace: str = "", name: str = "", subresource: str = "") -> str:
        base = f"/apis/{info.api_version}" if "/" in info.api_version else f"/api/{info.api_version}"
        parts = [base]
        if info.namespaced and namespace:
            parts.append(f"namespaces/{urllib.parse.quote(namespace, safe='')}")
        parts.append(info.plural)
        if name:
            parts.append(urllib.parse.quote(name, safe=""))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: float | tuple[float, float | None] | None = None,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        # The transport JSON-encodes bodies of JSON media types itself; apply (YAML) goes as
        # bytes, and JSON is valid YAML.
        raw_body = body if body is None or "json" in content_type else orjson.dumps(body)
        try:
            resp = self._dyn.request(
                method,
                path,
                body=raw_body,
                serialize=False,
                query_params=list(query or []),
                header_params={"Accept": "application/json"},
                content_type=content_type,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise _error_from_status(exc.status or 500, exc.body) from None
        if stream:
            return resp
        return orjson.loads(resp.data) if resp.data else {}

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        info = self.resource_info(api_version, kind)
        return self._call("GET", self._path(info, namespace, name))

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        info = self.resource_info(api_version, kind)
        query: list[tuple[str, Any]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if limit:
            query.append(("limit", limit))
        if continue_token:
            query.append(("continue", continue_token))
        out: dict[str, Any] = self._call("GET", self._path(info, namespace), query)
        for item in out.get("items") or []:  # lists omit each item's kind and apiVersion
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
        return out

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: float | None = None,
        allow_bookmarks: bool = False,
    ) -> WatchStream:
        info = self.resource_info(api_version, kind)
        query: list[tuple[str, Any]] = [("watch", "true")]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if timeout_seconds is not None:
            query.append(("timeoutSeconds", int(max(1, timeout_seconds))))
        if allow_bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        read_timeout = None if timeout_seconds is None else timeout_seconds + 30
        resp = self._call("GET", self._path(info, namespace), query, stream=True, timeout=(10, read_timeout))
        return _RemoteWatch(resp)

    def _write_query(self, dry_run: bool, field_manager: str, force: bool = False) -> builtins.list[tuple[str, Any]]:
        query: list[tuple[str, Any]] = [("fieldManager", field_manager or self.default_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
        if force:
            query.append(("force", "true"))
        return query

    def create(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]:
        api_version, kind, _, namespace = _meta(obj)
        info = self.resource_info(api_version, kind)
        return self._call("POST", self._path(info, namespace), self._write_query(dry_run, field_manager), obj)

    def update(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]:
        api_version, kind, name, namespace = _meta(obj)
        info = self.resource_info(api_version, kind)
        return self._call("PUT", self._path(info, namespace, name), self._write_query(dry_run, field_manager), obj)

    def update_status(self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "") -> dict[str, Any]:
        api_version, kind, name, namespace = _meta(obj)
        info = self.resource_info(api_version, kind)
        return self._call(
            "PUT", self._path(info, namespace, name, "status"), self._write_query(dry_run, field_manager), obj
        )

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str = "",
        patch_type: str = "merge",
        field_manager: str = "",
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]:
        info = self.resource_info(api_version, kind)
        media = _patch_media_type(patch_type)
        return self._call(
            "PATCH",
            self._path(info, namespace, name, subresource),
            self._write_query(dry_run, field_manager, force),
            patch,
            content_type=media,
        )

    def apply(
        self,
        obj: dict[str, Any],
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]:
        api_version, kind, name, namespace = _meta(obj)
        return self.patch(api_version, kind, name, obj, namespace, "apply", field_manager, force, dry_run, subresource)

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str = "",
        propagation_policy: str | None = None,
        dry_run: bool = False,
        grace_period_seconds: int | None = None,
        precondition_uid: str | None = None,
    ) -> dict[str, Any]:
        info = self.resource_info(api_version, kind)
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if dry_run:
            body["dryRun"] = ["All"]
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if precondition_uid:
            body["preconditions"] = {"uid": precondition_uid}
        return self._call("DELETE", self._path(info, namespace, name), None, body)
