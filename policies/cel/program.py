"""Compiled CEL expressions and the per-request activation they run against.

Each expression is rewritten (syntax.py) and compiled once, when its policy is compiled.
Converting the admitted object into the evaluator's values is the costly part of an
evaluation, and so is selecting a field (the evaluator copies the selected subtree), so:

- the activation (`object`, `oldObject`, `request`, `namespaceObject`, `params`, the
  library) is built once per request, shared by every CEL policy that evaluates it on
  this thread, and fills in a variable only when an expression first needs it;
- each expression also runs in a form where its paths into the object
  (`object.spec.template.spec`) read variables bound to those subtrees, bound once per
  request. When that form fails (a path the object lacks, ...) the expression as
  written runs instead, so errors and their messages are exactly the plain ones."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import cel

from policies.cel.library import FUNCTIONS
from policies.cel.matching import resource_of
from policies.cel.syntax import CelSyntaxError, alias_paths, autogen, rewrite
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
            self._names = tuple(self._program.variables())
            aliased, used = alias_paths(self.text, _alias_name)
            self._fast = cel.compile(aliased) if used else None
            self._fast_names = tuple(self._fast.variables()) if self._fast is not None else ()
        except (CelSyntaxError, ValueError) as e:
            raise CelError(f"{where}: cannot compile CEL expression {self.source!r}: {_first_line(e)}") from None

    def evaluate(self, activation: Activation) -> Any:
        if self._fast is not None:
            try:
                return self._fast.execute(activation.prepare(self._fast_names))
            except Exception:  # noqa: S110 - the expression as written says what failed
                pass
        try:
            return self._program.execute(activation.prepare(self._names))
        except Exception as e:  # the evaluator raises builtin types for every failure
            raise EvalError(f"expression {self.source!r} failed: {_first_line(e)}") from None

    def check(self, activation: Activation) -> bool:
        """A validation or condition: True or False, anything else is an error."""
        value = self.evaluate(activation)
        if not isinstance(value, bool):
            raise EvalError(f"expression {self.source!r} must evaluate to bool, got {type(value).__name__}")
        return value


# Field paths into the admitted object that expressions read through a variable (its
# value, or for `has(path)` whether the last field is present), by the variable's name;
# registered as expressions compile, with names CEL expressions never use.
_ALIASES: dict[str, tuple[tuple[str, ...], bool]] = {}
_ALIAS_NAMES: dict[tuple[tuple[str, ...], bool], str] = {}


_ALIAS_LOCK = threading.Lock()


def _alias_name(path: tuple[str, ...], presence: bool) -> str:
    key = (path, presence)
    name = _ALIAS_NAMES.get(key)
    if name is None:
        with _ALIAS_LOCK:  # policies may compile on several threads: one name per path
            name = _ALIAS_NAMES.get(key)
            if name is None:
                name = f"_{'has' if presence else 'path'}{len(_ALIAS_NAMES)}"
                _ALIASES[name] = key  # readable before any expression can use the name
                _ALIAS_NAMES[key] = name
    return name


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


_MISSING = object()


def _walk(value: Any, fields: tuple[str, ...]) -> Any:
    """The value at `fields` below `value`, or _MISSING where the evaluator would fail."""
    for name in fields:
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


# Variables some activation has needed: later activations bind them up front. Adding a
# variable to a context the evaluator has already run copies the whole context (every
# variable and function), so binding on first use costs once per request per name.
_WANTED: set[str] = {"params"}
_WHOLE = frozenset({"object", "oldObject"})


class Activation:
    """The variables expressions of one request see. Those earlier requests needed are
    bound when it is created (in one step); others the first time an expression needs
    them (converting the object costs, and many expressions read only part of it)."""

    __slots__ = ("request", "lookup", "context", "bound", "params")

    def __init__(self, request: Request, lookup: Lookup | None) -> None:
        self.request = request
        self.lookup = lookup
        self.bound: set[str] = set(_WANTED)
        self.params: Any = None
        variables = {}
        for name in self.bound:
            value = self._value(name)
            if value is not _MISSING:
                variables[name] = value
        self.context = cel.Context(variables=variables, functions=FUNCTIONS)

    def add_variable(self, name: str, value: Any) -> None:
        """Set `params` (it differs per binding); unchanged, the context is left alone."""
        if name == "params":
            if value is self.params:
                return
            self.params = value
        self.context.add_variable(name, value)
        self.bound.add(name)

    def prepare(self, names: tuple[str, ...]) -> cel.Context:
        """The context with every variable in `names` this request has added."""
        missing = [name for name in names if name not in self.bound]
        if missing:
            values = {}
            for name in missing:
                self.bound.add(name)
                if name not in _WHOLE:  # converting a whole object is left to requests that need it
                    _WANTED.add(name)
                value = self._value(name)
                if value is not _MISSING:
                    values[name] = value
            if values:
                self.context.update(values)
        return self.context

    def _value(self, name: str) -> Any:
        request = self.request
        if name == "object":
            return request.object
        if name == "oldObject":
            return request.old_object
        if name == "request":
            return request_map(request)
        if name == "namespaceObject":
            return namespace_object(request, self.lookup)
        if name == "params":
            return None
        alias = _ALIASES.get(name)
        if alias is None:  # a name a macro binds, or one no activation provides
            return _MISSING
        path, presence = alias
        root = request.object if path[0] == "object" else request.old_object
        if not presence:
            return _walk(root, path[1:])
        parent = _walk(root, path[1:-1])
        # has() on something other than a map is an error: left unbound, so it is one
        return path[-1] in parent if isinstance(parent, dict) else _MISSING


_local = threading.local()


def activation(request: Request, lookup: Lookup | None) -> Activation:
    """The activation for `request`, reused while the same request is evaluated.
    Callers set `params` on it themselves (it differs per binding)."""
    cached = getattr(_local, "last", None)
    if cached is not None and cached.request is request and cached.lookup is lookup:
        return cached
    current = Activation(request, lookup)
    _local.last = current
    return current
