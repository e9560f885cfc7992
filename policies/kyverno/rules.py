"""Compiled Kyverno rule bodies: validate (pattern, anyPattern, deny, foreach,
podSecurity, cel), mutate (patchStrategicMerge, patchesJson6902, foreach) and generate.

Each body is built once from the rule's YAML; `run` evaluates it against one resource
with a variable context that is only built when the body needs one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from policies.kyverno.conditions import Conditions
from policies.kyverno.context import load_context_entries
from policies.kyverno.jmes import VariableError, has_variables, search, substitute, substitute_string
from policies.kyverno.mutate import GlobalSkip, Patch, json6902, strategic_merge
from policies.kyverno.pattern import Mismatch, compile_node, match_pattern
from policies.kyverno.podsecurity import PodSecurity
from policies.types import Lookup, Obj, Request, Status

Ctx = dict[str, Any]
CtxFactory = Callable[[], Ctx]


@dataclass(slots=True)
class Verdict:
    status: Status
    message: str = ""
    path: str = ""


class RuleError(ValueError):
    """A rule that cannot be compiled; the message names the rule and field."""


def _message(template: str, ctx_factory: CtxFactory | None) -> str:
    """The rule's message with its variables substituted (kept as written when they
    cannot be resolved), without a trailing period so sentences can follow it."""
    text = template
    if text and "{{" in text and ctx_factory is not None:
        try:
            text = str(substitute_string(text, ctx_factory()))
        except VariableError:
            pass
    return text.strip().rstrip(".")


# ---------------------------------------------------------------- validate


class Validator:
    """A validate body; `check` returns pass/fail/skip/error for one resource."""

    uses_context = False

    def check(self, resource: Any, ctx: CtxFactory) -> Verdict:
        raise NotImplementedError


class PatternValidator(Validator):
    def __init__(self, pattern: Any, rule: str, message: str) -> None:
        self.raw = pattern
        self.dynamic = has_variables(pattern)
        self.node = None if self.dynamic else compile_node(pattern)
        self.rule = rule
        self.message = message
        self.uses_context = self.dynamic
        self.passed = Verdict("pass", f"validation rule '{rule}' passed.")  # never modified: shared

    def mismatch(self, resource: Any, ctx: CtxFactory) -> Mismatch | None:
        node = self.node
        if node is None:
            node = compile_node(substitute(self.raw, ctx()))
        return match_pattern(node, resource)

    def check(self, resource: Any, ctx: CtxFactory) -> Verdict:
        try:
            miss = self.mismatch(resource, ctx)
        except VariableError as err:
            return Verdict("error", f"variable substitution failed: {err}")
        if miss is None:
            return self.passed
        if miss.skips:
            return Verdict("skip", f"rule {self.rule} skipped: {miss.detail}")
        msg = _message(self.message, ctx)
        return Verdict("fail", f"validation error: {msg}. rule {self.rule} failed at path {miss.path}", miss.path)


class AnyPatternValidator(Validator):
    def __init__(self, patterns: list[Any], rule: str, message: str) -> None:
        self.items = [PatternValidator(p, rule, message) for p in patterns]
        self.rule = rule
        self.message = message
        self.uses_context = any(i.uses_context for i in self.items)

    def check(self, resource: Any, ctx: CtxFactory) -> Verdict:
        failures: list[str] = []
        skips = 0
        for idx, item in enumerate(self.items):
            try:
                miss = item.mismatch(resource, ctx)
            except VariableError as err:
                return Verdict("error", f"variable substitution failed: {err}")
            if miss is None:
                return Verdict("pass", f"validation rule '{self.rule}' anyPattern[{idx}] passed.")
            if miss.skips:
                skips += 1
            else:
                failures.append(f"rule {self.rule}[{idx}] failed at path {miss.path}")
        if not failures and skips:
            return Verdict("skip", f"rule {self.rule} skipped: no anyPattern applies")
        msg = _message(self.message, ctx)
        return Verdict("fail", f"validation error: {msg}. {' '.join(failures)}")


class DenyValidator(Validator):
    uses_context = True

    def __init__(self, deny: Obj, rule: str, message: str, where: str) -> None:
        self.conditions = Conditions(deny.get("conditions"), f"{where}.deny.conditions")
        self.rule = rule
        self.message = message
        self.passed = Verdict("pass", f"validation rule '{rule}' passed.")  # never modified: shared

    def check(self, resource: Any, ctx: CtxFactory) -> Verdict:
        if self.conditions.active and not self.conditions.holds(ctx()):
            return self.passed
        msg = _message(self.message, ctx) or f"the request is denied by rule {self.rule}"
        return Verdict("fail", f"validation error: {msg}. rule {self.rule} failed")


class PodSecurityValidator(Validator):
    def __init__(self, spec: Obj, rule: str, where: str) -> None:
        try:
            self.pss = PodSecurity(spec, f"{where}.podSecurity")
        except ValueError as err:
            raise RuleError(str(err)) from err
        self.rule = rule
        self.passed = Verdict("pass", f"validation rule '{rule}' passed.")

    def check(self, resource: Any, ctx: CtxFactory) -> Verdict:
        violations = self.pss.violations(resource, _findings(ctx(), resource))
        if not violations:
            return self.passed
        return Verdict("fail", self.pss.message(violations))


class _Findings(threading.local):
    """Pod security findings of the resource being admitted (per thread). They are kept
    for as long as rules see the same context document, which is one per request: a
    context built afresh (test values, context entries) or a new request starts over."""

    owner: tuple[Any, Any] = (None, None)
    found: dict[Any, Any]

    def __init__(self) -> None:
        self.found = {}


_findings_slot = _Findings()


def _findings(ctx: Ctx, resource: Any) -> dict[Any, Any]:
    slot = _findings_slot
    owner = slot.owner
    if owner[0] is not ctx or owner[1] is not resource:
        slot.owner, slot.found = (ctx, resource), {}
    return slot.found


class CelValidator(Validator):
    """`validate.cel`, evaluated by the CEL engine (policies.cel) on the request itself."""

    def __init__(self, spec: Obj, policy: str, rule: str, preconditions: list[Obj] | None = None) -> None:
        from policies.cel import CelValidateRule  # imported lazily: the CEL engine is a separate part

        self.impl = CelValidateRule(spec, policy, rule, preconditions)
        self.rule = rule

    def applies(self, request: Request, lookup: Lookup | None) -> bool:
        """The rule's `celPreconditions` hold."""
        return bool(self.impl.applies(request, lookup))

    def run(self, request: Request, lookup: Lookup | None) -> Verdict:
        message = self.impl.evaluate(request, lookup)
        if message is None:
            return Verdict("pass", f"validation rule '{self.rule}' passed.")
        return Verdict("fail", message)

    def check(self, resource: Any, ctx: CtxFactory) -> Verdict:
        raise RuleError(f"rule {self.rule}: a CEL rule is evaluated on the request, not inside foreach")


class ForeachValidator(Validator):
    """`foreach`: the nested validation runs on each element of a list expression."""

    uses_context = True

    def __init__(self, entries: list[Obj], rule: str, message: str, where: str, depth: int = 0) -> None:
        self.rule = rule
        self.depth = depth
        self.passed = Verdict("pass", f"validation rule '{rule}' passed.")
        self.entries: list[tuple[str, Conditions, list[Obj], Validator, bool]] = []
        for i, entry in enumerate(entries):
            at = f"{where}.foreach[{i}]"
            if not entry.get("list"):
                raise RuleError(f"{at}.list is required")
            nested = _validator(entry, rule, message, at, depth + 1, policy="")
            if nested is None:
                raise RuleError(f"{at}: needs pattern, anyPattern, deny or foreach")
            scope = entry.get("elementScope")
            self.entries.append(
                (
                    str(entry["list"]),
                    Conditions(entry.get("preconditions"), f"{at}.preconditions"),
                    list(entry.get("context") or []),
                    nested,
                    bool(scope) if scope is not None else "pattern" in entry or "anyPattern" in entry,
                )
            )

    def check(self, resource: Any, ctx: CtxFactory) -> Verdict:
        base = ctx()
        applied = 0
        element_key, index_key = f"element{self.depth}", f"elementIndex{self.depth}"
        for expr, pre, context, nested, element_scope in self.entries:
            try:
                items = (
                    search(substitute_string(expr, base, lenient=True), base) if "{{" in expr else search(expr, base)
                )
            except VariableError:
                continue
            if not isinstance(items, list):
                continue
            local = dict(base)
            get_local = _constant(local)
            for index, element in enumerate(items):
                if context:  # entries may add names: each element starts from the base
                    local = dict(base)
                    get_local = _constant(local)
                local["element"] = element
                local["elementIndex"] = index
                local[element_key] = element
                local[index_key] = index
                if context:
                    try:
                        load_context_entries(context, local, None, frozenset(), f"rule {self.rule}")
                    except VariableError as err:
                        return Verdict("error", str(err))
                if pre.active and not pre.holds(local):
                    continue
                target = element if element_scope else resource
                verdict = nested.check(target, get_local)
                if verdict.status == "skip":
                    continue
                if verdict.status != "pass":
                    if verdict.path:  # name the element, not just the path inside it
                        at = f"{expr.strip()}[{index}]{verdict.path}"
                        verdict.message = verdict.message.replace(f"at path {verdict.path}", f"at path {at}")
                        verdict.path = at
                    return verdict
                applied += 1
        if applied == 0:
            return Verdict("skip", f"rule {self.rule} skipped: no foreach element applies")
        return self.passed


def _constant(ctx: Ctx) -> CtxFactory:
    return lambda: ctx


def _validator(body: Obj, rule: str, message: str, where: str, depth: int, policy: str) -> Validator | None:
    message = str(body.get("message", message) or message)
    if "pattern" in body:
        return PatternValidator(body["pattern"], rule, message)
    if "anyPattern" in body:
        patterns = body["anyPattern"]
        if isinstance(patterns, str):
            patterns = json.loads(patterns)
        return AnyPatternValidator(list(patterns or []), rule, message)
    if "deny" in body:
        return DenyValidator(body.get("deny") or {}, rule, message, where)
    if "foreach" in body:
        return ForeachValidator(list(body.get("foreach") or []), rule, message, where, depth)
    if "podSecurity" in body:
        return PodSecurityValidator(body.get("podSecurity") or {}, rule, where)
    if "cel" in body and depth == 0:
        return CelValidator(body.get("cel") or {}, policy, rule)
    return None


def compile_validate(body: Obj, policy: str, rule: str, where: str) -> Validator:
    validator = _validator(body, rule, str(body.get("message", "")), where, 0, policy)
    if validator is None:
        raise RuleError(f"{where}: validate needs one of pattern, anyPattern, deny, foreach, podSecurity or cel")
    return validator


# ---------------------------------------------------------------- mutate


class Mutator:
    """A mutate body: returns the new resource (None when the rule does not apply)."""

    def __init__(self, body: Obj, rule: str, where: str, depth: int = 0) -> None:
        self.rule = rule
        self.depth = depth
        self.psm = body.get("patchStrategicMerge")
        self.psm_dynamic = has_variables(self.psm)
        self.psm_compiled = Patch(self.psm) if self.psm is not None and not self.psm_dynamic else None
        self.json6902 = body.get("patchesJson6902")
        self.foreach: list[tuple[str, Conditions, list[Obj], Mutator, bool]] = []
        for i, entry in enumerate(body.get("foreach") or []):
            at = f"{where}.foreach[{i}]"
            if not entry.get("list"):
                raise RuleError(f"{at}.list is required")
            self.foreach.append(
                (
                    str(entry["list"]),
                    Conditions(entry.get("preconditions"), f"{at}.preconditions"),
                    list(entry.get("context") or []),
                    Mutator(entry, rule, at, depth + 1),
                    str(entry.get("order", "Ascending")) == "Descending",
                )
            )
        if self.psm is None and self.json6902 is None and not self.foreach:
            if body.get("targets") or body.get("mutateExistingOnPolicyUpdate") is not None:
                return
            raise RuleError(f"{where}: mutate needs patchStrategicMerge, patchesJson6902 or foreach")

    def apply(self, resource: Obj, ctx: Ctx) -> Obj:
        """Raises GlobalSkip when an anchor says the patch does not apply."""
        out = resource
        if self.psm_compiled is not None:
            out = self.psm_compiled.apply(out)
        elif self.psm is not None:
            out = strategic_merge(out, substitute(self.psm, ctx))
        if self.json6902 is not None:
            text = self.json6902
            text = substitute_string(text, ctx) if isinstance(text, str) and "{{" in text else text
            ops = yaml.safe_load(text) if isinstance(text, str) else text
            out = json6902(out, ops or [])
        for expr, pre, context, nested, descending in self.foreach:
            out = self._foreach(out, ctx, expr, pre, context, nested, descending)
        return out

    def _foreach(
        self, resource: Obj, ctx: Ctx, expr: str, pre: Conditions, context: list[Obj], nested: Mutator, desc: bool
    ) -> Obj:
        base = dict(ctx)
        base["request"] = {**ctx["request"], "object": resource}
        try:
            items = search(substitute_string(expr, base, lenient=True), base)
        except VariableError:
            return resource
        if not isinstance(items, list):
            return resource
        order = list(enumerate(items))
        if desc:
            order.reverse()
        out = resource
        for index, element in order:
            local = dict(base)
            local["request"] = {**ctx["request"], "object": out}
            local["element"] = element
            local["elementIndex"] = index
            local[f"element{self.depth}"] = element
            local[f"elementIndex{self.depth}"] = index
            load_context_entries(context, local, None, frozenset(), f"rule {self.rule}")
            if pre.active and not pre.holds(local):
                continue
            try:
                out = nested.apply(out, local)
            except GlobalSkip:
                continue
        return out


# ---------------------------------------------------------------- generate


class Generator:
    """A generate body with `data` (clone needs the cluster and is resolved through the
    Lookup when one is given)."""

    def __init__(self, body: Obj, where: str) -> None:
        self.body = body
        if not body.get("kind") and not body.get("foreach") and not body.get("cloneList"):
            raise RuleError(f"{where}.kind is required")

    def objects(self, ctx: Ctx, lookup: Any) -> list[Obj]:
        body = self.body
        entries = [body] if not body.get("foreach") else []
        out: list[Obj] = []
        for entry in entries:
            spec = substitute({k: v for k, v in entry.items() if k not in ("data", "clone")}, ctx)
            obj: Obj
            if "data" in entry:
                data = substitute(entry.get("data") or {}, ctx)
                obj = {k: v for k, v in data.items() if k != "metadata"}
                meta = dict(data.get("metadata") or {})
            elif entry.get("clone") and lookup is not None:
                clone = substitute(entry["clone"], ctx)
                source = lookup.get(
                    str(spec.get("apiVersion", "v1")),
                    str(spec.get("kind")),
                    clone.get("name"),
                    clone.get("namespace", ""),
                )
                if source is None:
                    continue
                obj = {k: v for k, v in source.items() if k not in ("metadata", "status")}
                meta = {k: v for k, v in (source.get("metadata") or {}).items() if k in ("labels", "annotations")}
            else:
                continue
            meta["name"] = spec.get("name")
            if spec.get("namespace"):
                meta["namespace"] = spec.get("namespace")
            out.append({"apiVersion": spec.get("apiVersion", "v1"), "kind": spec.get("kind"), "metadata": meta, **obj})
        return out
