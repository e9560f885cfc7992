"""Autogen: Kyverno writes Pod rules a second time for the pod controllers, so a policy
about Pods also stops a Deployment whose template would create a violating Pod.

The generated rules are named `autogen-<rule>` (Deployment, DaemonSet, StatefulSet,
ReplicaSet, ReplicationController, Job) and `autogen-cronjob-<rule>` (CronJob). Patterns
are nested under the pod template, and variables that read the Pod
(`request.object.spec`, `request.object.metadata`, CEL's `object.spec`) are rewritten to
read the template instead."""

from __future__ import annotations

import json
import re
from typing import Any

from policies.types import Obj

ANNOTATION = "pod-policies.kyverno.io/autogen-controllers"
DEFAULT_CONTROLLERS = (
    "DaemonSet",
    "Deployment",
    "Job",
    "StatefulSet",
    "ReplicaSet",
    "ReplicationController",
    "CronJob",
)
_POD_REFERENCE = re.compile(r"(?<![\w.])((?:request\.)?(?:object|oldObject))\.(spec|metadata)\b")
_TEMPLATE = {"pod": "spec.template", "cronjob": "spec.jobTemplate.spec.template"}


def _descriptions(block: Any) -> list[Obj]:
    if not isinstance(block, dict):
        return []
    out = [f.get("resources") or {} for f in (block.get("any") or []) + (block.get("all") or []) if isinstance(f, dict)]
    if block.get("resources"):
        out.append(block["resources"])
    return out


def _supports(desc: Obj) -> bool:
    kinds = [str(k) for k in desc.get("kinds") or []]
    if desc.get("name") or desc.get("names") or desc.get("selector") is not None or desc.get("annotations"):
        return False
    return not (len(kinds) > 1 and any(_is_pod(k) for k in kinds))


def _is_pod(kind: str) -> bool:
    return kind == "Pod" or kind.endswith("/Pod")


def controllers_for(policy: Obj) -> tuple[str, ...]:
    """The pod controllers this policy's Pod rules are copied onto (empty: none)."""
    annotations = (policy.get("metadata") or {}).get("annotations") or {}
    rules = (policy.get("spec") or {}).get("rules") or []
    if ANNOTATION in annotations:
        value = str(annotations[ANNOTATION]).strip()
        if value.lower() == "none" or not value:
            return ()
        return tuple(c.strip() for c in value.split(",") if c.strip())
    needed = False
    for rule in rules:
        if rule.get("generate") or (rule.get("mutate") or {}).get("patchesJson6902"):
            return ()
        for desc in _descriptions(rule.get("match")) + _descriptions(rule.get("exclude")):
            if not _supports(desc):
                return ()
            needed = needed or any(_is_pod(str(k)) for k in desc.get("kinds") or [])
    return DEFAULT_CONTROLLERS if needed else ()


def _rewrite(value: Any, target: str) -> Any:
    """Point every Pod reference in a document at the template (via JSON text)."""
    text = json.dumps(value)
    rewritten = _POD_REFERENCE.sub(lambda m: f"{m.group(1)}.{_TEMPLATE[target]}.{m.group(2)}", text)
    return json.loads(rewritten) if rewritten != text else value


def _nest(pattern: Any, target: str) -> Any:
    if target == "pod":
        return {"spec": {"template": pattern}}
    return {"spec": {"jobTemplate": {"spec": {"template": pattern}}}}


def _replace_kinds(block: Any, kinds: list[str]) -> Any:
    if not isinstance(block, dict):
        return block
    out: Obj = {}
    for key, value in block.items():
        if key in ("any", "all"):
            out[key] = [_replace_kinds(f, kinds) for f in value or []]
        elif key == "resources" and isinstance(value, dict):
            res = dict(value)
            if res.get("kinds"):
                res["kinds"] = list(kinds) if any(_is_pod(str(k)) for k in res["kinds"]) else res["kinds"]
            out[key] = res
        else:
            out[key] = value
    return out


def _matches_pod(rule: Obj) -> bool:
    kinds = [str(k) for d in _descriptions(rule.get("match")) for k in d.get("kinds") or []]
    return any(_is_pod(k) for k in kinds)


def autogen_rules(rule: Obj, controllers: tuple[str, ...]) -> list[Obj]:
    """The autogen copies of one rule (none when it is not about Pods)."""
    if not controllers or not _matches_pod(rule) or str(rule.get("name", "")).startswith("autogen-"):
        return []
    out: list[Obj] = []
    plain = [c for c in controllers if c != "CronJob"]
    if plain:
        out.append(_generate(rule, f"autogen-{rule.get('name')}", plain, "pod"))
    if "CronJob" in controllers:
        out.append(_generate(rule, f"autogen-cronjob-{rule.get('name')}", ["CronJob"], "cronjob"))
    return out


def _generate(rule: Obj, name: str, kinds: list[str], target: str) -> Obj:
    new: Obj = {"name": name}
    for key, value in rule.items():
        if key == "name":
            continue
        if key in ("match", "exclude"):
            new[key] = _replace_kinds(value, kinds)
        elif key == "validate" and isinstance(value, dict):
            new[key] = _validate(value, target)
        elif key == "mutate" and isinstance(value, dict):
            new[key] = _mutate(value, target)
        else:
            new[key] = _rewrite(value, target)
    return new


def _validate(validate: Obj, target: str) -> Obj:
    out: Obj = {}
    for key, value in validate.items():
        if key == "pattern":
            out[key] = _nest(value, target)
        elif key == "anyPattern" and isinstance(value, list):
            out[key] = [_nest(p, target) for p in value]
        elif key == "podSecurity":
            out[key] = value
        else:
            out[key] = _rewrite(value, target)
    return out


def _mutate(mutate: Obj, target: str) -> Obj:
    out: Obj = {}
    for key, value in mutate.items():
        if key == "patchStrategicMerge":
            out[key] = _nest(value, target)
        elif key == "foreach" and isinstance(value, list):
            out[key] = [_mutate(entry, target) if isinstance(entry, dict) else entry for entry in value]
        else:
            out[key] = _rewrite(value, target)
    return out
