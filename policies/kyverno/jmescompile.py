"""JMESPath expressions compiled into Python closures.

The `jmespath` package interprets its syntax tree node by node on every search, and
admission evaluates the same few dozen expressions (field paths, `[]` projections,
multi-selects, `||` defaults, filters, function calls) for every request. Turning
each tree into nested closures once removes that dispatch; semantics follow the
package's `TreeInterpreter` exactly (node types it has no closure for are handed to
the interpreter itself, so nothing is approximated)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from numbers import Number
from typing import Any

from jmespath import functions, visitor

Evaluator = Callable[[Any], Any]
Node = dict[str, Any]


def _is_false(value: Any) -> bool:
    """JMESPath falsiness (explicit comparisons: 0 is true, unlike Python)."""
    return value == "" or value == [] or value == {} or value is None or value is False


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, Number)


def _comparable(value: Any) -> bool:
    return _is_number(value) or isinstance(value, str)


_ORDERING = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


class Compiler:
    """Builds closures for one function table (Kyverno's custom functions)."""

    def __init__(self, options: Any) -> None:
        self.functions = options.custom_functions
        self.interpreter = visitor.TreeInterpreter(options)

    def compile(self, node: Node) -> Evaluator:
        method = getattr(self, f"_{node['type']}", None)
        if method is None:
            return self._interpreted(node)
        result: Evaluator = method(node)
        return result

    def _interpreted(self, node: Node) -> Evaluator:
        visit = self.interpreter.visit
        return lambda value: visit(node, value)

    # ------------------------------------------------------------ paths

    def _field(self, node: Node) -> Evaluator:
        name = node["value"]
        return lambda value: value.get(name) if isinstance(value, dict) else None

    def _subexpression(self, node: Node) -> Evaluator:
        children = node["children"]
        if all(c["type"] == "field" for c in children):
            names = tuple(c["value"] for c in children)

            def walk(value: Any) -> Any:
                for name in names:
                    if not isinstance(value, dict):
                        return None
                    value = value.get(name)
                return value

            return walk
        return self._chain([self.compile(c) for c in children])

    def _chain(self, steps: list[Evaluator]) -> Evaluator:
        if len(steps) == 2:
            first, second = steps
            return lambda value: second(first(value))

        def run(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value

        return run

    def _index_expression(self, node: Node) -> Evaluator:
        return self._chain([self.compile(c) for c in node["children"]])

    def _pipe(self, node: Node) -> Evaluator:
        return self._chain([self.compile(c) for c in node["children"]])

    def _current(self, node: Node) -> Evaluator:
        return lambda value: value

    _identity = _current

    def _literal(self, node: Node) -> Evaluator:
        literal = node["value"]
        return lambda _value: literal

    def _index(self, node: Node) -> Evaluator:
        index = node["value"]

        def get(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[index]
            except IndexError:
                return None

        return get

    def _slice(self, node: Node) -> Evaluator:
        window = slice(*node["children"])
        return lambda value: value[window] if isinstance(value, list) else None

    # ------------------------------------------------------------ projections

    def _flatten(self, node: Node) -> Evaluator:
        base = self.compile(node["children"][0])

        def flatten(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            merged: list[Any] = []
            for element in items:
                if isinstance(element, list):
                    merged.extend(element)
                else:
                    merged.append(element)
            return merged

        return flatten

    def _projection(self, node: Node) -> Evaluator:
        left, right = node["children"]
        base = self.compile(left)
        if right["type"] == "identity":

            def keep(value: Any) -> Any:
                items = base(value)
                if not isinstance(items, list):
                    return None
                return [e for e in items if e is not None]

            return keep
        each = self.compile(right)

        def project(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            collected = []
            for element in items:
                current = each(element)
                if current is not None:
                    collected.append(current)
            return collected

        return project

    def _value_projection(self, node: Node) -> Evaluator:
        left, right = node["children"]
        base, each = self.compile(left), self.compile(right)

        def project(value: Any) -> Any:
            obj = base(value)
            if not isinstance(obj, dict):
                return None
            collected = []
            for element in obj.values():
                current = each(element)
                if current is not None:
                    collected.append(current)
            return collected

        return project

    def _filter_projection(self, node: Node) -> Evaluator:
        left, right, condition = node["children"]
        base, each, test = self.compile(left), self.compile(right), self.compile(condition)

        def project(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            collected = []
            for element in items:
                if not _is_false(test(element)):
                    current = each(element)
                    if current is not None:
                        collected.append(current)
            return collected

        return project

    def _multi_select_list(self, node: Node) -> Evaluator:
        parts = [self.compile(c) for c in node["children"]]
        return lambda value: None if value is None else [p(value) for p in parts]

    def _multi_select_dict(self, node: Node) -> Evaluator:
        parts = [(c["value"], self.compile(c["children"][0])) for c in node["children"]]
        return lambda value: None if value is None else {k: p(value) for k, p in parts}

    # ------------------------------------------------------------ logic

    def _or_expression(self, node: Node) -> Evaluator:
        left, right = (self.compile(c) for c in node["children"])

        def either(value: Any) -> Any:
            matched = left(value)
            return right(value) if _is_false(matched) else matched

        return either

    def _and_expression(self, node: Node) -> Evaluator:
        left, right = (self.compile(c) for c in node["children"])

        def both(value: Any) -> Any:
            matched = left(value)
            return matched if _is_false(matched) else right(value)

        return both

    def _not_expression(self, node: Node) -> Evaluator:
        inner = self.compile(node["children"][0])

        def negate(value: Any) -> Any:
            result = inner(value)
            if _is_number(result) and result == 0:
                return False
            return not result

        return negate

    def _comparator(self, node: Node) -> Evaluator:
        left, right = (self.compile(c) for c in node["children"])
        op = node["value"]
        if op == "eq":
            return lambda value: visitor._equals(left(value), right(value))
        if op == "ne":
            return lambda value: not visitor._equals(left(value), right(value))
        compare = _ORDERING[op]

        def order(value: Any) -> Any:
            a, b = left(value), right(value)
            if not (_comparable(a) and _comparable(b)):
                return None
            return compare(a, b)

        return order

    def _function_expression(self, node: Node) -> Evaluator:
        if any(c["type"] == "expref" for c in node["children"]):
            return self._interpreted(node)  # sort_by & co. call back into the interpreter
        name = node["value"]
        args = [self.compile(c) for c in node["children"]]
        call = self.functions.call_function
        checks = self._argument_types(name, len(args))
        if checks is None:
            return lambda value: call(name, [a(value) for a in args])
        function, instance = self.functions.FUNCTION_TABLE[name]["function"], self.functions

        def direct(value: Any) -> Any:
            resolved = [a(value) for a in args]
            for arg, allowed in zip(resolved, checks, strict=True):
                if allowed is not None and type(arg).__name__ not in allowed:
                    return call(name, resolved)  # raises the package's own type error
            return function(instance, *resolved)

        return direct

    def _argument_types(self, name: str, count: int) -> list[frozenset[str] | None] | None:
        """The Python type names each argument may have (None: any), when the call can
        skip the package's generic validation: a known function, the right number of
        arguments, no element-type constraints. Otherwise None (validated per call)."""
        spec = self.functions.FUNCTION_TABLE.get(name)
        if spec is None:
            return None
        signature = spec["signature"]
        if len(signature) != count or any(arg.get("variadic") for arg in signature):
            return None
        checks: list[frozenset[str] | None] = []
        for arg in signature:
            types = arg["types"]
            if any("-" in t for t in types):
                return None
            checks.append(frozenset(n for t in types for n in functions.REVERSE_TYPES_MAP[t]) if types else None)
        return checks
