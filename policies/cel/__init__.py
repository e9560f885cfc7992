"""CEL policies: Kubernetes ValidatingAdmissionPolicy (+ bindings), Kyverno
ValidatingPolicy and MutatingPolicy, and the `validate.cel` rules of Kyverno policies.

Expressions run on the `common-expression-language` package (cel-rust), extended with
the Kubernetes CEL libraries (library.py) and a rewrite for the syntax it lacks
(syntax.py: optional field access, struct literals)."""

from __future__ import annotations

from policies.cel.mutating import compile_mutating_policy
from policies.cel.program import CelError
from policies.cel.rule import CelValidateRule
from policies.cel.validating import compile_validating_policy, compile_vap
from policies.types import Obj, Policy

__all__ = ["CelError", "CelValidateRule", "compile_policies"]

_VALIDATING = ("ValidatingPolicy", "NamespacedValidatingPolicy")
_MUTATING = ("MutatingPolicy", "NamespacedMutatingPolicy")


def compile_policies(docs: list[Obj]) -> list[Policy]:
    """Every CEL policy among `docs` compiled (other kinds are ignored); bindings attach to
    the ValidatingAdmissionPolicy they name. Raises CelError naming policy and expression."""
    bindings: dict[str, list[Obj]] = {}
    for doc in docs:
        if doc.get("kind") == "ValidatingAdmissionPolicyBinding":
            target = str((doc.get("spec") or {}).get("policyName") or "")
            bindings.setdefault(target, []).append(doc)
    policies: list[Policy] = []
    for doc in docs:
        kind = doc.get("kind")
        group = str(doc.get("apiVersion") or "").partition("/")[0]
        if kind == "ValidatingAdmissionPolicy" and group == "admissionregistration.k8s.io":
            name = str((doc.get("metadata") or {}).get("name") or "")
            policies.append(compile_vap(doc, bindings.get(name, [])))
        elif kind in _VALIDATING and group == "policies.kyverno.io":
            policies.append(compile_validating_policy(doc))
        elif kind in _MUTATING and group == "policies.kyverno.io":
            policies.append(compile_mutating_policy(doc))
    return policies
