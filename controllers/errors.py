"""API errors shaped like Kubernetes `Status` objects, so every client (kubectl, the
official Python client, our own) sees the reason and code it expects."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error the API answers with; `status()` renders the metav1.Status body."""

    code = 500
    reason = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        kind: str = "",
        name: str = "",
        group: str = "",
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group
        self.causes = causes or []
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


class BadRequest(APIError):
    code = 400
    reason = "BadRequest"


class Unauthorized(APIError):
    code = 401
    reason = "Unauthorized"


class Forbidden(APIError):
    code = 403
    reason = "Forbidden"


class NotFound(APIError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(APIError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(APIError):
    code = 409
    reason = "AlreadyExists"


class Conflict(APIError):
    code = 409
    reason = "Conflict"


class Gone(APIError):
    """The requested resourceVersion is older than the event log keeps."""

    code = 410
    reason = "Expired"


class Invalid(APIError):
    code = 422
    reason = "Invalid"


class UnsupportedMediaType(APIError):
    code = 415
    reason = "UnsupportedMediaType"


class TooManyRequests(APIError):
    code = 429
    reason = "TooManyRequests"


class InternalError(APIError):
    code = 500
    reason = "InternalError"


def not_found(resource: str, group: str, name: str) -> NotFound:
    qualified = f"{resource}.{group}" if group else resource
    return NotFound(f'{qualified} "{name}" not found', kind=resource, group=group, name=name)


def already_exists(resource: str, group: str, name: str) -> AlreadyExists:
    qualified = f"{resource}.{group}" if group else resource
    return AlreadyExists(f'{qualified} "{name}" already exists', kind=resource, group=group, name=name)


def conflict(resource: str, group: str, name: str) -> Conflict:
    qualified = f"{resource}.{group}" if group else resource
    return Conflict(
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=resource,
        group=group,
        name=name,
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> Invalid:
    """422 with one cause per field, in the API server's message style."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    qualified = f"{kind}.{group}" if group else kind
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return Invalid(
        f'{qualified} "{name}" is invalid: {joined}',
        kind=kind,
        group=group,
        name=name,
        causes=causes,
    )


def field_error(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One `causes` entry; reasons as metav1.CauseType (FieldValueRequired, FieldValueInvalid...)."""
    return {"reason": reason, "message": message, "field": field}
