"""ValidatingAdmissionPolicy (+ bindings) and Kyverno's ValidatingPolicy, compiled once.

Both kinds share one shape: matchConstraints decide whether a request concerns the
policy at all (no result when not), matchConditions whether it applies (a `skip` result
when one is false), then every validation runs and a false one fails the request with
its message. `validationActions` decide whether a failure blocks (Deny) or only reports
(Warn, Audit); `failurePolicy` whether an expression that errors blocks (Fail) or is
ignored (Ignore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controllers.selectors import label_selector_from_dict
from policies.cel.matching import constraints_match, possible_resources, resource_of
from policies.cel.program import Activation, CelError, EvalError, Expression, activation, compile_variables
from policies.types import Lookup, Obj, Outcome, Request, RuleResult, Status


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str = ""


@dataclass(frozen=True)
class _Validation:
    expression: Expression
    message: str
    message_expression: Expression | None

    def failure_message(self, context: Activation) -> str:
        if self.message_expression is not None:
            try:
                text = self.message_expression.evaluate(context)
            except EvalError:
                text = None
            if isinstance(text, str) and text.strip() and "\n" not in text.strip():
                return text.strip()
        return self.message or f"failed expression: {self.expression.source}"


class Validator:
    """matchConditions + validations of one policy (or one autogen variant of it)."""

    def __init__(
        self,
        spec: Obj,
        where: str,
        controller: str | None = None,
        conditions_key: str = "matchConditions",
        validations_key: str = "validations",
    ) -> None:
        variables = compile_variables(spec.get("variables"), where, controller)
        self.conditions: list[tuple[str, Expression]] = []
        for i, cond in enumerate(spec.get(conditions_key) or []):
            name = str(cond.get("name") or i)
            expr = Expression(cond.get("expression", ""), f"{where}.{conditions_key}[{i}]", variables, controller)
            self.conditions.append((name, expr))
        self.validations: list[_Validation] = []
        for i, val in enumerate(spec.get(validations_key) or []):
            at = f"{where}.{validations_key}[{i}]"
            message_expression = None
            if val.get("messageExpression"):
                message_expression = Expression(
                    val["messageExpression"], f"{at}.messageExpression", variables, controller
                )
            expression = Expression(val.get("expression", ""), f"{at}.expression", variables, controller)
            self.validations.append(_Validation(expression, str(val.get("message") or "").strip(), message_expression))

    def run(self, context: Activation, fail_on_error: bool = True) -> Verdict:
        for name, cond in self.conditions:
            try:
                if not cond.check(context):
                    return Verdict("skip", f"match condition {name} is false")
            except EvalError as e:
                return Verdict("error", f"match condition {name}: {e}") if fail_on_error else Verdict("skip")
        failures: list[str] = []
        errors: list[str] = []
        for validation in self.validations:
            try:
                if not validation.expression.check(context):
                    failures.append(validation.failure_message(context))
            except EvalError as e:
                errors.append(str(e))
        if errors and fail_on_error:
            # failurePolicy Fail: an expression that cannot be evaluated rejects the
            # request like a false one (and the Kyverno CLI reports it as a failure).
            failures.extend(errors)
        return Verdict("fail", "; ".join(failures)) if failures else Verdict("pass")


@dataclass
class Params:
    """A binding's (or rule's) paramKind + paramRef: which objects `params` is bound to."""

    api_version: str
    kind: str
    ref: Obj
    where: str

    @classmethod
    def from_spec(cls, param_kind: Obj | None, param_ref: Obj | None, where: str) -> Params | None:
        if not param_kind:
            return None
        if not param_ref:
            raise CelError(f"{where}: paramKind is set but no paramRef says which object to use")
        return cls(str(param_kind.get("apiVersion") or ""), str(param_kind.get("kind") or ""), param_ref, where)

    def resolve(self, request: Request, lookup: Lookup | None) -> list[Obj]:
        """The parameter objects to evaluate with (empty: none found)."""
        if lookup is None:
            return []
        namespace = str(self.ref.get("namespace") or "")
        spaces = [namespace] if namespace else [request.namespace, ""] if request.namespace else [""]
        name = self.ref.get("name")
        for ns in spaces:
            if name:
                found = lookup.get(self.api_version, self.kind, str(name), ns)
                if found:
                    return [found]
                continue
            selector = label_selector_from_dict(self.ref.get("selector") or {})
            items = [
                o
                for o in lookup.list(self.api_version, self.kind, ns)
                if selector.matches(((o.get("metadata") or {}).get("labels")) or {})
            ]
            if items:
                return items
        return []

    @property
    def deny_when_missing(self) -> bool:
        return str(self.ref.get("parameterNotFoundAction") or "Deny") == "Deny"


@dataclass
class Evaluation:
    """One way a policy judges a request: its rule name, constraints, checks and actions."""

    rule: str
    constraints: list[Obj | None]
    validator: Validator
    actions: frozenset[str]
    fail_on_error: bool
    params: Params | None = None
    # The resources the constraints can match at all (None: any), tested first: most
    # requests concern a kind a given policy or autogen variant never looks at.
    resources: frozenset[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.resources = possible_resources(self.constraints)

    def evaluate(self, request: Request, lookup: Lookup | None) -> Verdict | None:
        if self.resources is not None and resource_of(request.kind) not in self.resources:
            return None
        if not all(constraints_match(c, request, lookup) for c in self.constraints):
            return None
        context = activation(request, lookup)
        if self.params is None:
            context.add_variable("params", None)
            return self.validator.run(context, self.fail_on_error)
        objects = self.params.resolve(request, lookup)
        if not objects:
            if self.params.deny_when_missing:
                return Verdict("fail", f"no params found for {self.params.where} (parameterNotFoundAction Deny)")
            return Verdict("skip", "no params found")
        verdicts = []
        for param in objects:
            context.add_variable("params", param)
            verdicts.append(self.validator.run(context, self.fail_on_error))
        context.add_variable("params", None)
        for status in ("fail", "error", "pass"):
            picked = [v for v in verdicts if v.status == status]
            if picked:
                return Verdict(status, "; ".join(v.message for v in picked if v.message))
        return verdicts[0]


@dataclass
class CelPolicy:
    """A compiled ValidatingAdmissionPolicy or ValidatingPolicy (types.Policy)."""

    name: str
    kind: str
    evaluations: list[Evaluation] = field(default_factory=list)

    def mutate(self, request: Request, lookup: Lookup | None) -> Outcome:
        return Outcome()

    def validate(self, request: Request, lookup: Lookup | None) -> Outcome:
        results: list[RuleResult] = []
        for ev in self.evaluations:
            verdict = ev.evaluate(request, lookup)
            if verdict is None:
                continue
            results.append(
                RuleResult(
                    policy=self.name,
                    rule=ev.rule,
                    status=verdict.status,
                    message=verdict.message,
                    resource=resource_key(request),
                    enforce="Deny" in ev.actions,
                    policy_kind=self.kind,
                )
            )
        return Outcome(results=results)


def resource_key(request: Request) -> str:
    return "/".join(p for p in (request.kind, request.namespace, request.name) if p)


def _actions(value: Any, where: str) -> frozenset[str]:
    actions = frozenset(str(a) for a in (value or ["Deny"]))
    unknown = actions - {"Deny", "Warn", "Audit"}
    if unknown:
        raise CelError(f"{where}.validationActions: unknown action(s) {sorted(unknown)} (Deny, Warn, Audit)")
    if {"Deny", "Warn"} <= actions:
        raise CelError(f"{where}.validationActions: Deny and Warn may not be used together")
    return actions


def _fail_on_error(spec: Obj, where: str) -> bool:
    policy = str(spec.get("failurePolicy") or "Fail")
    if policy not in ("Fail", "Ignore"):
        raise CelError(f"{where}.failurePolicy: must be Fail or Ignore, not {policy!r}")
    return policy == "Fail"


def compile_vap(doc: Obj, bindings: list[Obj]) -> CelPolicy:
    """A ValidatingAdmissionPolicy with the bindings naming it; unbound, it evaluates as
    the Kyverno CLI does, as if bound with Deny."""
    name = str((doc.get("metadata") or {}).get("name") or "")
    spec = doc.get("spec") or {}
    where = f"ValidatingAdmissionPolicy {name}: spec"
    validator = Validator(spec, where)
    fail = _fail_on_error(spec, where)
    policy = CelPolicy(name, "ValidatingAdmissionPolicy")
    if not bindings:
        policy.evaluations.append(
            Evaluation(name, [spec.get("matchConstraints")], validator, frozenset({"Deny"}), fail)
        )
        if spec.get("paramKind"):
            policy.evaluations.clear()  # a parameterised policy does nothing until bound
    for binding in bindings:
        bname = str((binding.get("metadata") or {}).get("name") or "")
        bspec = binding.get("spec") or {}
        bwhere = f"ValidatingAdmissionPolicyBinding {bname}: spec"
        params = Params.from_spec(spec.get("paramKind"), bspec.get("paramRef"), f"binding {bname}")
        policy.evaluations.append(
            Evaluation(
                bname,
                [spec.get("matchConstraints"), bspec.get("matchResources")],
                validator,
                _actions(bspec.get("validationActions"), bwhere),
                fail,
                params,
            )
        )
    return policy


# Kyverno autogen: pod controllers a ValidatingPolicy on pods also covers, by the
# template path they keep pods under.
_CONTROLLERS = {
    "daemonsets": ("apps", "pods"),
    "deployments": ("apps", "pods"),
    "replicasets": ("apps", "pods"),
    "statefulsets": ("apps", "pods"),
    "jobs": ("batch", "pods"),
    "cronjobs": ("batch", "cronjobs"),
}
_KIND_TO_CONTROLLER = {
    "DaemonSet": "daemonsets",
    "Deployment": "deployments",
    "ReplicaSet": "replicasets",
    "StatefulSet": "statefulsets",
    "Job": "jobs",
    "CronJob": "cronjobs",
}


def _can_autogen(match: Obj | None) -> bool:
    """Only a policy on exactly core/v1 pods, with no selectors or exclusions, is carried
    over to pod controllers (as Kyverno decides)."""
    if not match or match.get("excludeResourceRules"):
        return False
    for key in ("namespaceSelector", "objectSelector"):
        sel = match.get(key) or {}
        if sel.get("matchLabels") or sel.get("matchExpressions"):
            return False
    rules = match.get("resourceRules") or []
    if len(rules) != 1 or rules[0].get("resourceNames"):
        return False
    rule = rules[0]
    return rule.get("apiGroups") == [""] and rule.get("apiVersions") == ["v1"] and rule.get("resources") == ["pods"]


def _autogen_controllers(spec: Obj) -> list[str]:
    if not _can_autogen(spec.get("matchConstraints")):
        return []
    configured = ((spec.get("autogen") or {}).get("podControllers") or {}).get("controllers")
    if configured is None:
        return sorted(_CONTROLLERS)
    names = {_KIND_TO_CONTROLLER.get(str(c), str(c).lower()) for c in configured}
    return sorted(n for n in names if n in _CONTROLLERS)


def compile_validating_policy(doc: Obj) -> CelPolicy:
    """A Kyverno ValidatingPolicy, with its autogen variants for pod controllers."""
    name = str((doc.get("metadata") or {}).get("name") or "")
    kind = str(doc.get("kind") or "ValidatingPolicy")
    spec = doc.get("spec") or {}
    where = f"{kind} {name}: spec"
    actions = _actions(spec.get("validationActions"), where)
    fail = _fail_on_error(spec, where)
    policy = CelPolicy(name, kind)
    policy.evaluations.append(Evaluation(name, [spec.get("matchConstraints")], Validator(spec, where), actions, fail))
    controllers = _autogen_controllers(spec)
    operations = ((spec.get("matchConstraints") or {}).get("resourceRules") or [{}])[0].get("operations")
    for template in ("pods", "cronjobs"):
        targets = [c for c in controllers if _CONTROLLERS[c][1] == template]
        if not targets:
            continue
        groups = sorted({_CONTROLLERS[c][0] for c in targets})
        rules = [
            {
                "apiGroups": [g],
                "apiVersions": ["v1"],
                "operations": operations,
                "resources": [c for c in targets if _CONTROLLERS[c][0] == g],
            }
            for g in groups
        ]
        rule = f"autogen-{name}" if template == "pods" else f"autogen-cronjobs-{name}"
        validator = Validator(spec, f"{where} ({rule})", controller=template)
        policy.evaluations.append(Evaluation(rule, [{"resourceRules": rules}], validator, actions, fail))
    return policy
