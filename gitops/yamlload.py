"""The one YAML loader of the project: manifests read the way kubectl reads them.

kubectl (sigs.k8s.io/yaml over go-yaml v2) decodes YAML 1.1 into JSON, and
that is what reaches the API server. PyYAML differs from it in ways that bite
real repositories, so this loader resolves plain scalars with go-yaml v2's
rules instead of PyYAML's:

- booleans are YAML 1.1's: ``y/Y/yes/Yes/YES/on/On/ON/true/...`` are true and
  ``n/N/no/No/NO/off/Off/OFF/false/...`` false (PyYAML forgets ``y``/``n``);
  an unquoted ``on:`` key becomes the key ``"true"``, as in kubectl;
- integers follow Go's ``ParseInt(s, 0, 64)`` after dropping ``_``
  (``0755`` is octal, ``0o17``/``0x1F``/``0b101`` work); there are no
  sexagesimal numbers (``12:30`` stays a string, PyYAML makes it 750);
- floats match ``1.5``, ``.5``, ``1e3`` (PyYAML needs a dot); a float with an
  integral value becomes an int (``1.0`` and ``1e3`` reach the API as ``1`` and
  ``1000``, as Go's JSON encoder writes them); ``.nan``/``.inf`` are refused
  since JSON cannot carry them;
- timestamps stay strings (``2024-01-02``), ``=`` is a string;
- non-string keys are turned into strings (``1: x`` → ``"1"``);
- a tab after a value (``key: value<TAB>``) is accepted, as libyaml and
  go-yaml accept it; tabs used as indentation are still errors.

Duplicate keys keep the last value, as kubectl does. libyaml (CSafeLoader)
already scans tabs like go-yaml, being its ancestor; the pure-Python fallback
gets the same rule from ``_TabTolerantScanner``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import BaseResolver

__all__ = ["ManifestError", "load_manifests", "load_yaml"]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"

_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_SPECIAL_FLOATS = frozenset(
    (".nan", ".NaN", ".NAN") + tuple(sign + inf for sign in ("", "+", "-") for inf in (".inf", ".Inf", ".INF"))
)
_FIXED_TAGS = {
    **dict.fromkeys(_BOOLS, _BOOL),
    **dict.fromkeys(_NULLS, _NULL),
    **dict.fromkeys(_SPECIAL_FLOATS, _FLOAT),
    "<<": _MERGE,
}
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_NUMBER_START = frozenset("0123456789+-.")
_INT_RANGE = (-(2**63), 2**64)  # ParseInt, then ParseUint, as go-yaml tries them
_JSON_LIMIT = 1e21  # beyond this Go's JSON encoder writes floats in exponent form
_MAX_EXPANDED_NODES = 1_000_000  # aliases may reuse nodes, but not into a "billion laughs"


class ManifestError(Exception):
    """A manifest that cannot be read; ``str()`` is ``file:line: problem``."""

    def __init__(self, detail: str, source: str, line: int | None = None) -> None:
        self.detail = detail
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {detail}")


def _go_int(text: str) -> int | None:
    """Go's ``strconv.ParseInt(s, 0, 64)`` after go-yaml strips underscores; None when it fails."""
    match = _GO_INT.fullmatch(text.replace("_", ""))
    if match is None:
        return None
    sign, digits = match.groups()
    prefix = digits[:2].lower()
    if prefix in ("0x", "0b", "0o"):
        value = int(digits[2:], {"0x": 16, "0b": 2, "0o": 8}[prefix])
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    value = -value if sign == "-" else value
    return value if _INT_RANGE[0] <= value < _INT_RANGE[1] else None


def _plain_tag(value: str) -> str:
    """The tag go-yaml v2 gives an unquoted scalar."""
    tag = _FIXED_TAGS.get(value)
    if tag is not None:
        return tag
    if value[0] in _NUMBER_START:
        if _go_int(value) is not None:
            return _INT
        if _GO_FLOAT.fullmatch(value):
            return _FLOAT
    return _STR


def _json_number(value: float) -> int | float:
    """What Go's JSON encoder makes of a float: integral values print as integers."""
    return int(value) if value.is_integer() and abs(value) < _JSON_LIMIT else value


def _not_json(node: Node) -> ConstructorError:
    problem = f"unsupported value {node.value!r}: JSON has no NaN or Infinity"
    return ConstructorError(None, None, problem, node.start_mark)


def _key_text(key: Any, node: Node) -> str:
    """sigs.k8s.io/yaml's conversion of a non-string map key to a JSON key."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int | float):
        return str(key)
    shown = "null" if key is None else repr(key)
    raise ConstructorError(None, None, f"unsupported map key {shown}", node.start_mark)


class _GoResolver(BaseResolver):
    """Resolves plain scalars with go-yaml v2's table instead of PyYAML's regexps."""

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return _plain_tag(value)
        return super().resolve(kind, value, implicit)


class _Constructor(SafeConstructor):
    """Builds JSON-compatible values with go-yaml v2's meaning of each tag."""

    def construct_go_bool(self, node: Node) -> bool:
        value = self.construct_scalar(node)  # type: ignore[arg-type]
        if value not in _BOOLS:
            raise ConstructorError(None, None, f"cannot decode {value!r} as a boolean", node.start_mark)
        return _BOOLS[value]

    def construct_go_int(self, node: Node) -> int:
        value = self.construct_scalar(node)  # type: ignore[arg-type]
        number = _go_int(value)
        if number is None:
            raise ConstructorError(None, None, f"cannot decode {value!r} as an integer", node.start_mark)
        return number

    def construct_go_float(self, node: Node) -> int | float:
        value = self.construct_scalar(node)  # type: ignore[arg-type]
        if value in _SPECIAL_FLOATS:
            raise _not_json(node)
        if _GO_FLOAT.fullmatch(value):
            number = float(value)
            if math.isinf(number):
                raise _not_json(node)
            return _json_number(number)
        integer = _go_int(value)
        if integer is None:
            raise ConstructorError(None, None, f"cannot decode {value!r} as a float", node.start_mark)
        return integer

    def construct_as_text(self, node: Node) -> str:
        """Timestamps stay the text they were written as (go-yaml v2 does the same)."""
        return self.construct_scalar(node)  # type: ignore[arg-type]

    def construct_go_binary(self, node: Node) -> str:
        """``!!binary`` decodes to the string it encodes, as go-yaml v2 does."""
        raw = self.construct_scalar(node)  # type: ignore[arg-type]
        try:
            return base64.b64decode(raw).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as err:
            raise ConstructorError(None, None, f"cannot decode !!binary value: {err}", node.start_mark) from err

    def construct_unsupported(self, node: Node) -> Any:
        raise ConstructorError(None, None, f"tag {node.tag} is not supported in manifests", node.start_mark)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[str, Any]:  # type: ignore[override]
        """Keys become strings as they are built: in a Python dict True and 1 would be the same key."""
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping, but found {node.id}", node.start_mark)
        self.flatten_mapping(node)
        mapping = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if type(key) is not str:
                key = _key_text(key, key_node)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    yaml_constructors = {
        **SafeConstructor.yaml_constructors,
        _BOOL: construct_go_bool,
        _INT: construct_go_int,
        _FLOAT: construct_go_float,
        "tag:yaml.org,2002:timestamp": construct_as_text,
        "tag:yaml.org,2002:binary": construct_go_binary,
        "tag:yaml.org,2002:set": construct_unsupported,
        "tag:yaml.org,2002:omap": construct_unsupported,
        "tag:yaml.org,2002:pairs": construct_unsupported,
    }


class _TabTolerantScanner(yaml.reader.Reader, yaml.scanner.Scanner):
    """PyYAML's scanner with libyaml's whitespace rule.

    libyaml and go-yaml skip tabs between tokens in flow context and wherever a
    simple key cannot start (after a value, after ``key:``); pure PyYAML only
    skips spaces and so rejects ``key: value<TAB>``.
    """

    def scan_to_next_token(self) -> None:
        if self.index == 0 and self.peek() == "\ufeff":
            self.forward()
        while True:
            while self.peek() == " " or (self.peek() == "\t" and (self.flow_level or not self.allow_simple_key)):
                self.forward()
            if self.peek() == "#":
                while self.peek() not in "\0\r\n\x85\u2028\u2029":
                    self.forward()
            if not self.scan_line_break():
                return
            if not self.flow_level:
                self.allow_simple_key = True


class PyLoader(
    _TabTolerantScanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _Constructor,
    _GoResolver,
):
    """The pure-Python loader, used when PyYAML was built without libyaml."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Constructor.__init__(self)
        _GoResolver.__init__(self)


try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - every PyYAML wheel ships libyaml
    CLoader: type[Any] | None = None
else:

    class _CLoader(CParser, _Constructor, _GoResolver):
        """libyaml's parser (fast) with the go-yaml v2 resolver and constructors."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Constructor.__init__(self)
            _GoResolver.__init__(self)

    CLoader = _CLoader

Loader: type[Any] = CLoader or PyLoader


def _yaml_error(err: yaml.YAMLError, source: str) -> ManifestError:
    """A ManifestError naming the line of a PyYAML error and what went wrong there."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return ManifestError(str(err), source)
    mark = err.problem_mark or err.context_mark
    detail = err.problem or err.context or "invalid YAML"
    if err.context and err.problem and err.context_mark is not None:
        detail += f" ({err.context} at line {err.context_mark.line + 1})"
    return ManifestError(detail, source, mark.line + 1 if mark is not None else None)


def _expanded_size(node: Node, memo: dict[int, int]) -> int:
    """How many nodes the document has once every alias is expanded (what JSON will hold)."""
    size = memo.get(id(node))
    if size is None:
        if isinstance(node, ScalarNode):
            size = 1
        elif isinstance(node, MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        else:
            size = 1 + sum(_expanded_size(item, memo) for item in node.value)
        memo[id(node)] = size
    return size


def _reject_constant(name: str) -> float:
    raise ValueError(f"unsupported value {name}: JSON has no NaN or Infinity")


def _json_float(text: str) -> int | float:
    return _json_number(float(text))


def _try_json(text: str) -> tuple[bool, Any]:
    """Parse JSON exactly (YAML 1.1 misreads some JSON); (False, None) when it is not JSON."""
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[")):
        return False, None
    try:
        return True, json.loads(stripped, parse_float=_json_float, parse_constant=_reject_constant)
    except ValueError:
        return False, None


def _load_documents(text: str, source: str) -> list[tuple[Any, int]]:
    """Every document of a stream with the line it starts on; empty documents give None."""
    text = text.removeprefix("\ufeff")
    is_json, data = _try_json(text)
    if is_json:
        return [(data, 1)]
    loader = Loader(text)
    documents = []
    may_alias = "&" in text and "*" in text
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1
            if may_alias and _expanded_size(node, {}) > _MAX_EXPANDED_NODES:
                raise ManifestError("document expands aliases into too many values", source, line)
            documents.append((loader.construct_document(node), line))
    except yaml.YAMLError as err:
        raise _yaml_error(err, source) from None
    finally:
        loader.dispose()
    return documents


def load_yaml(text: str, source: str) -> Any:
    """One YAML (or JSON) document, e.g. a Helm values file; None when it is empty."""
    documents = _load_documents(text, source)
    if len(documents) > 1:
        raise ManifestError("expected a single YAML document but found several", source, documents[1][1])
    return documents[0][0] if documents else None


def _is_list(obj: dict[str, Any]) -> bool:
    kind = obj.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and (kind == "List" or isinstance(obj.get("items"), list))


def _check_object(obj: Any, source: str, line: int, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where} is {type(obj).__name__}, not an object", source, line)
    for field in ("apiVersion", "kind"):
        value = obj.get(field)
        if not isinstance(value, str) or not value:
            raise ManifestError(f"{where} has no {field}", source, line)
    return obj


def _objects(obj: Any, source: str, line: int, where: str) -> list[dict[str, Any]]:
    """The object, or the items of a ``kind: List`` (or ``FooList``), each checked."""
    obj = _check_object(obj, source, line, where)
    if not _is_list(obj):
        return [obj]
    items = obj.get("items") or []
    if not isinstance(items, list):
        raise ManifestError(f"{where}: items of {obj['kind']} is not a list", source, line)
    return [o for i, item in enumerate(items, 1) for o in _objects(item, source, line, f"{where}, item {i}")]


def load_manifests(text: str, source: str) -> list[dict[str, Any]]:
    """The Kubernetes objects in a multi-document YAML file or a JSON object/array.

    Empty and comment-only documents are skipped; ``kind: List`` documents are
    expanded into their items. ``source`` (the file's path in the repository)
    names the file in errors.
    """
    objects: list[dict[str, Any]] = []
    for index, (doc, line) in enumerate(_load_documents(text, source), 1):
        if doc is None:
            continue
        if isinstance(doc, list):
            for item_index, item in enumerate(doc, 1):
                objects.extend(_objects(item, source, line, f"document {index}, item {item_index}"))
        else:
            objects.extend(_objects(doc, source, line, f"document {index}"))
    return objects
