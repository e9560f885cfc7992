"""Compiled CEL expressions and the per-request activation they run against.

Each expression is rewritten (syntax.py) and compiled once, when its policy is compiled.
Converting the admitted object into the evaluator's values is the costly part of an
evaluation, so the activation (a `cel.Context` holding `object`, `oldObject`, `request`,
`namespaceObject` and the library) is built once per request and shared by every CEL
policy that evaluates it on this thread."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import cel

from policies.cel.library import FUNCTIONS
from policies.cel.matching import resource_of
from policies.cel.syntax import CelSyntaxError, autogen, rewrite
from policies.types import Lookup, Obj, Request


class CelError(ValueError):
    """A CEL policy that cannot be compiled; the message names the policy and expression."""


class EvalError(Exception):
    """An expression that failed at evaluation time (a missing field, a bad overload...)."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if line.startswith("ERROR:"):
            return line.removeprefix("ERROR:").strip()
    return text.splitlines()[0] if text else type(error).__name__


class Expression:
    """One CEL expression of a policy, compiled once."""

    def __init__(
        self,
        source: str,
        where: str,
        variables: Mapping[str, str] | None = None,
        controller: str | None = None,
    ) -> None:
        """`where` names the policy and field for errors; `controller` ("pods" or
        "cronjobs") applies Kyverno's autogen rewrite for pod controllers first."""
        self.source = str(source).strip()
        self.where = where
        try:
            text = autogen(self.source, controller == "cronjobs") if controller else self.source
            self.text = rewrite(text, variables)
            self._program = cel.compile(self.text)
        except (CelSyntaxError, ValueError) as e:
            raise CelError(f"{where}: cannot compile CEL expression {self.source!r}: {_first_line(e)}") from None

    def evaluate(self, context: cel.Context) -> Any:
        try:
            return self._program.execute(context)
        except Exception as e:  # the evaluator raises builtin types for every failure
            raise EvalError(f"expression {self.source!r} failed: {_first_line(e)}") from None

    def check(self, context: cel.Context) -> bool:
        """A validation or condition: True or False, anything else is an error."""
        value = self.evaluate(context)
        if not isinstance(value, bool):
            raise EvalError(f"expression {self.source!r} must evaluate to bool, got {type(value).__name__}")
        return value


def compile_variables(variables: list[Obj] | None, where: str, controller: str | None = None) -> dict[str, str]:
    """name -> rewritten text of a policy's `variables`, each able to use the earlier ones;
    each is compiled once so a broken one is reported even if nothing uses it."""
    out: dict[str, str] = {}
    for i, var in enumerate(variables or []):
        name = str(var.get("name") or "")
        if not name:
            raise CelError(f"{where}.variables[{i}]: a variable needs a name")
        expr = Expression(str(var.get("expression") or ""), f"{where}.variables[{i}] ({name})", out, controller)
        out[name] = expr.text
    return out


def request_map(request: Request) -> Obj:
    """AdmissionRequest as CEL's `request` variable shows it."""
    obj = request.resource
    group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
    kind = {"group": group, "version": version, "kind": request.kind}
    resource = {"group": group, "version": version, "resource": resource_of(request.kind)}
    return {
        "uid": "",
        "kind": kind,
        "resource": resource,
        "subResource": request.subresource,
        "requestKind": kind,
        "requestResource": resource,
        "requestSubResource": request.subresource,
        "name": request.name,
        "namespace": request.namespace,
        "operation": request.operation,
        "userInfo": {"username": request.username, "groups": list(request.groups)},
        "dryRun": request.dry_run,
        "options": {},
    }


def namespace_object(request: Request, lookup: Lookup | None) -> Obj | None:
    """The request's Namespace: read through `lookup` when it has it, else built from the
    labels the request carries. None for cluster-scoped objects."""
    if not request.namespace:
        return None
    found = lookup.get("v1", "Namespace", request.namespace) if lookup is not None else None
    if found:
        return found
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": request.namespace, "labels": dict(request.namespace_labels)},
    }


_local = threading.local()


def activation(request: Request, lookup: Lookup | None) -> cel.Context:
    """The evaluation context for `request`, reused while the same request is evaluated.
    Callers set `params` on it themselves (it differs per binding)."""
    cached = getattr(_local, "last", None)
    if cached is not None and cached[0] is request and cached[1] is lookup:
        return cached[2]
    context = cel.Context(
        variables={
            "object": request.object,
            "oldObject": request.old_object,
            "request": request_map(request),
            "namespaceObject": namespace_object(request, lookup),
            "params": None,
        },
        functions=FUNCTIONS,
    )
    _local.last = (request, lookup, context)
    return context
