"""The contract every policy kind is evaluated through.

A `Request` is one admission request (AdmissionReview v1's request, trimmed to what
policies read). Each compiled policy turns a request into an `Outcome`: per-rule
results plus the object as mutated. The gates (the API server's admission plugin, the
sync pre-flight, the AdmissionReview webhook) and `gitops policy test` only ever see
these types, whatever the policy language (Kyverno patterns, CEL, image signatures)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
Status = Literal["pass", "fail", "skip", "warn", "error"]


@dataclass(frozen=True)
class Request:
    """One admission request as policies see it."""

    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    object: Obj | None
    old_object: Obj | None = None
    namespace_labels: dict[str, str] = field(default_factory=dict)
    username: str = "system:admin"
    groups: tuple[str, ...] = ("system:masters", "system:authenticated")
    subresource: str = ""
    dry_run: bool = False
    roles: tuple[str, ...] = ()  # "namespace:name" of the Roles bound to the user (match.roles)
    cluster_roles: tuple[str, ...] = ()  # ClusterRoles bound to the user (match.clusterRoles)

    @property
    def resource(self) -> Obj:
        """The object the request is about (the old one for a DELETE)."""
        return self.object if self.object is not None else (self.old_object or {})

    @property
    def kind(self) -> str:
        return str(self.resource.get("kind", ""))

    @property
    def namespace(self) -> str:
        return str((self.resource.get("metadata") or {}).get("namespace") or "")

    @property
    def name(self) -> str:
        return str((self.resource.get("metadata") or {}).get("name") or "")


class Lookup(Protocol):
    """Where `context` entries (configMap, apiCall, globalReference) read the cluster from:
    the cluster client in the gates, the test file's values in `gitops policy test`."""

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None: ...

    def list(self, api_version: str, kind: str, namespace: str = "") -> list[Obj]: ...


@dataclass
class RuleResult:
    """The verdict of one rule of one policy on one resource."""

    policy: str
    rule: str
    status: Status
    message: str = ""
    resource: str = ""  # Kind/namespace/name, for messages and conditions
    enforce: bool = True  # a failing Enforce/Deny rule blocks; Audit/Warn only reports
    policy_kind: str = "ClusterPolicy"
    namespace: str = ""  # of a namespaced Policy, "" for cluster-wide kinds


@dataclass
class Outcome:
    """What evaluating policies on one request gave."""

    results: list[RuleResult] = field(default_factory=list)
    patched: Obj | None = None  # the object after mutate rules (None when unchanged)
    generated: list[Obj] = field(default_factory=list)  # objects Kyverno generate rules create

    @property
    def blocking(self) -> list[RuleResult]:
        return [r for r in self.results if r.status in ("fail", "error") and r.enforce]

    @property
    def allowed(self) -> bool:
        return not self.blocking

    @property
    def warnings(self) -> list[RuleResult]:
        """Audit failures and `warn` results: reported, never blocking."""
        return [r for r in self.results if r.status == "warn" or (r.status in ("fail", "error") and not r.enforce)]


class Policy(Protocol):
    """A compiled policy of any language."""

    name: str
    kind: str

    def mutate(self, request: Request, lookup: Lookup | None) -> Outcome:
        """Mutate rules only; `patched` is the object after them."""
        ...

    def validate(self, request: Request, lookup: Lookup | None) -> Outcome:
        """Validate (and image-verification) rules on the object as the request carries it."""
        ...
