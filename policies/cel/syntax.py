"""Source-to-source rewriting of CEL before it reaches the evaluator.

The evaluator (the `common-expression-language` package, cel-rust underneath) parses the
CEL core grammar but not the optional syntax (`x.?f`, `m[?k]`) that Kubernetes and
Kyverno policies use everywhere, nor struct literals (`Object{spec: ...}`). Rather than
calling back into Python per access (slow: every call converts its arguments), the
rewrite turns them into plain CEL the evaluator runs natively:

    a.?b.?c          ->  (has(a.b) && has(a.b.c) ? optional.of(a.b.c) : optional.none())
    variables.name   ->  (<the variable's rewritten expression>)   (inlined, compiled once)
    Object{spec: x}  ->  {'spec': x}

Autogen for pod controllers (`object.spec` -> `object.spec.template.spec`) also works on
tokens here, so it never touches string literals."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>(?:[rR][bB]?|[bB][rR]?)?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
        |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<num>0[xX][0-9a-fA-F]+[uU]?|\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\.\?|\[\?|==|!=|<=|>=|&&|\|\||[-+*/%!<>?:,.()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_CLOSE = {"(": ")", "[": "]", "[?": "]", "{": "}"}
_OPERATOR_WORDS = frozenset({"in"})
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_STRING_LITERAL = re.compile(r"""^(?:'[^'\\]*'|"[^"\\]*")$""")


class CelSyntaxError(ValueError):
    """An expression the rewrite cannot read (unbalanced brackets, unknown variable...)."""


@dataclass(frozen=True)
class Token:
    kind: str  # str | num | ident | punct
    text: str


def tokenize(source: str) -> list[Token]:
    """The significant tokens of `source` (whitespace and comments dropped)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if not m:
            raise CelSyntaxError(f"unexpected character {source[pos]!r} at offset {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group()))
        pos = m.end()
    return tokens


# Kyverno autogen: what `object.<field>` becomes on a pod controller.
_POD_TEMPLATE = {"spec": "spec.template.spec", "metadata": "spec.template.metadata"}
_CRONJOB_TEMPLATE = {
    "spec": "spec.jobTemplate.spec.template.spec",
    "metadata": "spec.jobTemplate.spec.template.metadata",
}


def autogen(source: str, cronjob: bool) -> str:
    """`source` rewritten to read the pod template of a controller, as Kyverno's autogen
    does: `object.spec`/`object.metadata` (and `oldObject.`) move into the template,
    except `object.metadata.name`/`.namespace`, which stay on the controller itself."""
    mapping = _CRONJOB_TEMPLATE if cronjob else _POD_TEMPLATE
    tokens = tokenize(source)
    out: list[Token] = []
    for i, tok in enumerate(tokens):
        if (
            tok.kind == "ident"
            and tok.text in mapping
            and i >= 2
            and tokens[i - 1].text == "."
            and tokens[i - 2].text in ("object", "oldObject")
            and (i < 3 or tokens[i - 3].text not in (".", ".?"))
        ):
            following = tokens[i + 2].text if i + 2 < len(tokens) and tokens[i + 1].text == "." else ""
            if not (tok.text == "metadata" and following in ("name", "namespace")):
                out.append(Token("ident", mapping[tok.text]))
                continue
        out.append(tok)
    return " ".join(t.text for t in out)


def rewrite(source: str, variables: Mapping[str, str] | None = None) -> str:
    """`source` in the CEL subset the evaluator runs; `variables` maps each declared
    variable to its already rewritten expression, inlined where `variables.x` appears."""
    tokens = tokenize(source)
    return _Rewriter(tokens, variables or {}).expression(0, len(tokens))


class _Rewriter:
    def __init__(self, tokens: list[Token], variables: Mapping[str, str]) -> None:
        self.t = tokens
        self.variables = variables

    def closing(self, start: int, end: int) -> int:
        """Index of the bracket closing the one at `start`."""
        depth = 0
        for i in range(start, end):
            text = self.t[i].text if self.t[i].kind == "punct" else ""
            if text in _CLOSE:
                depth += 1
            elif text in (")", "]", "}"):
                depth -= 1
                if depth == 0:
                    if text != _CLOSE[self.t[start].text]:
                        break
                    return i
        raise CelSyntaxError(f"unbalanced {self.t[start].text!r}")

    def expression(self, start: int, end: int) -> str:
        out: list[str] = []
        i = start
        while i < end:
            tok = self.t[i]
            if (
                tok.kind in ("str", "num")
                or (tok.kind == "ident" and tok.text not in _OPERATOR_WORDS)
                or (tok.kind == "punct" and tok.text in ("(", "[", "{"))
            ):
                text, i = self.chain(i, end)
                out.append(text)
            else:
                out.append(tok.text)
                i += 1
        return " ".join(out)

    def group(self, start: int, end: int) -> tuple[str, int]:
        """The rewritten inside of the bracket at `start`, and the index after it."""
        close = self.closing(start, end)
        return self.expression(start + 1, close), close + 1

    def struct(self, start: int, end: int) -> tuple[str, int]:
        """A struct literal's `{field: value, ...}` as a map literal with string keys."""
        close = self.closing(start, end)
        parts: list[str] = []
        i = start + 1
        while i < close:
            j, depth = i, 0
            while j < close:
                text = self.t[j].text if self.t[j].kind == "punct" else ""
                if text in _CLOSE:
                    depth += 1
                elif text in (")", "]", "}"):
                    depth -= 1
                elif text == "," and depth == 0:
                    break
                j += 1
            if j > i:
                if j - i < 2 or self.t[i + 1].text != ":":
                    raise CelSyntaxError("a struct literal field must read `name: value`")
                name = self.t[i].text.lstrip("?")
                parts.append(f"'{name}': {self.expression(i + 2, j)}")
            i = j + 1
        return "{" + ", ".join(parts) + "}", close + 1

    def chain(self, i: int, end: int) -> tuple[str, int]:
        """A primary expression and its postfix operators (select, index, call)."""
        tok = self.t[i]
        if tok.kind == "ident":
            i += 1
            if i < end and self.t[i].text == "(":
                inner, i = self.group(i, end)
                cur = f"{tok.text}({inner})"
            elif tok.text == "variables" and i + 1 < end and self.t[i].text == "." and self.t[i + 1].kind == "ident":
                name = self.t[i + 1].text
                if name not in self.variables:
                    raise CelSyntaxError(f"undefined variable 'variables.{name}'")
                cur = f"({self.variables[name]})"
                i += 2
            else:
                cur = tok.text
        elif tok.text in ("(", "[", "{"):
            inner, i = self.group(i, end)
            cur = {"(": f"({inner})", "[": f"[{inner}]", "{": f"{{{inner}}}"}[tok.text]
        else:
            cur, i = tok.text, i + 1
        guards: list[str] = []  # non-empty: an optional chain, `cur` the path it guards
        # A path of plain field selections from a variable: never an optional value.
        plain = tok.kind == "ident" and cur == tok.text and tok.text != "optional"
        while i < end:
            text = self.t[i].text if self.t[i].kind == "punct" else ""
            if text == "{" and _TYPE_NAME.match(cur) and not guards:
                cur, i = self.struct(i, end)
            elif text in (".", ".?") and i + 1 < end and self.t[i + 1].kind == "ident":
                name = self.t[i + 1].text
                i += 2
                if i < end and self.t[i].text == "(":
                    args, i = self.group(i, end)
                    if plain and text == "." and name in ("orValue", "value"):
                        # A field of the object is never an optional: like cel-go with
                        # dynamic types, `field.orValue(x)` is the field itself.
                        continue
                    cur = f"{self._materialize(cur, guards)}.{name}({args})"
                    guards = []
                    plain = False
                elif text == ".?" or guards:
                    plain = False
                    guards.append(f"has({cur}.{name})")
                    cur = f"{cur}.{name}"
                else:
                    cur = f"{cur}.{name}"
            elif text in ("[", "[?"):
                key, i = self.group(i, end)
                plain = plain and text == "["
                if (text == "[?" or guards) and _STRING_LITERAL.match(key):
                    guards.append(f"{key} in {cur}")
                elif text == "[?" or guards:
                    guards.append(f"(type({cur}) == list ? ({key}) >= 0 && ({key}) < size({cur}) : ({key}) in {cur})")
                cur = f"{cur}[{key}]"
            else:
                break
        return self._materialize(cur, guards), i

    @staticmethod
    def _materialize(path: str, guards: list[str]) -> str:
        if not guards:
            return path
        return f"({' && '.join(guards)} ? optional.of({path}) : optional.none())"


_ROOTS = frozenset({"object", "oldObject"})


def alias_paths(text: str, name_of: Callable[[tuple[str, ...], bool], str]) -> tuple[str, list[str]]:
    """`text` with each field path into the admitted object (`object.spec.template.spec`)
    replaced by a variable named `name_of(path, False)`, each `has(<path>)` by one named
    `name_of(path, True)` (the field's presence), and the names used.

    The evaluator copies the value a field selection yields, so every `object.spec...`
    costs as much as the subtree it passes through; a top-level variable costs nothing
    to read. Nothing is replaced when a macro binds `object`/`oldObject` to something
    else."""
    tokens = tokenize(text)
    for i in range(1, len(tokens) - 1):
        if tokens[i].text in _ROOTS and tokens[i - 1].text == "(" and tokens[i + 1].text == ",":
            return text, []  # e.g. `list.map(object, ...)`: `object` is not the request's here
    out: list[str] = []
    used: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind != "ident" or tok.text not in _ROOTS or (i > 0 and tokens[i - 1].text in (".", ".?")):
            out.append(tok.text)
            i += 1
            continue
        fields: list[str] = []
        j = i + 1
        while (
            j + 1 < len(tokens)
            and tokens[j].text == "."
            and tokens[j + 1].kind == "ident"
            and not (j + 2 < len(tokens) and tokens[j + 2].text == "(")  # a method, not a field
        ):
            fields.append(tokens[j + 1].text)
            j += 2
        if not fields:
            out.append(tok.text)
            i += 1
            continue
        path = (tok.text, *fields)
        is_has = (
            i >= 2
            and tokens[i - 1].text == "("
            and tokens[i - 2].text == "has"
            and (i < 3 or tokens[i - 3].text not in (".", ".?"))
            and j < len(tokens)
            and tokens[j].text == ")"
        )
        if is_has:  # `has ( path )` as a whole
            del out[-2:]
            name = name_of(path, True)
            j += 1
        else:
            name = name_of(path, False)
        used.append(name)
        out.append(name)
        i = j
    return " ".join(out), used
