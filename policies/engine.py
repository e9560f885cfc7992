"""The one entry point above the policy languages: a `PolicySet` built from policy
objects of any kind, admitting requests.

Kyverno ClusterPolicy/Policy compile here (policies.kyverno); the CEL kinds
(ValidatingAdmissionPolicy and its bindings, Kyverno ValidatingPolicy/MutatingPolicy)
and sigstore ClusterImagePolicy are compiled by their own packages, imported on first
use so that each part works without the others loaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from policies.types import Lookup, Obj, Outcome, Policy, Request

if TYPE_CHECKING:
    from policies.images import ImageVerifier

KYVERNO_GROUP = "kyverno.io"
KYVERNO_POLICIES_GROUP = "policies.kyverno.io"
ADMISSION_GROUP = "admissionregistration.k8s.io"
SIGSTORE_GROUP = "policy.sigstore.dev"

_KYVERNO = frozenset({(KYVERNO_GROUP, "ClusterPolicy"), (KYVERNO_GROUP, "Policy")})
_CEL = frozenset(
    {
        (ADMISSION_GROUP, "ValidatingAdmissionPolicy"),
        (ADMISSION_GROUP, "ValidatingAdmissionPolicyBinding"),
        (KYVERNO_POLICIES_GROUP, "ValidatingPolicy"),
        (KYVERNO_POLICIES_GROUP, "MutatingPolicy"),
    }
)
_IMAGES = frozenset({(SIGSTORE_GROUP, "ClusterImagePolicy")})
POLICY_KINDS: frozenset[tuple[str, str]] = _KYVERNO | _CEL | _IMAGES


class PolicyError(ValueError):
    """A policy that cannot be compiled; the message names the policy and the field."""


def _group_kind(doc: Obj) -> tuple[str, str]:
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return group, str(doc.get("kind", ""))


def _describe(doc: Obj) -> str:
    return f"{doc.get('kind', '?')} {(doc.get('metadata') or {}).get('name', '?')}"


class PolicySet:
    """Compiled policies in the order given; mutate rules of every policy run first, then
    every validation sees the fully mutated object."""

    def __init__(self, policies: list[Policy], verifier: ImageVerifier | None = None) -> None:
        self.policies = policies
        self.verifier = verifier
        # Policies that cannot mutate are skipped in the mutate pass (most are validate-only),
        # those that cannot validate in the validate pass; each validate is bound once.
        self._mutating = [p for p in policies if getattr(p, "has_mutate", True)]
        self._validators = [(p, _validator(p, verifier)) for p in policies if getattr(p, "has_validate", True)]
        # Per request kind, the policies that may apply to it (a policy without `kinds` may
        # apply to any): most requests concern a kind only a few policies look at.
        self._by_kind: dict[str, tuple[list[Policy], list[Callable[[Request, Lookup | None], Outcome]]]] = {}

    @classmethod
    def from_objects(cls, docs: list[Obj], verifier: ImageVerifier | None = None) -> PolicySet:
        """Compile every policy object in `docs` (other objects are ignored)."""
        compiled: list[Policy] = []
        cel_docs: list[Obj] = []
        for doc in docs:
            gk = _group_kind(doc)
            if gk in _KYVERNO:
                compiled.append(_compile_kyverno(doc))
            elif gk in _CEL:
                cel_docs.append(doc)
            elif gk in _IMAGES:
                compiled.append(_compile_image_policy(doc, verifier))
        if cel_docs:
            compiled.extend(_compile_cel(cel_docs))
        return cls(compiled, verifier)

    def __len__(self) -> int:
        return len(self.policies)

    def admit(self, request: Request, lookup: Lookup | None = None) -> Outcome:
        """Every mutate rule (in policy order), then every validation on the patched object."""
        outcome = Outcome()
        current = request
        mutating, validators = self._for_kind(request.kind)
        for policy in mutating:
            mutated = policy.mutate(current, lookup)
            outcome.results.extend(mutated.results)
            if mutated.patched is not None:
                outcome.patched = mutated.patched
                current = _with_object(current, mutated.patched)
        for validate in validators:
            validated = validate(current, lookup)
            outcome.results.extend(validated.results)
            outcome.generated.extend(validated.generated)
            if validated.patched is not None:  # image digests pinned by verifyImages
                outcome.patched = validated.patched
                current = _with_object(current, validated.patched)
        return outcome

    def _for_kind(self, kind: str) -> tuple[list[Policy], list[Callable[[Request, Lookup | None], Outcome]]]:
        plan = self._by_kind.get(kind)
        if plan is None:
            plan = (
                [p for p in self._mutating if _may_apply(p, kind)],
                [v for p, v in self._validators if _may_apply(p, kind)],
            )
            if len(self._by_kind) >= 256:  # kinds are few; bound the memory all the same
                self._by_kind.clear()
            self._by_kind[kind] = plan
        return plan


def _may_apply(policy: Policy, kind: str) -> bool:
    kinds = getattr(policy, "kinds", None)
    return kinds is None or kind in kinds


def _validator(policy: Policy, verifier: ImageVerifier | None) -> Callable[[Request, Lookup | None], Outcome]:
    """The policy's validate; Kyverno policies also get the image verifier (verifyImages rules)."""
    from policies.kyverno import KyvernoPolicy

    if isinstance(policy, KyvernoPolicy):
        validate = policy.validate
        return lambda request, lookup: validate(request, lookup, verifier)
    return policy.validate


def _with_object(request: Request, obj: Obj) -> Request:
    from dataclasses import replace

    return replace(request, object=obj)


def _compile_kyverno(doc: Obj) -> Policy:
    from policies.kyverno import KyvernoPolicyError, compile_policy

    try:
        return compile_policy(doc)
    except KyvernoPolicyError as err:
        raise PolicyError(str(err)) from err


def _compile_cel(docs: list[Obj]) -> list[Policy]:
    from policies.cel import CelError, compile_policies

    try:
        return list(compile_policies(docs))
    except CelError as err:
        raise PolicyError(str(err)) from err


def _compile_image_policy(doc: Obj, verifier: ImageVerifier | None) -> Policy:
    from policies.images import ImageVerifier
    from policies.images.cip import compile_cluster_image_policy

    try:
        return compile_cluster_image_policy(doc, verifier if verifier is not None else ImageVerifier())
    except ValueError as err:
        raise PolicyError(f"{_describe(doc)}: {err}") from err
