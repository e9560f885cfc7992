"""JMESPath as Kyverno speaks it: the `jmespath` package plus Kyverno's extra functions,
and `{{ ... }}` variable substitution in strings and documents.

Expressions are compiled once (cached by text); a request only runs `search`."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import posixpath
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
import yaml
from jmespath import functions

from policies.kyverno.jmescompile import Compiler
from policies.kyverno.values import (
    go_number_string,
    parse_duration,
    quantity,
    to_json_text,
    wildcard_match,
)

# `{{ expr }}` with one level of nested braces allowed inside (e.g. `{{ x || `{}` }}`).
VARIABLE = re.compile(r"(?<!\\)\{\{((?:\{[^{}]*\}|[^{}])*)\}\}")


class VariableError(ValueError):
    """A variable that could not be resolved; the message names the expression."""


def _num(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return None


def _plain(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _arith(op: str, a: Any, b: Any) -> Any:
    """Kyverno's add/subtract/...: numbers, quantities or durations, kept in their kind."""
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return _plain(_apply(op, na, nb))
    da = parse_duration(a) if isinstance(a, str) else None
    db = parse_duration(b) if isinstance(b, str) else None
    if da is not None and (db is not None or nb is not None):
        result = _apply(op, da, db if db is not None else nb)  # type: ignore[arg-type]
        return _format_duration(result) if op in ("+", "-") or db is None else _plain(result)
    qa, qb = quantity(a), quantity(b)
    if qa is not None and (qb is not None or nb is not None):
        result = _apply(op, qa, qb if qb is not None else nb)  # type: ignore[arg-type]
        if op in ("/",) and qb is not None:
            return _plain(result)
        return _format_quantity(result, a)
    raise jmespath.exceptions.JMESPathError(f"cannot apply {op} to {a!r} and {b!r}")


def _apply(op: str, a: Decimal, b: Decimal) -> Decimal:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise jmespath.exceptions.JMESPathError("division by zero")
    if op == "/":
        return a / b
    return a % b


def _format_duration(seconds: Decimal) -> str:
    """Go's `Duration.String()` for whole and fractional seconds."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = sign
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    secs_text = format(secs.normalize(), "f") if secs else "0"
    return out + f"{secs_text}s"


def _format_quantity(value: Decimal, like: Any) -> str:
    from controllers.quantity import format_quantity

    text = format(value.normalize(), "f")
    if isinstance(like, str) and like.endswith("i"):
        return format_quantity(text if "." not in text else text)
    return format_quantity(text)


_TIME_LAYOUT = "%Y-%m-%dT%H:%M:%SZ"


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class KyvernoFunctions(functions.Functions):
    """The functions Kyverno adds to JMESPath (names and argument order as documented)."""

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_compare(self, a: str, b: str) -> int:
        return (a > b) - (a < b)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_equal_fold(self, a: str, b: str) -> bool:
        return a.casefold() == b.casefold()

    @functions.signature({"types": ["string"]}, {"types": ["string"]}, {"types": ["string"]}, {"types": ["number"]})
    def _func_replace(self, s: str, old: str, new: str, n: int) -> str:
        return s.replace(old, new, int(n)) if n >= 0 else s.replace(old, new)

    @functions.signature({"types": ["string"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_replace_all(self, s: str, old: str, new: str) -> str:
        return s.replace(old, new)

    @functions.signature({"types": ["string"]})
    def _func_to_upper(self, s: str) -> str:
        return s.upper()

    @functions.signature({"types": ["string"]})
    def _func_to_lower(self, s: str) -> str:
        return s.lower()

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_trim(self, s: str, cutset: str) -> str:
        return s.strip(cutset)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_trim_prefix(self, s: str, prefix: str) -> str:
        return s.removeprefix(prefix)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_trim_suffix(self, s: str, suffix: str) -> str:
        return s.removesuffix(suffix)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_split(self, s: str, sep: str) -> list[str]:
        return s.split(sep) if sep else list(s)

    @functions.signature({"types": ["string"]}, {"types": ["string", "number"]}, {"types": ["string", "number"]})
    def _func_regex_replace_all(self, regex: str, src: Any, repl: Any) -> str:
        go_repl = re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", str(repl))
        return re.sub(regex, go_repl, _str(src))

    @functions.signature({"types": ["string"]}, {"types": ["string", "number"]}, {"types": ["string", "number"]})
    def _func_regex_replace_all_literal(self, regex: str, src: Any, repl: Any) -> str:
        return re.sub(regex, lambda _m: _str(repl), _str(src))

    @functions.signature({"types": ["string"]}, {"types": ["string", "number"]})
    def _func_regex_match(self, regex: str, src: Any) -> bool:
        return re.search(regex, _str(src)) is not None

    @functions.signature({"types": ["string"]}, {"types": ["string", "number"]})
    def _func_pattern_match(self, pattern: str, src: Any) -> bool:
        return wildcard_match(pattern, _str(src))

    @functions.signature({"types": ["object"]}, {"types": ["object"]})
    def _func_label_match(self, selector: dict[str, Any], labels: dict[str, Any]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    @functions.signature({"types": ["string"]})
    def _func_to_boolean(self, s: str) -> bool:
        low = s.strip().lower()
        if low not in ("true", "false"):
            raise jmespath.exceptions.JMESPathError(f"to_boolean: {s!r} is not a boolean")
        return low == "true"

    @functions.signature({"types": []}, {"types": []})
    def _func_add(self, a: Any, b: Any) -> Any:
        return _arith("+", a, b)

    @functions.signature({"types": ["array"]})
    def _func_sum(self, items: list[Any]) -> Any:
        if not items:
            raise jmespath.exceptions.JMESPathError("sum of an empty array")
        total = items[0]
        for item in items[1:]:
            total = _arith("+", total, item)
        return total

    @functions.signature({"types": []}, {"types": []})
    def _func_subtract(self, a: Any, b: Any) -> Any:
        return _arith("-", a, b)

    @functions.signature({"types": []}, {"types": []})
    def _func_multiply(self, a: Any, b: Any) -> Any:
        return _arith("*", a, b)

    @functions.signature({"types": []}, {"types": []})
    def _func_divide(self, a: Any, b: Any) -> Any:
        return _arith("/", a, b)

    @functions.signature({"types": []}, {"types": []})
    def _func_modulo(self, a: Any, b: Any) -> Any:
        return _arith("%", a, b)

    @functions.signature({"types": ["number"]}, {"types": ["number"]})
    def _func_round(self, value: float, digits: int) -> float | int:
        result = round(value, int(digits))
        return int(result) if float(result).is_integer() else result

    @functions.signature({"types": ["string"]})
    def _func_base64_decode(self, s: str) -> str:
        return base64.b64decode(s).decode()

    @functions.signature({"types": ["string"]})
    def _func_base64_encode(self, s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    @functions.signature({"types": ["string"]})
    def _func_path_canonicalize(self, s: str) -> str:
        return posixpath.normpath(s) if s else s

    @functions.signature({"types": ["string"]}, {"types": ["number"]})
    def _func_truncate(self, s: str, length: int) -> str:
        return s[: max(int(length), 0)]

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_semver_compare(self, version: str, constraint: str) -> bool:
        return _semver_satisfies(version, constraint)

    @functions.signature({"types": ["string"]})
    def _func_parse_json(self, s: str) -> Any:
        return json.loads(s)

    @functions.signature({"types": ["string"]})
    def _func_parse_yaml(self, s: str) -> Any:
        return yaml.safe_load(s)

    @functions.signature({"types": ["object", "array"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_items(self, obj: Any, key_name: str, value_name: str) -> list[dict[str, Any]]:
        if isinstance(obj, dict):
            return [{key_name: k, value_name: obj[k]} for k in sorted(obj)]
        return [{key_name: i, value_name: v} for i, v in enumerate(obj)]

    @functions.signature({"types": ["array"]}, {"types": ["array"]})
    def _func_object_from_lists(self, keys: list[Any], values: list[Any]) -> dict[str, Any]:
        return {str(k): (values[i] if i < len(values) else None) for i, k in enumerate(keys)}

    @functions.signature({"types": ["object", "array"]}, {"types": ["string", "number"]})
    def _func_lookup(self, obj: Any, key: Any) -> Any:
        if isinstance(obj, dict):
            return obj.get(key) if isinstance(key, str) else None
        if isinstance(key, int | float) and not isinstance(key, bool) and 0 <= int(key) < len(obj):
            return obj[int(key)]
        return None

    @functions.signature({"types": ["string"]})
    def _func_sha256(self, s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()

    @functions.signature({"types": ["string"]})
    def _func_image_normalize(self, image: str) -> str:
        from policies.kyverno.context import parse_image

        info = parse_image(image)
        ref = f"{info['registry']}/{info['path']}"
        if info["tag"]:
            ref += f":{info['tag']}"
        if info["digest"]:
            ref += f"@{info['digest']}"
        return ref

    @functions.signature({"types": ["string"]})
    def _func_is_external_url(self, s: str) -> bool:
        host = re.sub(r"^[a-z]+://", "", s).split("/")[0].split(":")[0]
        return not (
            host in ("localhost", "") or host.startswith(("127.", "10.", "192.168.")) or host.endswith(".local")
        )

    @functions.signature()
    def _func_time_now(self) -> str:
        return datetime.now().astimezone().isoformat(timespec="seconds")

    @functions.signature()
    def _func_time_now_utc(self) -> str:
        return datetime.now(UTC).strftime(_TIME_LAYOUT)

    @functions.signature({"types": ["string"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_time_since(self, _layout: str, t1: str, t2: str) -> str:
        start = _parse_time(t1)
        end = _parse_time(t2) if t2 else datetime.now(UTC)
        return _format_duration(Decimal(str((end - start).total_seconds())))

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_time_add(self, t: str, duration: str) -> str:
        seconds = parse_duration(duration)
        if seconds is None:
            raise jmespath.exceptions.JMESPathError(f"time_add: {duration!r} is not a duration")
        return (_parse_time(t) + timedelta(seconds=float(seconds))).strftime(_TIME_LAYOUT)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_time_diff(self, t1: str, t2: str) -> str:
        return _format_duration(Decimal(str((_parse_time(t2) - _parse_time(t1)).total_seconds())))

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_time_before(self, t1: str, t2: str) -> bool:
        return _parse_time(t1) < _parse_time(t2)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_time_after(self, t1: str, t2: str) -> bool:
        return _parse_time(t1) > _parse_time(t2)

    @functions.signature({"types": ["string"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_time_between(self, t: str, start: str, end: str) -> bool:
        return _parse_time(start) < _parse_time(t) < _parse_time(end)

    @functions.signature({"types": ["string"]})
    def _func_time_utc(self, t: str) -> str:
        return _parse_time(t).astimezone(UTC).strftime(_TIME_LAYOUT)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_time_parse(self, _layout: str, t: str) -> str:
        return _parse_time(t).astimezone(UTC).strftime(_TIME_LAYOUT)

    @functions.signature({"types": ["string"]})
    def _func_time_to_cron(self, t: str) -> str:
        when = _parse_time(t)
        return f"{when.minute} {when.hour} {when.day} {when.month} {(when.weekday() + 1) % 7}"

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_time_truncate(self, t: str, duration: str) -> str:
        seconds = parse_duration(duration)
        if not seconds:
            raise jmespath.exceptions.JMESPathError(f"time_truncate: {duration!r} is not a duration")
        stamp = _parse_time(t).timestamp()
        return datetime.fromtimestamp(math.floor(stamp / float(seconds)) * float(seconds), UTC).strftime(_TIME_LAYOUT)


def _str(value: Any) -> str:
    return go_number_string(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def _semver(text: str) -> tuple[int, int, int, tuple[Any, ...]]:
    m = _SEMVER.match(text.strip())
    if not m:
        raise jmespath.exceptions.JMESPathError(f"{text!r} is not a semantic version")
    pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), pre


def _semver_key(v: tuple[int, int, int, tuple[Any, ...]]) -> tuple[Any, ...]:
    # A release sorts after its pre-releases.
    return (v[0], v[1], v[2], 1 if not v[3] else 0, tuple((isinstance(p, str), p) for p in v[3]))


def _semver_satisfies(version: str, constraint: str) -> bool:
    key = _semver_key(_semver(version))
    for alternative in constraint.split("||"):
        ok = True
        for part in alternative.split():
            m = re.match(r"^(>=|<=|>|<|=|!=)?(.+)$", part)
            if not m:
                ok = False
                break
            op, target = m.group(1) or "=", _semver_key(_semver(m.group(2)))
            ok = {
                ">=": key >= target,
                "<=": key <= target,
                ">": key > target,
                "<": key < target,
                "=": key == target,
                "!=": key != target,
            }[op]
            if not ok:
                break
        if ok:
            return True
    return False


OPTIONS = jmespath.Options(custom_functions=KyvernoFunctions())
_COMPILER = Compiler(OPTIONS)


_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_SIMPLE = re.compile(rf"^({_PATH})(?:\s*\|\|\s*(?:'([^'\\]*)'|`([^`]*)`))?$")
Evaluator = Callable[[Any], Any]


def _walk(keys: tuple[str, ...]) -> Evaluator:
    def get(data: Any) -> Any:
        for key in keys:
            if not isinstance(data, dict):
                return None
            data = data.get(key)
        return data

    return get


def _truthy(value: Any) -> bool:
    """JMESPath truth: null, false and empty strings, lists and objects are false."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


@lru_cache(maxsize=8192)
def compile_expression(expression: str) -> Evaluator:
    """A compiled JMESPath expression; raises VariableError naming it when it is invalid.

    Plain field paths (`request.object.metadata.name`), optionally with a literal
    default (`request.operation || 'BACKGROUND'`), are most of what policies use and are
    evaluated by direct lookups; everything else is parsed by the jmespath package and
    its tree compiled into closures (policies.kyverno.jmescompile)."""
    text = expression.strip()
    m = _SIMPLE.match(text)
    if m:
        get = _walk(tuple(m.group(1).split(".")))
        if m.group(2) is None and m.group(3) is None:
            return get
        default = m.group(2) if m.group(2) is not None else json.loads(m.group(3))
        return lambda data: value if _truthy(value := get(data)) else default
    try:
        parsed = jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as err:
        raise VariableError(f"invalid JMESPath expression {text!r}: {err}") from err
    return _COMPILER.compile(parsed.parsed)


def search(expression: str, data: Any) -> Any:
    """Evaluate; a runtime error (wrong type for a function, ...) names the expression."""
    try:
        return compile_expression(expression)(data)
    except VariableError:
        raise
    except (jmespath.exceptions.JMESPathError, ValueError, TypeError, ArithmeticError, KeyError) as err:
        raise VariableError(f"failed to evaluate {expression.strip()!r}: {err}") from err


def has_variables(value: Any) -> bool:
    """Whether a document holds any `{{ }}` (so documents without any are never walked)."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(has_variables(k) or has_variables(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_variables(v) for v in value)
    return False


class _Variable:
    """One `{{ expr }}` of a template, its expression compiled when the template is."""

    __slots__ = ("source", "expression", "evaluate", "error")

    def __init__(self, source: str) -> None:
        self.source = source
        self.expression = source.strip()
        self.evaluate: Evaluator | None = None
        self.error = ""  # an invalid expression fails when resolved, as Kyverno reports it
        if self.expression != "@":
            try:
                self.evaluate = compile_expression(self.expression)
            except VariableError as err:
                self.error = str(err)

    def resolve(self, ctx: Any, lenient: bool) -> Any:
        if self.evaluate is not None:
            try:
                value = self.evaluate(ctx)
            except (jmespath.exceptions.JMESPathError, ValueError, TypeError, ArithmeticError, KeyError) as err:
                if lenient:
                    return ""
                raise VariableError(f"failed to evaluate {self.expression!r}: {err}") from err
        elif self.error:
            if lenient:
                return ""
            raise VariableError(self.error)
        else:  # `{{@}}`: the current element
            value = ctx.get("@") if isinstance(ctx, dict) else None
        if value is None:
            if lenient:
                return ""
            raise VariableError(f"variable {{{{{self.source}}}}} could not be resolved")
        return value


@lru_cache(maxsize=8192)
def _template(text: str) -> tuple[_Variable | None, tuple[tuple[str, _Variable], ...], str]:
    """A `{{ }}` string split once: (the variable when the whole string is exactly one,
    else None; (literal before, variable) pairs; the literal tail)."""
    matches = list(VARIABLE.finditer(text))
    if len(matches) == 1 and matches[0].start() == 0 and matches[0].end() == len(text):
        return _Variable(matches[0].group(1)), (), ""
    parts: list[tuple[str, _Variable]] = []
    last = 0
    for m in matches:
        parts.append((text[last : m.start()], _Variable(m.group(1))))
        last = m.end()
    return None, tuple(parts), text[last:]


def substitute_string(text: str, ctx: Any, *, lenient: bool = False) -> Any:
    """Replace `{{ expr }}` in a string. A string that is exactly one variable takes the
    variable's type; otherwise values are written into the string (non-strings as JSON).
    Unresolved variables raise VariableError, or read as "" when `lenient` (preconditions
    and conditions, as Kyverno does)."""
    if "{{" not in text:
        return text
    whole, parts, tail = _template(text)
    if whole is not None:
        return whole.resolve(ctx, lenient)
    if not parts:
        return text.replace("\\{{", "{{")
    out: list[str] = []
    for literal, variable in parts:
        out.append(literal)
        out.append(to_json_text(variable.resolve(ctx, lenient)))
    out.append(tail)
    return "".join(out).replace("\\{{", "{{")


def compile_substitution(value: Any, *, lenient: bool = False) -> Callable[[Any], Any]:
    """`substitute(value, ctx, lenient=...)` as a function of the context, for values
    substituted on every request (condition keys and values): a document without
    variables is returned as is, a string that is one variable resolves it directly."""
    if not has_variables(value):
        return lambda _ctx: value
    if isinstance(value, str):
        whole, _, _ = _template(value)
        if whole is not None:
            resolve = whole.resolve
            return lambda ctx: resolve(ctx, lenient)
    return lambda ctx: substitute(value, ctx, lenient=lenient)


def substitute(value: Any, ctx: Any, *, lenient: bool = False) -> Any:
    """Substitute variables throughout a document (keys and values); returns new containers
    only where something changed."""
    if isinstance(value, str):
        return substitute_string(value, ctx, lenient=lenient)
    if isinstance(value, dict):
        return {
            (substitute_string(k, ctx, lenient=lenient) if "{{" in k else k): substitute(v, ctx, lenient=lenient)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute(v, ctx, lenient=lenient) for v in value]
    return value
