"""Kyverno's MutatingPolicy (the shape of Kubernetes' MutatingAdmissionPolicy): CEL
mutations as an apply configuration merged into the object, or as a JSON patch."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from policies.cel.matching import constraints_match
from policies.cel.program import CelError, EvalError, Expression, activation, compile_variables
from policies.cel.validating import Validator, resource_key
from policies.types import Lookup, Obj, Outcome, Request, RuleResult


def apply_configuration(target: Any, patch: Any) -> Any:
    """Server-side-apply style merge: maps merge key by key, lists of named items merge by
    name, any other list or value is replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        out = dict(target)
        for key, value in patch.items():
            out[key] = apply_configuration(target.get(key), value) if key in target else copy.deepcopy(value)
        return out
    if isinstance(target, list) and isinstance(patch, list) and _named(target) and _named(patch):
        merged = list(target)
        index = {item["name"]: i for i, item in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = apply_configuration(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


@dataclass
class _Mutation:
    kind: str  # ApplyConfiguration | JSONPatch
    expression: Expression


@dataclass
class MutatingPolicy:
    """A compiled Kyverno MutatingPolicy (types.Policy)."""

    name: str
    kind: str
    constraints: Obj | None
    conditions: Validator
    mutations: list[_Mutation] = field(default_factory=list)

    def validate(self, request: Request, lookup: Lookup | None) -> Outcome:
        return Outcome()

    def mutate(self, request: Request, lookup: Lookup | None) -> Outcome:
        if request.object is None or not constraints_match(self.constraints, request, lookup):
            return Outcome()
        verdict = self.conditions.run(activation(request, lookup))
        if verdict.status != "pass":
            return Outcome(results=[self._result(request, verdict.status, verdict.message)])
        obj: Obj = request.object
        try:
            for mutation in self.mutations:
                current = dataclasses.replace(request, object=obj)
                value = mutation.expression.evaluate(activation(current, lookup))
                if mutation.kind == "JSONPatch":
                    obj = jsonpatch.apply_patch(obj, list(value or []))
                else:
                    obj = apply_configuration(obj, value)
        except (EvalError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as e:
            return Outcome(results=[self._result(request, "error", f"mutation failed: {e}")])
        return Outcome(results=[self._result(request, "pass", "")], patched=obj if obj != request.object else None)

    def _result(self, request: Request, status: Any, message: str) -> RuleResult:
        return RuleResult(self.name, self.name, status, message, resource_key(request), True, self.kind)


def compile_mutating_policy(doc: Obj) -> MutatingPolicy:
    name = str((doc.get("metadata") or {}).get("name") or "")
    kind = str(doc.get("kind") or "MutatingPolicy")
    spec = doc.get("spec") or {}
    where = f"{kind} {name}: spec"
    variables = compile_variables(spec.get("variables"), where)
    policy = MutatingPolicy(name, kind, spec.get("matchConstraints"), Validator(spec, where))
    for i, m in enumerate(spec.get("mutations") or []):
        patch_type = str(m.get("patchType") or "")
        body = m.get("applyConfiguration") if patch_type == "ApplyConfiguration" else m.get("jsonPatch")
        if patch_type not in ("ApplyConfiguration", "JSONPatch") or not isinstance(body, dict):
            raise CelError(f"{where}.mutations[{i}]: patchType must be ApplyConfiguration or JSONPatch, with its body")
        expr = Expression(body.get("expression", ""), f"{where}.mutations[{i}]", variables)
        policy.mutations.append(_Mutation(patch_type, expr))
    return policy
