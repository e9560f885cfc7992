"""A Kyverno `ClusterPolicy` / `Policy` compiled into a `policies.types.Policy`.

Compilation happens once per policy object: rules (plus their autogen copies for pod
controllers) are parsed, patterns and conditions compiled and the kinds each rule can
match indexed, so evaluating a request first picks the few rules whose kinds fit and
then walks precompiled trees."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policies.kyverno.autogen import autogen_rules, controllers_for
from policies.kyverno.conditions import ConditionError, Conditions
from policies.kyverno.context import group_version, load_context_entries, request_context
from policies.kyverno.jmes import VariableError
from policies.kyverno.match import Block, LabelSelector, MatchError
from policies.kyverno.mutate import GlobalSkip
from policies.kyverno.rules import (
    CelValidator,
    Generator,
    Mutator,
    RuleError,
    Validator,
    Verdict,
    compile_validate,
)
from policies.kyverno.values import wildcard_match
from policies.types import Lookup, Obj, Outcome, Request, RuleResult


class KyvernoPolicyError(ValueError):
    """A Kyverno policy that cannot be compiled; the message names policy, rule and field."""


@dataclass
class _Override:
    enforce: bool
    namespaces: list[str]
    selector: LabelSelector | None

    def applies(self, namespace: str, labels: dict[str, str]) -> bool:
        if self.namespaces and not any(wildcard_match(n, namespace) for n in self.namespaces):
            return False
        return self.selector is None or self.selector.matches(labels)


def _enforce(action: Any) -> bool:
    return str(action or "Audit").lower() == "enforce"


def _with_failure_action(entry: Any, default: str) -> Obj:
    """The verifyImages entry with `failureAction` set: its own, else the policy's."""
    if not isinstance(entry, dict):
        return {"failureAction": default}
    return entry if entry.get("failureAction") else {**entry, "failureAction": default}


def _overrides(raw: Any, where: str) -> list[_Override]:
    out = []
    for i, o in enumerate(raw or []):
        selector = o.get("namespaceSelector")
        out.append(
            _Override(
                _enforce(o.get("action")),
                [str(n) for n in o.get("namespaces") or []],
                LabelSelector(selector, f"{where}[{i}].namespaceSelector") if selector else None,
            )
        )
    return out


@dataclass
class Rule:
    name: str
    match: Block
    exclude: Block
    preconditions: Conditions
    context: list[Obj]
    kinds: set[str]
    validator: Validator | None = None
    mutator: Mutator | None = None
    generator: Generator | None = None
    verify_images: list[Obj] | None = None
    enforce: bool | None = None
    overrides: list[_Override] = field(default_factory=list)
    delete_ok: bool = False
    cel_preconditions: CelValidator | None = None
    needs_context: bool = True
    match_static: bool = False  # match/exclude depend only on kind, version, subresource, operation
    fixed_enforce: bool | None = None  # Enforce/Audit when no override can change it per request

    def kind_fits(self, kind: str) -> bool:
        return "*" in self.kinds or kind in self.kinds

    def applies(self, req: Request, group: str, version: str) -> bool:
        if req.operation == "DELETE" and not self.delete_ok:
            return False
        sub = req.subresource
        if not self.match.matches(req, sub, group, version):
            return False
        return not self.exclude.excludes(req, sub, group, version)


class KyvernoPolicy:
    """One compiled ClusterPolicy or Policy (the `policies.types.Policy` protocol)."""

    def __init__(self, doc: Obj) -> None:
        meta = doc.get("metadata") or {}
        self.kind = str(doc.get("kind", ""))
        self.name = str(meta.get("name", ""))
        self.namespace = str(meta.get("namespace") or "") if self.kind == "Policy" else ""
        if self.kind == "Policy" and not self.namespace:
            self.namespace = "default"
        spec = doc.get("spec") or {}
        where = f"{self.kind} {self.name}"
        self.enforce = _enforce(spec.get("validationFailureAction") or spec.get("failureAction"))
        self.overrides = _overrides(
            spec.get("validationFailureActionOverrides") or spec.get("failureActionOverrides"),
            f"{where}: spec.validationFailureActionOverrides",
        )
        self.preset: dict[str, dict[str, Any]] = {}  # rule -> values supplied by a test file
        self.rules: list[Rule] = []
        controllers = controllers_for(doc)
        raw_rules = spec.get("rules") or []
        if not isinstance(raw_rules, list):
            raise KyvernoPolicyError(f"{where}: spec.rules must be a list")
        expanded: list[tuple[int, Obj]] = []
        for i, raw in enumerate(raw_rules):
            expanded.append((i, raw))
            expanded.extend((i, gen) for gen in autogen_rules(raw, controllers))
        for i, raw in expanded:
            self.rules.append(self._compile_rule(raw, f"{where}: spec.rules[{i}]"))
        self._by_kind: dict[str, list[Rule]] = {}
        self._any_kind = [r for r in self.rules if "*" in r.kinds]
        for kind in {k for r in self.rules for k in r.kinds if k != "*"}:
            self._by_kind[kind] = [r for r in self.rules if r.kind_fits(kind)]
        for rule in self.rules:
            if not (rule.overrides or self.overrides):
                rule.fixed_enforce = rule.enforce if rule.enforce is not None else self.enforce
        self._plans: dict[tuple[str, str, str, str, str], tuple[list[Rule], list[Rule] | None]] = {}
        # The kinds any rule can match (None: any kind), for PolicySet to skip this policy.
        self.kinds: frozenset[str] | None = None if self._any_kind else frozenset(self._by_kind)
        self.has_mutate = any(r.mutator for r in self.rules)
        self.has_validate = any(r.validator or r.generator or r.verify_images for r in self.rules)

    def _compile_rule(self, raw: Obj, where: str) -> Rule:
        if not isinstance(raw, dict) or not raw.get("name"):
            raise KyvernoPolicyError(f"{where}: a rule needs a name")
        name = str(raw["name"])
        where = f"{where} ({name})"
        try:
            match = Block(raw.get("match"), f"{where}.match")
            if not match:
                raise KyvernoPolicyError(f"{where}.match: at least one resource filter is required")
            rule = Rule(
                name=name,
                match=match,
                exclude=Block(raw.get("exclude"), f"{where}.exclude"),
                preconditions=Conditions(raw.get("preconditions"), f"{where}.preconditions"),
                context=list(raw.get("context") or []),
                kinds=match.kind_names(),
            )
            rule.delete_ok = any("DELETE" in f.operations for f in match.filters())
            if raw.get("celPreconditions"):
                # Evaluated by the CEL engine: an always-true rule carrying the preconditions.
                rule.cel_preconditions = CelValidator(
                    {"expressions": [{"expression": "true"}]}, self.name, name, list(raw["celPreconditions"])
                )
            if "validate" in raw:
                body = raw.get("validate") or {}
                rule.validator = compile_validate(body, self.name, name, f"{where}.validate")
                if body.get("failureAction"):
                    rule.enforce = _enforce(body["failureAction"])
                rule.overrides = _overrides(
                    body.get("failureActionOverrides"), f"{where}.validate.failureActionOverrides"
                )
            elif "mutate" in raw:
                rule.mutator = Mutator(raw.get("mutate") or {}, name, f"{where}.mutate")
            elif "generate" in raw:
                rule.generator = Generator(raw.get("generate") or {}, f"{where}.generate")
            elif "verifyImages" in raw:
                rule.verify_images = list(raw.get("verifyImages") or [])
            else:
                raise KyvernoPolicyError(f"{where}: needs validate, mutate, generate or verifyImages")
        except (MatchError, ConditionError, RuleError, VariableError) as err:
            raise KyvernoPolicyError(f"{where}: {err}") from err
        rule.match_static = rule.match.static and rule.exclude.static
        rule.needs_context = bool(rule.preconditions or rule.context or rule.mutator or rule.generator) or bool(
            rule.validator and rule.validator.uses_context
        )
        return rule

    # ------------------------------------------------------------ evaluation

    def _candidates(self, req: Request, facts: _Facts) -> list[Rule]:
        """The rules whose match/exclude fit the request, in order. What kinds, versions
        and operations decide is worked out once per combination and cached; only rules
        that look at names, labels or the user are matched per request."""
        if self.namespace and req.namespace != self.namespace:
            return []
        key = facts.plan_key
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(req, facts)
            if len(self._plans) >= 256:  # kinds seen are few; bound the memory all the same
                self._plans.clear()
            self._plans[key] = plan
        fixed, per_request = plan
        if per_request is None:
            return fixed
        return [r for r in per_request if r.match_static or r.applies(req, facts.group, facts.version)]

    def _plan(self, req: Request, facts: _Facts) -> tuple[list[Rule], list[Rule] | None]:
        """(the rules that apply when all are decided by the cache key, None) or
        ([], the rules to check per request with the statically excluded ones left out)."""
        fitting = self._by_kind.get(facts.kind, self._any_kind)
        kept = [r for r in fitting if not r.match_static or r.applies(req, facts.group, facts.version)]
        if all(r.match_static for r in kept):
            return kept, None
        return [], kept

    def _enforced(self, rule: Rule, req: Request) -> bool:
        overrides = rule.overrides or self.overrides
        if not overrides:
            return rule.enforce if rule.enforce is not None else self.enforce
        for o in overrides:
            if o.applies(req.namespace, req.namespace_labels):
                return o.enforce
        return rule.enforce if rule.enforce is not None else self.enforce

    def _result(self, rule: Rule, req: Request, verdict: Verdict, facts: _Facts) -> RuleResult:
        enforce = rule.fixed_enforce
        return RuleResult(
            self.name,
            rule.name,
            verdict.status,
            verdict.message,
            facts.name,
            self._enforced(rule, req) if enforce is None else enforce,
            self.kind,
            self.namespace,
        )

    def _context(self, rule: Rule, req: Request, lookup: Lookup | None, obj: Obj | None = None) -> dict[str, Any]:
        """The rule's variables. Without context entries, test values or a mutated object
        to add, every rule shares the request's document (rules only read it; foreach
        copies it before adding `element`)."""
        if obj is None and not self.preset and not rule.context:
            return request_context(req)
        ctx = dict(request_context(req))
        if obj is not None and req.operation != "DELETE":
            ctx["request"] = {**ctx["request"], "object": obj}
        preset = (self.preset.get(rule.name) or self.preset.get("*") or {}) if self.preset else {}
        for key, value in preset.items():
            _set(ctx, key, value)
        if rule.context:
            names = frozenset(k.split(".")[0] for k in preset)
            load_context_entries(rule.context, ctx, lookup, names, f"rule {rule.name}")
        return ctx

    def _prepare(self, rule: Rule, req: Request, lookup: Lookup | None, obj: Obj | None = None) -> Any:
        """The rule's context, or a Verdict when it does not apply / cannot be evaluated."""
        try:
            ctx = self._context(rule, req, lookup, obj)
        except VariableError as err:
            return Verdict("error", f"failed to load context: {err}")
        if rule.preconditions.active and not rule.preconditions.holds(ctx):
            return Verdict("skip", "preconditions not met")
        return ctx

    def _cel_skip(self, rule: Rule, req: Request, lookup: Lookup | None) -> bool:
        return rule.cel_preconditions is not None and not rule.cel_preconditions.applies(req, lookup)

    def validate(self, request: Request, lookup: Lookup | None = None, verifier: Any = None) -> Outcome:
        """Validate, generate and image rules on the request's object."""
        outcome = Outcome()
        if not self.has_validate:
            return outcome
        facts = _facts.get(request)
        results = outcome.results
        resource = request.resource
        for rule in self._candidates(request, facts):
            if rule.mutator is not None:
                continue
            if rule.cel_preconditions is not None and self._cel_skip(rule, request, lookup):
                results.append(self._result(rule, request, Verdict("skip", "celPreconditions not met"), facts))
                continue
            if rule.verify_images is not None:
                results.extend(self._verify_images(rule, request, lookup, verifier, outcome))
                continue
            ctx: Any = None
            if rule.needs_context:
                ctx = self._prepare(rule, request, lookup)
                if isinstance(ctx, Verdict):
                    results.append(self._result(rule, request, ctx, facts))
                    continue
            if rule.generator is not None:
                try:
                    outcome.generated.extend(rule.generator.objects(ctx, lookup))
                    verdict = Verdict("pass", "generated")
                except VariableError as err:
                    verdict = Verdict("error", str(err))
                results.append(self._result(rule, request, verdict, facts))
                continue
            validator = rule.validator
            assert validator is not None  # noqa: S101 - every remaining rule validates
            if isinstance(validator, CelValidator):
                verdict = validator.run(request, lookup)
            elif ctx is not None:
                verdict = validator.check(resource, _constant(ctx))
            else:
                verdict = validator.check(resource, _factory(self, rule, request, lookup, facts))
            results.append(self._result(rule, request, verdict, facts))
        return outcome

    def _verify_images(
        self, rule: Rule, request: Request, lookup: Lookup | None, verifier: Any, outcome: Outcome
    ) -> list[RuleResult]:
        """An entry's own `failureAction` decides whether its failures block (Kyverno 1.13+,
        where it wins over the deprecated policy-level action); entries without one follow
        the policy's action, namespace overrides included (Audit unless set)."""
        fixed = rule.fixed_enforce
        default = "Enforce" if (self._enforced(rule, request) if fixed is None else fixed) else "Audit"
        entries = [_with_failure_action(e, default) for e in rule.verify_images or []]
        if verifier is None:
            verdict = Verdict("error", "image verification needs a configured verifier")
            result = self._result(rule, request, verdict, _facts.get(request))
            result.enforce = any(_enforce(e["failureAction"]) for e in entries)
            return [result]
        from policies.images.kyverno import verify_images_rule  # the images helper's part, loaded on use

        results, patched = verify_images_rule(self.name, rule.name, entries, request, verifier)
        if patched is not None:
            outcome.patched = patched
        return results

    def mutate(self, request: Request, lookup: Lookup | None = None) -> Outcome:
        """Mutate rules in order. Patches never modify the request's object: `patched` is
        a new document that shares the sub-trees no rule touched with it (no deep copy
        per admission; callers that modify `patched` in place copy it first)."""
        outcome = Outcome()
        if not self.has_mutate or request.object is None:
            return outcome
        facts = _facts.get(request)
        rules = self._candidates(request, facts)
        current: Obj = request.object
        for rule in rules:
            if rule.mutator is None:
                continue
            if self._cel_skip(rule, request, lookup):
                outcome.results.append(self._result(rule, request, Verdict("skip", "celPreconditions not met"), facts))
                continue
            ctx = self._prepare(rule, request, lookup, current)
            if isinstance(ctx, Verdict):
                outcome.results.append(self._result(rule, request, ctx, facts))
                continue
            try:
                patched = rule.mutator.apply(current, ctx)
            except GlobalSkip as err:
                outcome.results.append(self._result(rule, request, Verdict("skip", str(err)), facts))
                continue
            except (VariableError, ValueError, KeyError, IndexError) as err:
                outcome.results.append(self._result(rule, request, Verdict("error", f"mutation failed: {err}"), facts))
                continue
            if patched == current:
                outcome.results.append(self._result(rule, request, Verdict("skip", "no patches applied"), facts))
                continue
            current = patched
            outcome.results.append(self._result(rule, request, Verdict("pass", "mutated"), facts))
        if current is not request.object:
            outcome.patched = current
        return outcome


class _Facts:
    """What every rule of every policy derives from the same request, derived once."""

    __slots__ = ("kind", "group", "version", "name", "plan_key", "context")

    def __init__(self, req: Request) -> None:
        self.kind = req.kind
        self.group, self.version = group_version(str(req.resource.get("apiVersion", "")))
        self.name = resource_name(req)
        # What decides which rules match when they look at nothing else (KyvernoPolicy._plans)
        self.plan_key = (self.kind, self.group, self.version, req.subresource, req.operation)
        self.context: Callable[[], dict[str, Any]] = lambda: request_context(req)


class _LastFacts(threading.local):
    """The facts of the last request seen (per thread)."""

    request: Request | None = None
    facts: _Facts | None = None

    def get(self, req: Request) -> _Facts:
        facts = self.facts
        if self.request is not req or facts is None:
            facts = _Facts(req)
            self.request, self.facts = req, facts
        return facts


_facts = _LastFacts()


def resource_name(req: Request) -> str:
    """`Kind/namespace/name` (or `Kind/name`) of the request's object, for messages."""
    obj = req.resource
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    kind = obj.get("kind", "")
    return f"{kind}/{ns}/{meta.get('name', '')}" if ns else f"{kind}/{meta.get('name', '')}"


def _constant(ctx: dict[str, Any]) -> Callable[[], Any]:
    return lambda: ctx


def _factory(
    policy: KyvernoPolicy, rule: Rule, req: Request, lookup: Lookup | None, facts: _Facts
) -> Callable[[], Any]:
    """A lazily built context: pattern rules without variables never build one."""
    if not rule.context and not policy.preset:
        return facts.context  # the request's shared document (see `_context`)
    cache: list[Any] = []

    def get() -> Any:
        if not cache:
            cache.append(policy._context(rule, req, lookup))
        return cache[0]

    return get


def _set(ctx: dict[str, Any], dotted: str, value: Any) -> None:
    from policies.kyverno.context import set_path

    set_path(ctx, dotted, value)


def compile_policy(doc: Obj) -> KyvernoPolicy:
    return KyvernoPolicy(doc)
