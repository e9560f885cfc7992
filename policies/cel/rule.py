"""`validate.cel` of a Kyverno ClusterPolicy/Policy rule: the same expressions a
ValidatingAdmissionPolicy has (expressions, variables, paramKind/paramRef), run for one
rule that the Kyverno engine has already matched."""

from __future__ import annotations

from policies.cel.program import CelError, EvalError, Expression, activation
from policies.cel.validating import Params, Validator
from policies.types import Lookup, Obj, Request


class CelValidateRule:
    """One rule's `validate.cel`, compiled once."""

    def __init__(self, cel_spec: Obj, policy: str, rule: str, preconditions: list[Obj] | None = None) -> None:
        """`preconditions` are the rule's `celPreconditions` (name + expression), for
        `applies()`; the Kyverno engine passes them when the rule has any."""
        where = f"policy {policy}: rule {rule}: validate.cel"
        if not isinstance(cel_spec, dict):
            raise CelError(f"{where}: must be a mapping")
        self.policy, self.rule = policy, rule
        self._validator = Validator(cel_spec, where, validations_key="expressions")
        self._params = Params.from_spec(cel_spec.get("paramKind"), cel_spec.get("paramRef"), where)
        self._preconditions = [
            Expression(p.get("expression", ""), f"policy {policy}: rule {rule}: celPreconditions[{i}]")
            for i, p in enumerate(preconditions or [])
        ]

    def applies(self, request: Request, lookup: Lookup | None) -> bool:
        """Whether every celPrecondition holds (an erroring one counts as not holding)."""
        context = activation(request, lookup)
        try:
            return all(p.check(context) for p in self._preconditions)
        except EvalError:
            return False

    def evaluate(self, request: Request, lookup: Lookup | None) -> str | None:
        """None when the object passes, else why not (a failed expression's message, or
        the error an expression raised)."""
        context = activation(request, lookup)
        params: list[Obj | None] = [None]
        if self._params is not None:
            found = self._params.resolve(request, lookup)
            if not found:
                return f"no params found for {self._params.where}" if self._params.deny_when_missing else None
            params = list(found)
        messages = []
        for param in params:
            context.add_variable("params", param)
            verdict = self._validator.run(context)
            if verdict.status in ("fail", "error"):
                messages.append(verdict.message)
        context.add_variable("params", None)
        return "; ".join(messages) if messages else None
