"""Kyverno validation patterns, compiled once per rule.

A pattern is an overlay of the resource: keys must exist and values must match,
with string values that carry wildcards (`*`, `?`), operators (`>`, `<`, `>=`, `<=`,
`!`), alternatives (`|`), conjunctions (`&`), ranges (`1-10`, `1!-10`), quantities
and durations. Keys may carry anchors:

- `(key)` conditional: if the value does not match, the enclosing object is skipped;
- `<(key)` global: if it does not match, the whole rule is skipped;
- `=(key)` equality: checked only when the key is present;
- `^(key)` existence: at least one list element must match;
- `X(key)` negation: the key must be absent.

Compilation turns the YAML into a tree of small node objects so that a request only
walks the tree; nothing is parsed or copied per request."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from policies.kyverno.values import (
    has_wildcard,
    number_string,
    parse_duration,
    quantity,
    wildcard_match,
    wildcard_regex,
)

# Outcome kinds of a pattern mismatch. Conditional and global anchor misses skip the rule.
FAIL = "fail"
COND = "cond"
GLOBAL = "global"
NEG = "neg"

_ANCHOR = re.compile(r"^(\(|<\(|=\(|\^\(|X\(|\+\()(.+)\)$")
_ANCHOR_KIND = {"(": "cond", "<(": "global", "=(": "equality", "^(": "existence", "X(": "negation", "+(": "add"}
_RANGE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?[A-Za-z]*)\s*(!?-)\s*([+-]?\d+(?:\.\d+)?[A-Za-z]*)\s*$")


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why a resource does not match: the kind decides fail vs skip, path names the field."""

    kind: str
    path: str
    detail: str

    @property
    def skips(self) -> bool:
        return self.kind in (COND, GLOBAL)


def parse_anchor(key: str) -> tuple[str, str]:
    """(`cond`|`global`|`equality`|`existence`|`negation`|`add`|``, bare key)."""
    m = _ANCHOR.match(key)
    if not m:
        return "", key
    return _ANCHOR_KIND[m.group(1)], m.group(2)


# ---------------------------------------------------------------- scalar patterns


def _cmp(op: str, result: int) -> bool:
    if op == "==":
        return result == 0
    if op == "!":
        return result != 0
    if op == ">":
        return result > 0
    if op == "<":
        return result < 0
    if op == ">=":
        return result >= 0
    return result <= 0


def _sign(a: Decimal, b: Decimal) -> int:
    return (a > b) - (a < b)


class _Term:
    """One operator term such as `>=1Gi`, `!*:latest` or `container_t`."""

    __slots__ = ("op", "operand", "duration", "quantity", "wild")

    def __init__(self, op: str, operand: str) -> None:
        self.op = op
        self.operand = operand
        self.duration = parse_duration(operand)
        self.quantity = quantity(operand)
        self.wild = has_wildcard(operand)

    def tester(self) -> Callable[[Any], bool]:
        """`test`, or a faster equivalent for an operand that is only ever a string."""
        if self.duration is None and self.quantity is None and self.op in ("==", "!"):
            return _string_test(self.operand, self.op == "==")
        return self.test

    def test(self, value: Any) -> bool:
        # Kyverno tries a duration, then a quantity, then a string comparison.
        if self.duration is not None:
            text = number_string(value)
            d = parse_duration(text) if text is not None else None
            if d is not None and _cmp(self.op, _sign(d, self.duration)):
                return True
        if self.quantity is not None:
            text = number_string(value)
            q = quantity(text) if text is not None else None
            if q is not None and _cmp(self.op, _sign(q, self.quantity)):
                return True
        if self.op not in ("==", "!"):
            return False
        text = _string_of(value)
        if text is None:
            return False
        matched = wildcard_match(self.operand, text) if self.wild else text == self.operand
        return matched if self.op == "==" else not matched


def _string_test(operand: str, equal: bool) -> Callable[[Any], bool]:
    """`_Term.test` for an operand that is neither a duration nor a quantity (most are:
    "?*", "!*:latest", "container_t"): only the string comparison remains."""
    if has_wildcard(operand):
        full = wildcard_regex(operand).fullmatch

        def wild(value: Any) -> bool:
            text = value if isinstance(value, str) else _string_of(value)
            return text is not None and (full(text) is not None) == equal

        return wild

    def plain(value: Any) -> bool:
        text = value if isinstance(value, str) else _string_of(value)
        return text is not None and (text == operand) == equal

    return plain


def _string_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_e(value)
    return None


def _go_e(value: float) -> str:
    """Go's `FormatFloat(v, 'E', -1, 64)`, e.g. 8080.0 -> "8.08E+03"."""
    if value == 0:
        return "0E+00"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exponent = len(text) - 1 + int(exp)
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}E{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def _compile_term(text: str) -> Callable[[Any], bool]:
    m = _RANGE.match(text)
    if m:
        low, high = _Term(">=", m.group(1)), _Term("<=", m.group(3))
        if m.group(2) == "-":
            return lambda v: low.test(v) and high.test(v)
        below, above = _Term("<", m.group(1)), _Term(">", m.group(3))
        return lambda v: below.test(v) or above.test(v)
    op = "=="
    if len(text) >= 2:
        for candidate in (">=", "<=", ">", "<", "!"):
            if text.startswith(candidate):
                op = candidate
                break
    operand = text[len(op) :].strip() if op != "==" else text
    return _Term(op, operand).tester()


class ScalarPattern:
    """A leaf of a pattern: a string with operators, a number, a bool or null."""

    __slots__ = ("raw", "_alternatives", "_single")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._alternatives: list[list[Callable[[Any], bool]]] = []
        if isinstance(raw, str):
            for alt in raw.split("|"):
                self._alternatives.append([_compile_term(part.strip(" ")) for part in alt.strip(" ").split("&")])
        # Most patterns are one term ("?*", ">=1", "!*:latest") or alternatives of single
        # terms ("RuntimeDefault | Localhost"): tested without the nested loops.
        alternatives = self._alternatives
        self._single: Callable[[Any], bool] | None = None
        if len(alternatives) == 1 and len(alternatives[0]) == 1:
            self._single = alternatives[0][0]
        elif alternatives and all(len(terms) == 1 for terms in alternatives):
            singles = tuple(terms[0] for terms in alternatives)
            self._single = lambda value: any(term(value) for term in singles)

    def matches(self, value: Any) -> bool:
        raw = self.raw
        if isinstance(raw, str):
            if value == raw:
                return True
            if self._single is not None:
                return self._single(value)
            return any(all(term(value) for term in terms) for terms in self._alternatives)
        if isinstance(raw, bool):
            return isinstance(value, bool) and value == raw
        if isinstance(raw, int):
            return _int_matches(value, raw)
        if isinstance(raw, float):
            return _float_matches(value, raw)
        if raw is None:
            return _nil_matches(value)
        if isinstance(raw, dict):
            return isinstance(value, dict)
        return False


def _int_matches(value: Any, pattern: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == pattern
    if isinstance(value, float):
        return value.is_integer() and int(value) == pattern
    if isinstance(value, str):
        try:
            return int(value, 10) == pattern
        except ValueError:
            return False
    return False


def _float_matches(value: Any, pattern: float) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return pattern.is_integer() and int(pattern) == value
    if isinstance(value, float):
        return value == pattern
    if isinstance(value, str):
        try:
            return float(value) == pattern
        except ValueError:
            return False
    return False


def _nil_matches(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value == ""
    return False


# ---------------------------------------------------------------- structural patterns


class Node:
    """A compiled pattern element; `check` returns None when the resource matches.

    `fast` is `check` without building paths and messages, as a closure made once:
    it returns OK, MISS (fail) or SKIP (the Mismatch would skip). Most resources match,
    so `check` runs only after a miss, to say why."""

    __slots__ = ("fast",)

    fast: Callable[[Any], int]

    def check(self, resource: Any, path: str) -> Mismatch | None:
        raise NotImplementedError


# Results of `Node.fast`.
OK = 0
MISS = 1
SKIP = 2


class LeafNode(Node):
    __slots__ = ("scalar",)

    def __init__(self, raw: Any) -> None:
        self.scalar = ScalarPattern(raw)
        matches = self.scalar.matches

        def fast(resource: Any) -> int:
            if isinstance(resource, list):
                for item in resource:
                    if not matches(item):
                        return MISS
                return OK
            return OK if matches(resource) else MISS

        self.fast = fast

    def check(self, resource: Any, path: str) -> Mismatch | None:
        if isinstance(resource, list):
            for item in resource:
                if not self.scalar.matches(item):
                    return Mismatch(FAIL, path, f"resource value '{resource}' does not match '{self.scalar.raw}'")
            return None
        if not self.scalar.matches(resource):
            return Mismatch(FAIL, path, f"resource value '{_show(resource)}' does not match '{self.scalar.raw}'")
        return None


def _show(value: Any) -> str:
    return "<nil>" if value is None else str(value)


class _Entry:
    __slots__ = ("anchor", "key", "node", "raw", "wild")

    def __init__(self, anchor: str, key: str, node: Node, raw: Any) -> None:
        self.anchor = anchor
        self.key = key
        self.node = node
        self.raw = raw
        self.wild = has_wildcard(key)


class MapNode(Node):
    """A mapping: anchors first (conditions decide whether the rest applies), then the
    plain and equality keys, nested objects before scalars so inner conditions skip
    before sibling values fail."""

    __slots__ = ("entries",)

    def __init__(self, pattern: dict[str, Any]) -> None:
        first: list[_Entry] = []
        nested: list[_Entry] = []
        scalars: list[_Entry] = []
        for raw_key in sorted(pattern):
            anchor, key = parse_anchor(raw_key)
            value = pattern[raw_key]
            entry = _Entry(anchor, key, compile_node(value), value)
            if anchor in ("cond", "global", "existence", "negation"):
                first.append(entry)
            elif isinstance(value, dict):
                nested.append(entry)
            else:
                scalars.append(entry)
        first.sort(key=lambda e: 0 if e.anchor in ("cond", "global") else 1)
        self.entries = first + nested + scalars
        self.fast = _map_fast(self.entries)

    def check(self, resource: Any, path: str) -> Mismatch | None:
        if not isinstance(resource, dict):
            return Mismatch(FAIL, path, f"pattern and resource have different structures at {path}")
        for entry in self.entries:
            if entry.wild:
                keys = [k for k in resource if wildcard_match(entry.key, k)] or [entry.key]
                for key in keys:
                    miss = _check_entry(entry, key, resource, path)
                    if miss is not None:
                        return miss
                continue
            miss = _check_entry(entry, entry.key, resource, path)
            if miss is not None:
                return miss
        return None


def _map_fast(entries: list[_Entry]) -> Callable[[Any], int]:
    """A mapping's `fast` as one generated function: each entry's lookup and anchor test,
    scalar values' tests and nested mappings whose code passes through unchanged,
    written out in order (a pattern is walked for every request, and calls per entry,
    value and level dominated the walk). Lists and conditional mappings call their own
    `fast`; wildcard keys and existence anchors `_entry_code`."""
    gen = _Codegen()
    gen.map_body(entries, "r0", 1)
    gen.lines.append(f"    return {OK}")
    source = "\n".join(["def fast(r0):", *gen.lines])
    exec(compile(source, "<pattern>", "exec"), gen.env)  # noqa: S102 - code built from parsed keys
    fast: Callable[[Any], int] = gen.env["fast"]
    return fast


class _Codegen:
    """Lines of a generated `fast`; values it calls are named constants in `env`."""

    # Nested mappings are inlined down to this indentation, then called.
    MAX_DEPTH = 40

    def __init__(self) -> None:
        self.env: dict[str, Any] = {}
        self.lines: list[str] = []
        self.variables = 0

    def const(self, value: Any) -> str:
        name = f"_c{len(self.env)}"
        self.env[name] = value
        return name

    def map_body(self, entries: list[_Entry], r: str, depth: int) -> None:
        """Return from the function when the mapping in variable `r` does not match."""
        pad = "    " * depth
        self.lines += [f"{pad}if not isinstance({r}, dict):", f"{pad}    return {MISS}"]
        for entry in entries:
            key, anchor, node = repr(entry.key), entry.anchor, entry.node
            if entry.wild or anchor == "existence":
                self.lines += [
                    f"{pad}x = {self.const(_entry_generic(entry))}({r})",
                    f"{pad}if x:",
                    f"{pad}    return x",
                ]
            elif anchor in ("", "add"):
                if entry.raw == "*":
                    self.lines += [f"{pad}if {r}.get({key}) is None:", f"{pad}    return {MISS}"]
                else:
                    self.value(node, f"{r}.get({key})", None, depth)
            elif anchor == "equality":
                self.lines.append(f"{pad}if {key} in {r}:")
                self.value(node, f"{r}[{key}]", None, depth + 1)
            elif anchor == "negation":
                self.lines += [f"{pad}if {key} in {r}:", f"{pad}    return {MISS}"]
            elif anchor == "cond":
                self.lines += [f"{pad}if {key} not in {r}:", f"{pad}    return {SKIP}"]
                self.value(node, f"{r}[{key}]", SKIP, depth)
            else:  # global
                self.lines.append(f"{pad}if {key} in {r}:")
                self.value(node, f"{r}[{key}]", SKIP, depth + 1)

    def value(self, node: Node, value: str, fail: int | None, depth: int) -> None:
        """Test the value expression `value` against `node`: a mismatch returns `fail`,
        or the node's own code when `fail` is None."""
        pad = "    " * depth
        if isinstance(node, MapNode) and fail is None and depth < self.MAX_DEPTH:
            self.variables += 1
            r = f"r{self.variables}"
            self.lines.append(f"{pad}{r} = {value}")
            self.map_body(node.entries, r, depth)
            return
        code = "x" if fail is None else str(fail)
        if not isinstance(node, LeafNode):
            self.lines += [f"{pad}x = {self.const(node.fast)}({value})", f"{pad}if x:", f"{pad}    return {code}"]
            return
        scalar = node.scalar
        code = str(MISS) if fail is None else code
        if isinstance(scalar.raw, str) and scalar._single is not None:
            raw, single = repr(scalar.raw), self.const(scalar._single)

            def test(v: str) -> str:
                return f"({v} == {raw} or {single}({v}))"

        else:
            matches = self.const(scalar.matches)

            def test(v: str) -> str:
                return f"{matches}({v})"

        self.lines += [
            f"{pad}x = {value}",
            f"{pad}if isinstance(x, list):",
            f"{pad}    for y in x:",
            f"{pad}        if not {test('y')}:",
            f"{pad}            return {code}",
            f"{pad}elif not {test('x')}:",
            f"{pad}    return {code}",
        ]


def _entry_generic(entry: _Entry) -> Callable[[dict[str, Any]], int]:
    """An entry with a wildcard key (each matching key is tested) or an existence anchor."""
    key = entry.key
    if entry.wild:

        def each_key(resource: dict[str, Any]) -> int:
            for k in [k for k in resource if wildcard_match(key, k)] or [key]:
                result = _entry_code(entry, k, resource)
                if result:
                    return result
            return OK

        return each_key
    return lambda resource: _entry_code(entry, key, resource)


def _entry_code(entry: _Entry, key: str, resource: dict[str, Any]) -> int:
    """`_check_entry` as an OK/MISS/SKIP code, for any anchor."""
    anchor = entry.anchor
    if anchor == "" or anchor == "add":
        if entry.raw == "*":
            return MISS if resource.get(key) is None else OK
        return entry.node.fast(resource.get(key))
    present = key in resource
    if anchor == "equality":
        return entry.node.fast(resource[key]) if present else OK
    if anchor == "negation":
        return MISS if present else OK
    if anchor == "cond":
        if not present:
            return SKIP
        return SKIP if entry.node.fast(resource[key]) else OK
    if anchor == "global":
        if not present:
            return OK
        return SKIP if entry.node.fast(resource[key]) else OK
    if not present:  # existence
        return OK
    value = resource[key]
    if not isinstance(value, list):
        return MISS
    assert isinstance(entry.node, ListNode)  # noqa: S101 - compile_node guarantees it for lists
    for elem_node in entry.node.items:
        if not any(elem_node.fast(item) == OK for item in value):
            return MISS
    return OK


def _check_entry(entry: _Entry, key: str, resource: dict[str, Any], path: str) -> Mismatch | None:
    anchor = entry.anchor
    sub = f"{path}{key}/"
    present = key in resource
    if anchor in ("", "add"):
        if entry.raw == "*":
            if resource.get(key) is None:
                return Mismatch(FAIL, path, f"{path}{key} not found")
            return None
        return entry.node.check(resource.get(key), sub)
    if anchor == "equality":
        return entry.node.check(resource[key], sub) if present else None
    if anchor == "negation":
        return Mismatch(NEG, sub, f"{sub} is not allowed") if present else None
    if anchor == "cond":
        if not present:
            return Mismatch(COND, sub, "conditional anchor key doesn't exist in the resource")
        miss = entry.node.check(resource[key], sub)
        return Mismatch(COND, miss.path, miss.detail) if miss is not None else None
    if anchor == "global":
        if not present:
            return None
        miss = entry.node.check(resource[key], sub)
        return Mismatch(GLOBAL, miss.path, miss.detail) if miss is not None else None
    # existence: at least one element of the list matches each pattern element
    value = resource.get(key) if present else None
    if not present:
        return None
    if not isinstance(value, list):
        return Mismatch(FAIL, sub, f"existence anchor ^({key}) needs a list in the resource")
    assert isinstance(entry.node, ListNode)  # noqa: S101 - compile_node guarantees it for lists
    for elem_node in entry.node.items:
        if not any(elem_node.check(item, f"{sub}{i}/") is None for i, item in enumerate(value)):
            return Mismatch(FAIL, sub, f"existence anchor validation failed at path {sub}")
    return None


class ListNode(Node):
    __slots__ = ("items",)

    def __init__(self, pattern: list[Any]) -> None:
        self.items = [compile_node(item) for item in pattern]
        self.fast = _list_fast(self.items)

    def check(self, resource: Any, path: str) -> Mismatch | None:
        if not self.items:
            return Mismatch(FAIL, path, "pattern array is empty")
        if not isinstance(resource, list):
            return Mismatch(FAIL, path, f"validation rule failed at path {path}, resource is not a list")
        first = self.items[0]
        if isinstance(first, MapNode):
            return _each_element(first, resource, path)
        if isinstance(first, LeafNode):
            return first.check(resource, path)
        if len(resource) < len(self.items):
            return Mismatch(FAIL, path, "array length mismatch")
        applied, skipped = 0, None
        for i, node in enumerate(self.items):
            miss = node.check(resource[i], f"{path}{i}/")
            if miss is not None:
                if miss.skips:
                    skipped = miss
                    continue
                return miss
            applied += 1
        if applied == 0 and skipped is not None:
            return skipped
        return None


def _list_fast(items: list[Node]) -> Callable[[Any], int]:
    if not items:
        return lambda _resource: MISS
    first = items[0]
    if isinstance(first, LeafNode):
        leaf = first.fast
        return lambda resource: leaf(resource) if isinstance(resource, list) else MISS
    if isinstance(first, MapNode):
        element = first.fast
        return lambda resource: _each_element_fast(element, resource) if isinstance(resource, list) else MISS

    def positional(resource: Any) -> int:
        if not isinstance(resource, list) or len(resource) < len(items):
            return MISS
        applied, skipped = 0, False
        for i, node in enumerate(items):
            result = node.fast(resource[i])
            if result == MISS:
                return MISS
            if result == SKIP:
                skipped = True
            else:
                applied += 1
        return SKIP if applied == 0 and skipped else OK

    return positional


def _each_element_fast(element: Callable[[Any], int], resource: list[Any]) -> int:
    applied, skipped = 0, False
    for item in resource:
        result = element(item)
        if result == MISS:
            return MISS
        if result == SKIP:
            skipped = True
        else:
            applied += 1
    return SKIP if applied == 0 and skipped else OK


def _each_element(node: Node, resource: list[Any], path: str) -> Mismatch | None:
    """Every element must match; elements whose conditions do not hold are skipped, and
    if all are skipped the skip propagates."""
    applied, skipped = 0, None
    for i, item in enumerate(resource):
        miss = node.check(item, f"{path}{i}/")
        if miss is not None:
            if miss.skips:
                skipped = miss
                continue
            return miss
        applied += 1
    if applied == 0 and skipped is not None:
        return Mismatch(skipped.kind, path, skipped.detail)
    return None


def compile_node(pattern: Any) -> Node:
    if isinstance(pattern, dict):
        return MapNode(pattern)
    if isinstance(pattern, list):
        return ListNode(pattern)
    return LeafNode(pattern)


def match_pattern(node: Node, resource: Any) -> Mismatch | None:
    """Validate a whole resource against a compiled pattern (the root path is `/`)."""
    if node.fast(resource) == OK:
        return None
    return node.check(resource, "/")
