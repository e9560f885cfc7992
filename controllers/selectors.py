"""Label and field selectors with the API server's grammar and semantics.

Lists and watches filter with them (`?labelSelector=` / `?fieldSelector=`), controllers
find their pods with them, and validation checks that a workload's selector matches its
template. The label-syntax checks live here too because parsing a selector needs them
and validation reuses them for metadata.labels."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers import errors
from controllers.kinds import ResourceType

# ---------------------------------------------------------------------------- label syntax

_QNAME_CHARS = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"^{_QNAME_CHARS}$")
_LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """The apiserver's "<msg> (e.g. 'a',  or 'b', regex used for validation is '...')" suffix."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Problems with a DNS-1123 subdomain (most object names, label key prefixes)."""
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(
            regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character",
                DNS1123_SUBDOMAIN_FMT,
                "example.com",
            )
        )
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """Problems with a label key, annotation key or finalizer: `[prefix/]name`."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain_errors(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QNAME_MSG, _QNAME_CHARS, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QNAME_RE.match(name):
        errs.append("name part " + regex_error(_QNAME_MSG, _QNAME_CHARS, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """Problems with a label value (empty is allowed)."""
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character",
                _LABEL_VALUE_FMT,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errs


# ---------------------------------------------------------------------------- label selectors

EQUALS, NOT_EQUALS, IN, NOT_IN = "=", "!=", "in", "notin"
EXISTS, DOES_NOT_EXIST, GT, LT = "exists", "!", "gt", "lt"


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: `key <operator> values`."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.operator in (EQUALS, IN):
            return has and value in self.values
        if self.operator in (NOT_EQUALS, NOT_IN):
            return not has or value not in self.values
        if self.operator == EXISTS:
            return has
        if self.operator == DOES_NOT_EXIST:
            return not has
        try:
            actual = int(value or "")
        except ValueError:
            return False
        bound = int(self.values[0])
        return actual > bound if self.operator == GT else actual < bound

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({','.join(sorted(self.values))})"
        symbol = {GT: ">", LT: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{self.values[0]}"


class LabelSelector:
    """A parsed label selector: every requirement must hold (AND)."""

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        self.requirements = tuple(sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing

    @classmethod
    def nothing(cls) -> LabelSelector:
        """Matches no object: what a null `metav1.LabelSelector` means to controllers."""
        return cls(nothing=True)

    @property
    def empty(self) -> bool:
        """True when the selector matches everything (so callers can skip decoding objects)."""
        return not self._nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "LabelSelector(<nothing>)" if self._nothing else f"LabelSelector({str(self)!r})"


def new_requirement(key: str, operator: str, values: Sequence[str] = ()) -> Requirement:
    """A validated requirement; BadRequest in the apiserver's words when it is malformed."""
    problems = [f'key: Invalid value: "{key}": {m}' for m in qualified_name_errors(key)]
    if operator in (IN, NOT_IN) and not values:
        problems.append("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty")
    if operator in (EXISTS, DOES_NOT_EXIST) and values:
        problems.append("values: Invalid value: []: values set must be empty for exists and does not exist")
    if operator in (GT, LT):
        try:
            int(values[0])
        except ValueError:
            problems.append(
                f"values[0]: Invalid value: \"{values[0]}\": for 'Gt', 'Lt' operators, the value must be an integer"
            )
    else:
        for i, v in enumerate(values):
            problems.extend(f'values[{i}][{key}]: Invalid value: "{v}": {m}' for m in label_value_errors(v))
    if problems:
        raise errors.BadRequest("unable to parse requirement: " + ", ".join(problems))
    return Requirement(key, operator, tuple(values))


_SPECIAL = "!=(),<>"
_TOKEN_RE = re.compile(r"\s*(!=|==|=|!|\(|\)|,|<|>|[^\s!=(),<>]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:  # only trailing whitespace is left
            break
        out.append(m.group(1))
        pos = m.end()
    return out


def _is_identifier(tok: str) -> bool:
    return bool(tok) and tok[0] not in _SPECIAL and tok not in ("in", "notin")


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.toks[self.pos] if self.pos < len(self.toks) else ""

    def take(self) -> str:
        tok = self.peek()
        self.pos += 1
        return tok

    def fail(self, found: str, expected: str) -> errors.BadRequest:
        return errors.BadRequest(f"unable to parse requirement: found '{found}', expected: {expected}")

    def parse(self) -> LabelSelector:
        reqs: list[Requirement] = []
        if not self.toks:
            return LabelSelector()
        while True:
            reqs.append(self.requirement())
            tok = self.take()
            if tok == "":
                return LabelSelector(reqs)
            if tok != ",":
                raise self.fail(tok, "',' or 'end of string'")

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok == "!":
            key = self.take()
            if not _is_identifier(key):
                raise self.fail(key, "identifier after '!'")
            return new_requirement(key, DOES_NOT_EXIST)
        if not _is_identifier(tok):
            raise self.fail(tok, "!, identifier, or 'end of string'")
        key, op = tok, self.peek()
        if op in ("", ","):
            return new_requirement(key, EXISTS)
        self.take()
        if op in ("=", "==", "!="):
            value = self.peek()
            if value in ("", ","):
                return new_requirement(key, NOT_EQUALS if op == "!=" else EQUALS, [""])
            if not _is_identifier(value) and value not in ("in", "notin"):
                raise self.fail(value, "identifier")
            self.take()
            return new_requirement(key, NOT_EQUALS if op == "!=" else EQUALS, [value])
        if op in ("in", "notin"):
            return new_requirement(key, op, self.value_set())
        if op in (">", "<"):
            value = self.take()
            if not _is_identifier(value):
                raise self.fail(value, "identifier")
            return new_requirement(key, GT if op == ">" else LT, [value])
        raise self.fail(op, "in, notin, =, ==, !=, gt, lt")

    def value_set(self) -> list[str]:
        """`(a,b)`; as in Kubernetes, empty entries (`()`, `(a,)`) stand for the empty value."""
        tok = self.take()
        if tok != "(":
            raise self.fail(tok, "'('")
        values = [""]
        while True:
            tok = self.take()
            if tok == ")":
                return list(dict.fromkeys(values))
            if tok == ",":
                values.append("")
            elif values[-1] == "" and (_is_identifier(tok) or tok in ("in", "notin")):
                values[-1] = tok
            else:
                raise self.fail(tok, "',', ')' or identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` (also `==`, `>`, `<`); "" selects everything."""
    return _Parser(text or "").parse()


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A `metav1.LabelSelector` as controllers read it: null matches nothing, {} matches everything."""
    if selector is None:
        return LabelSelector.nothing()
    reqs = [new_requirement(k, EQUALS, [str(v)]) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        if op not in ops:
            raise errors.BadRequest(f'"{op}" is not a valid label selector operator')
        values = [str(v) for v in expr.get("values") or []]
        reqs.append(new_requirement(str(expr.get("key", "")), ops[op], values))
    return LabelSelector(reqs)


# ---------------------------------------------------------------------------- field selectors

# Field -> how to read it: "" means the dotted path itself; "bool"/"int" read the path and
# print it as Go does (a missing bool is "false", a missing int "0"); anything else is a
# different dotted path to read.
_META = {"metadata.name": "", "metadata.namespace": ""}
_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    ("", "Pod"): {
        **_META,
        "spec.nodeName": "",
        "spec.restartPolicy": "",
        "spec.schedulerName": "",
        "spec.serviceAccountName": "",
        "spec.hostNetwork": "bool",
        "status.phase": "",
        "status.podIP": "",
        "status.nominatedNodeName": "",
    },
    ("", "Event"): {
        **_META,
        "involvedObject.kind": "",
        "involvedObject.namespace": "",
        "involvedObject.name": "",
        "involvedObject.uid": "",
        "involvedObject.apiVersion": "",
        "involvedObject.resourceVersion": "",
        "involvedObject.fieldPath": "",
        "reason": "",
        "reportingComponent": "",
        "source": "source.component",
        "type": "",
    },
    ("", "Secret"): {**_META, "type": ""},
    ("", "Node"): {"metadata.name": "", "spec.unschedulable": "bool"},
    ("", "Namespace"): {"metadata.name": "", "status.phase": ""},
    ("", "ReplicationController"): {**_META, "status.replicas": "int"},
    ("apps", "ReplicaSet"): {**_META, "status.replicas": "int"},
    ("batch", "Job"): {**_META, "status.successful": "int"},
}


def _lookup(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _field_text(value: Any, how: str) -> str:
    if how == "bool" or isinstance(value, bool):
        return "true" if value else "false"
    if how == "int":
        return str(value or 0)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str
    path: str
    how: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = _field_text(_lookup(obj, self.path), self.how)
        return (actual == self.value) == (self.operator == EQUALS)


class FieldSelector:
    """A parsed field selector; every requirement must hold."""

    def __init__(self, requirements: Iterable[FieldRequirement] = ()) -> None:
        self.requirements = tuple(requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)


def _split_unescaped(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped, keeping escapes for the next step."""
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str, text: str) -> str:
    """Undo `\\,` `\\=` `\\\\` escapes; a bare `=` or `,` in a value is an error, as in Kubernetes."""
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise errors.BadRequest(f"invalid field selector: '{text}': invalid escape sequence")
            out.append(value[i + 1])
            i += 2
            continue
        if ch in ",=":
            raise errors.BadRequest(f"invalid field selector: '{text}': unescaped character {ch!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str] | None:
    """The leftmost operator wins; at one position `!=` and `==` are tried before `=`."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def supported_fields(rt: ResourceType, selectable_fields: Sequence[str] = ()) -> dict[str, str]:
    """Field name -> how to read it, for one resource type (CRDs: metadata + selectableFields)."""
    if rt.crd:
        return {**_META, **{f.lstrip("."): "" for f in selectable_fields}}
    return _FIELDS.get((rt.group, rt.kind), _META)


def parse_field_selector(text: str | None, rt: ResourceType, selectable_fields: Sequence[str] = ()) -> FieldSelector:
    """Parse `metadata.name=x,spec.nodeName!=,status.phase==Running` for resource type `rt`.

    `selectable_fields` are a CRD version's `selectableFields[].jsonPath`s."""
    if not text:
        return FieldSelector()
    fields = supported_fields(rt, selectable_fields)
    reqs = []
    for term in _split_unescaped(text):
        split = _split_term(term)
        if split is None or not split[0]:
            raise errors.BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
        name, op, raw = split
        if name not in fields:
            raise errors.BadRequest(f"field label not supported: {name}")
        how = fields[name]
        path = how if how not in ("", "bool", "int") else name
        operator = NOT_EQUALS if op == "!=" else EQUALS
        reqs.append(FieldRequirement(name, operator, _unescape(raw, text), path, how))
    return FieldSelector(reqs)
