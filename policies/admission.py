"""The policy gate inside the embedded API server: an admission plugin that applies the
cluster's policies (Kyverno, CEL, image policies) to every write, users' and
controllers' alike, so pods a ReplicaSet creates are mutated and checked too.

`ClusterPolicies` keeps a `PolicySet` built from the policy objects stored in the cluster,
watched through the shared informers, so a policy applies as soon as it is written.
`install()` puts the plugin into an API server; the sync pre-flight (gitops/policygate.py)
and the AdmissionReview webhook read the same `ClusterPolicies`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import orjson

from controllers import errors
from controllers.admission import CREATE, DELETE, UPDATE, AdmissionRequest
from controllers.apiserver import APIServer
from controllers.client import Client
from controllers.runtime import Controller, Informer, InformerFactory, Result
from policies.crds import KINDS, crds
from policies.engine import POLICY_KINDS, PolicyError, PolicySet
from policies.images import ImageVerifier
from policies.types import Lookup, Obj, Outcome, Request, RuleResult

log = logging.getLogger(__name__)

PLUGIN_NAME = "policies"

# Writes no policy sees, as Kyverno's default `resourceFilters`: the control plane's own
# bookkeeping (nodes, leases, events, bindings), ReplicaSets (their pods are checked)
# and the system namespaces. Subresource writes (status, scale, binding) are skipped too.
SKIPPED_KINDS = frozenset(
    {
        "Event",
        "Node",
        "Lease",
        "APIService",
        "TokenReview",
        "SubjectAccessReview",
        "SelfSubjectAccessReview",
        "Binding",
        "ReplicaSet",
        "EndpointSlice",
        "Endpoints",
    }
)
SKIPPED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

# How long a write waits for the informer to show a policy written just before it
# (read-your-writes for "a new policy applies at once"); a policy write that failed
# after admission stops being waited for after this.
FENCE_SECONDS = 2.0

_VERSIONS = {(k.group, k.kind): k.versions for k in KINDS}


class ClientLookup:
    """`context` entries (configMap, apiCall) read through a cluster client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        try:
            return self.client.get(api_version, kind, name, namespace)
        except errors.NotFound:
            return None

    def list(self, api_version: str, kind: str, namespace: str = "") -> list[Obj]:
        try:
            return list(self.client.list(api_version, kind, namespace).get("items") or [])
        except errors.NotFound:
            return []


def resource_id(obj: Obj) -> str:
    """Kind/namespace/name, as Kyverno names a resource in its messages."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or ""
    return f"{obj.get('kind', '')}/{meta.get('namespace') or ''}/{name}"


def denial_message(resource: str, blocking: Iterable[RuleResult]) -> str:
    """Kyverno's wording: the resource, then `policy: rule: message` for every failed rule."""
    parts = [f"{r.policy}: {r.rule}: {r.message or 'validation failed'}" for r in blocking]
    return f"resource {resource} was blocked due to the following policies: " + "; ".join(parts)


def warning_messages(outcome: Outcome) -> list[str]:
    """Audit failures and warn results as Kyverno words its admission warnings."""
    return [f"policy {r.policy}.{r.rule}: {r.message or 'validation failed'}" for r in outcome.warnings]


def skipped(kind: str, namespace: str, subresource: str = "") -> bool:
    """Whether policies leave a write alone (see SKIPPED_KINDS)."""
    return bool(subresource) or kind in SKIPPED_KINDS or namespace in SKIPPED_NAMESPACES


def is_policy(obj: Obj) -> bool:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(obj.get("kind", ""))) in POLICY_KINDS


def _doc_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return f"{group}/{obj.get('kind')}/{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def _semantic(obj: Obj | None) -> Any:
    """The part of a policy object that changes what it does."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    return (obj.get("spec"), meta.get("labels"), meta.get("annotations"), meta.get("deletionTimestamp"))


def _served_version(client: Client, group: str, kind: str) -> str | None:
    """The first version of a policy kind the cluster serves (a real cluster may have an
    older Kyverno, or none), None when it serves none."""
    for version in _VERSIONS.get((group, kind), ()):
        try:
            return client.resource_info(f"{group}/{version}", kind).api_version
        except errors.NotFound:
            continue
    return None


def compile_docs(
    docs: list[Obj], verifier: ImageVerifier | None = None
) -> tuple[PolicySet, list[tuple[Obj, PolicyError]]]:
    """A PolicySet of every doc that compiles, and the docs that do not with their errors
    (one bad policy must not switch all the others off)."""
    try:
        return PolicySet.from_objects(docs, verifier), []
    except PolicyError:
        pass
    good: list[Obj] = []
    bad: list[tuple[Obj, PolicyError]] = []
    # Bindings after what they bind, so each is tried with its policy already in.
    for doc in sorted(docs, key=lambda d: str(d.get("kind", "")).endswith("Binding")):
        try:
            PolicySet.from_objects([*good, doc], verifier)
            good.append(doc)
        except PolicyError as exc:
            bad.append((doc, exc))
    return PolicySet.from_objects(good, verifier), bad


class Generator:
    """Objects Kyverno `generate` rules ask for, created after the write that triggered
    them (as Kyverno's background controller does: the trigger, a Namespace say, must
    exist first). Created once, never overwritten; retried with back-off a few times."""

    MAX_TRIES = 8

    def __init__(self, client: Client) -> None:
        self.client = client
        self._pending: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self.controller = Controller("policy-generate", self._reconcile)

    def add(self, objs: list[Obj]) -> None:
        for obj in objs:
            key = _doc_key(obj)
            with self._lock:
                self._pending[key] = obj
            self.controller.queue.add(key)

    def _reconcile(self, key: str) -> Result | None:
        with self._lock:
            obj = self._pending.get(key)
        if obj is None:
            return None
        try:
            self.client.create(obj, field_manager="policies-generate")
        except errors.AlreadyExists:
            pass
        except errors.APIError as exc:
            if self.controller.queue.failures(key) + 1 < self.MAX_TRIES:
                raise
            log.error("generating %s failed %d times, giving up: %s", key, self.MAX_TRIES, exc)
        with self._lock:
            if self._pending.get(key) is obj:
                del self._pending[key]
        return None


class ClusterPolicies:
    """The cluster's policy objects, watched, and the PolicySet they compile to."""

    def __init__(
        self,
        client: Client,
        informers: InformerFactory,
        verifier: ImageVerifier | None = None,
        own_informers: bool = False,
    ) -> None:
        """`own_informers`: the factory is ours alone, so `stop()` stops it."""
        self.client = client
        self.informers = informers
        self._own_informers = own_informers
        self.generator = Generator(client)  # started by watch_policies()
        self.verifier = verifier
        self.lookup: Lookup = ClientLookup(client)
        self._cond = threading.Condition()
        self._docs: dict[str, Obj] = {}
        self._set: PolicySet | None = None
        self._clean = True  # the last build compiled every doc
        self._pending: dict[str, tuple[int, float]] = {}  # doc key -> (revision before the write, deadline)
        self._informers: list[Informer] = []
        for group, kind in sorted(POLICY_KINDS):
            api_version = _served_version(client, group, kind)
            if api_version is None:
                log.info("policy kind %s.%s is not served by the cluster; not watched", kind, group)
                continue
            inf = informers.informer(api_version, kind)
            inf.add_handler(self._on_event)
            self._informers.append(inf)
        self._namespaces = informers.informer("v1", "Namespace")

    def wait_for_sync(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        return all(
            inf.wait_for_sync(max(0.0, deadline - time.monotonic())) for inf in [*self._informers, self._namespaces]
        )

    def stop(self) -> None:
        self.generator.controller.stop()
        if self._own_informers:
            self.informers.stop()

    # -- the cache -----------------------------------------------------------------------
    def _on_event(self, etype: str, obj: Obj, _old: Obj | None) -> None:
        key = _doc_key(obj)
        rv = int((obj.get("metadata") or {}).get("resourceVersion") or 0)
        with self._cond:
            if etype == "DELETED":
                self._docs.pop(key, None)
            else:
                self._docs[key] = obj
            self._set = None
            pending = self._pending.get(key)
            if pending is not None and rv > pending[0]:
                del self._pending[key]
            self._cond.notify_all()

    def documents(self) -> list[Obj]:
        """The policy objects the cluster holds (shared: copy before changing)."""
        self._await_fresh()
        with self._cond:
            return list(self._docs.values())

    def policyset(self) -> PolicySet:
        """The compiled policies, rebuilt on first use after a change."""
        self._await_fresh()
        with self._cond:
            if self._set is None:
                self._set, bad = compile_docs(list(self._docs.values()), self.verifier)
                self._clean = not bad
                for doc, exc in bad:
                    log.error("policy %s is not enforced: %s", _doc_key(doc), exc)
            return self._set

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """For namespaceSelector: from the informer, or the API for a namespace created
        so recently that the informer has not shown it yet."""
        if not namespace:
            return {}
        ns = self._namespaces.cache.get(namespace) or self.lookup.get("v1", "Namespace", namespace)
        return dict(((ns or {}).get("metadata") or {}).get("labels") or {})

    # -- read-your-writes ----------------------------------------------------------------
    def expect(self, doc: Obj) -> None:
        """A write of `doc` passed admission: later requests wait (briefly) until the
        informer shows it, i.e. an event for it newer than the cluster's revision now."""
        api_version, kind = str(doc.get("apiVersion")), str(doc.get("kind"))
        floor = int(self.client.list(api_version, kind, limit=1)["metadata"]["resourceVersion"])
        with self._cond:
            self._pending[_doc_key(doc)] = (floor, time.monotonic() + FENCE_SECONDS)

    def _await_fresh(self) -> None:
        with self._cond:
            while self._pending:
                now = time.monotonic()
                for key in [k for k, (_, deadline) in self._pending.items() if deadline <= now]:
                    del self._pending[key]
                if not self._pending:
                    return
                self._cond.wait(min(deadline for _, deadline in self._pending.values()) - now)

    # -- checking a policy object before it is stored ------------------------------------
    def check_new_policy(self, doc: Obj) -> None:
        """Reject a policy that does not compile, naming the policy and the field."""
        self.policyset()  # so that `_clean` describes the current documents
        with self._cond:
            others = [d for k, d in self._docs.items() if k != _doc_key(doc)]
            clean = self._clean
        try:
            PolicySet.from_objects([*others, doc], self.verifier)
        except PolicyError as exc:
            if clean:  # every other policy compiles, so this one is at fault
                raise errors.BadRequest(f"policy not accepted: {exc}") from None
            log.warning("cannot tell whether %s compiles: %s", _doc_key(doc), exc)


class PolicyAdmission:
    """The admission plugin (mutating and validating) over `ClusterPolicies`."""

    name = PLUGIN_NAME

    def __init__(self, policies: ClusterPolicies) -> None:
        self.policies = policies
        self._local = threading.local()  # the mutate step's outcome, reused by validate

    def _request(self, req: AdmissionRequest) -> Request:
        return Request(
            operation=req.operation,
            object=req.object,
            old_object=req.old_object,
            namespace_labels=self.policies.namespace_labels(req.namespace),
            username=req.user.username,
            groups=tuple(req.user.groups),
            subresource=req.subresource,
            dry_run=req.dry_run,
        )

    def _admit(self, req: AdmissionRequest) -> Outcome | None:
        pset = self.policies.policyset()
        if not len(pset):
            return None
        try:
            return pset.admit(self._request(req), self.policies.lookup)
        except errors.APIError:
            raise
        except Exception as exc:  # failurePolicy Fail: an evaluation that breaks denies
            log.exception("policy evaluation of %s failed", resource_id(req.object or req.old_object or {}))
            raise errors.InternalError(f"policy evaluation failed: {exc}") from exc

    def mutate(self, req: AdmissionRequest) -> None:
        self._local.last = None
        if skipped(req.kind, req.namespace, req.subresource) or req.operation == DELETE:
            return
        outcome = self._admit(req)
        if outcome is None:
            return
        patched = outcome.patched
        if patched is not None and req.object is not None and patched is not req.object:
            req.object.clear()  # in place: the API server goes on with this very dict
            req.object.update(patched)
        self._local.last = (req, outcome, _snapshot(req.object))

    def validate(self, req: AdmissionRequest) -> None:
        if skipped(req.kind, req.namespace, req.subresource):
            return
        doc = req.object if req.object is not None else req.old_object
        policy_write = doc is not None and is_policy(doc)
        if policy_write and req.operation in (CREATE, UPDATE):
            self.policies.check_new_policy(req.object or {})
        last = getattr(self._local, "last", None)
        self._local.last = None
        if last is not None and last[0] is req and last[2] == _snapshot(req.object):
            outcome: Outcome | None = last[1]
        else:
            outcome = self._admit(req)
        if outcome is not None and outcome.blocking:
            resource = resource_id(doc or {})
            raise errors.Forbidden(denial_message(resource, outcome.blocking), kind=req.resource.plural, name=req.name)
        if outcome is not None:
            req.warnings.extend(warning_messages(outcome))
            if outcome.generated and not req.dry_run:
                self.policies.generator.add(outcome.generated)
        changed = req.operation == DELETE or _semantic(req.object) != _semantic(req.old_object)
        if policy_write and changed and not req.dry_run:
            self.policies.expect(doc or {})  # so that the very next request sees this write


def _snapshot(obj: Obj | None) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def watch_policies(
    client: Client, informers: InformerFactory | None = None, verifier: ImageVerifier | None = None
) -> ClusterPolicies:
    """Watch the cluster's policy objects (of the kinds it serves) through `informers` (a
    shared factory; a new one, started here, when None). Image signatures are checked by
    `verifier` (a default `ImageVerifier` when None). For the sync gate and the webhook;
    `install` adds the admission plugin of the embedded cluster on top."""
    factory = informers or InformerFactory(client)
    verifier = verifier if verifier is not None else ImageVerifier()
    policies = ClusterPolicies(client, factory, verifier, own_informers=informers is None)
    factory.start()  # starts only the informers not running yet
    if not policies.wait_for_sync():
        log.warning("policy informers did not sync within 30s; policies apply once they do")
    policies.generator.controller.start()
    return policies


def install(
    target: Any, client: Client, informers: InformerFactory | None = None, verifier: ImageVerifier | None = None
) -> ClusterPolicies:
    """Install the policy CRDs and the admission plugin into an embedded cluster (or a bare
    `APIServer`); see `watch_policies` for the rest. `uninstall` removes them again."""
    api: APIServer = target if isinstance(target, APIServer) else target.api
    for doc in crds():
        client.apply(doc, field_manager="gitops-policies", force=True)
    policies = watch_policies(client, informers, verifier)
    plugin = PolicyAdmission(policies)
    api.admission.add_mutating(plugin)
    api.admission.add_validating(plugin)
    return policies


def uninstall(target: Any, policies: ClusterPolicies) -> None:
    api: APIServer = target if isinstance(target, APIServer) else target.api
    api.admission.remove(PLUGIN_NAME)
    policies.stop()
