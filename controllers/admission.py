"""The admission chain: every create, update and delete (from users and from controllers
alike) passes the mutating plugins, then the validating plugins, before it is stored.

Policy gates (policies/) plug in here as ordinary plugins; a plugin denies by raising an
`APIError` (normally `Forbidden`) whose message names the rule that denied."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from controllers.kinds import ResourceType

CREATE, UPDATE, DELETE, CONNECT = "CREATE", "UPDATE", "DELETE", "CONNECT"


@dataclass
class UserInfo:
    username: str = "system:admin"
    groups: tuple[str, ...] = ("system:masters", "system:authenticated")


@dataclass
class AdmissionRequest:
    """What a plugin sees, shaped after AdmissionReview v1's request."""

    operation: str
    resource: ResourceType
    subresource: str
    namespace: str
    name: str
    object: dict[str, Any] | None  # mutating plugins change it in place
    old_object: dict[str, Any] | None
    dry_run: bool = False
    user: UserInfo = field(default_factory=UserInfo)
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.resource.kind


class MutatingPlugin(Protocol):
    name: str

    def mutate(self, req: AdmissionRequest) -> None: ...


class ValidatingPlugin(Protocol):
    name: str

    def validate(self, req: AdmissionRequest) -> None: ...


class AdmissionChain:
    """Ordered plugins; registration is thread-safe so gates can be added at run time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mutating: tuple[MutatingPlugin, ...] = ()
        self._validating: tuple[ValidatingPlugin, ...] = ()

    def add_mutating(self, plugin: MutatingPlugin) -> None:
        with self._lock:
            self._mutating = (*self._mutating, plugin)

    def add_validating(self, plugin: ValidatingPlugin) -> None:
        with self._lock:
            self._validating = (*self._validating, plugin)

    def remove(self, name: str) -> None:
        with self._lock:
            self._mutating = tuple(p for p in self._mutating if p.name != name)
            self._validating = tuple(p for p in self._validating if p.name != name)

    @property
    def has_mutating(self) -> bool:
        """Whether an object can change in admission (and so must be validated again)."""
        return bool(self._mutating)

    def mutate(self, req: AdmissionRequest) -> None:
        for plugin in self._mutating:
            plugin.mutate(req)

    def validate(self, req: AdmissionRequest) -> None:
        for plugin in self._validating:
            plugin.validate(req)
