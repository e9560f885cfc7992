"""Behaviour rules for the simulated kubelet: how long images take to pull, which pulls
fail, which containers crash or run to completion, how long they take to stop.

A rule file (`ClusterConfig.kubelet_rules`, or `kubeletRules:` in a cluster file) is
YAML, in the spirit of kwok's stages::

    backOff:                      # CrashLoopBackOff and ImagePullBackOff delays
      initialSeconds: 10          # the first delay; it doubles after each failure...
      maxSeconds: 300             # ...up to this cap
    rules:                        # matched in order for every container; first match wins
    - name: broken-images         # optional; named in logs and errors
      match:                      # every field given must match; globs (* ? [abc]) allowed
        image: "*:broken"         #   the container's image, as written in the pod spec
        container: "*"            #   the container's name
        namespace: "team-*"       #   the pod's namespace
        podLabels: {app: "web*"}  #   each label must exist and match
        ownerKind: Job            #   kind of the pod's controller (ownerReference)
      pull: {seconds: 0.05, fail: true, reason: ErrImagePull, message: "..."}
      start: {seconds: 0.05}      # create + start of the container once the image is there
      run: {crashAfterSeconds: 1, exitCode: 1}   # or completeAfterSeconds; reason optional
      readiness: {fail: true}     # a readinessProbe never passes (Unhealthy events)
      stop: {seconds: 0.2}        # time to exit after SIGTERM, capped by the grace period

Sections left out take the defaults shown (pull 0.05 s, start 0.05 s, runs forever,
ready once started or after the readinessProbe's initialDelaySeconds, stops in 0.2 s).
Built-in rules follow yours: containers of pods owned by a Job complete after 1 s with
exit code 0, and every other container pulls, starts and runs. Init containers that
no rule makes complete or crash complete after 0.1 s.

`run.exitCode` defaults to 1 for a crash and 0 for a completion; `run.reason` defaults
to Completed for exit code 0 and Error otherwise (OOMKilled is a common override).
Whether a finished container restarts follows the pod's restartPolicy, with the
back-off above."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

INIT_RUN_SECONDS = 0.1  # how long an init container runs when no rule says otherwise
JOB_RUN_SECONDS = 1.0  # how long a Job's container runs by default


class KubeletRulesError(ValueError):
    """A rule file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Match:
    image: str = ""
    container: str = ""
    namespace: str = ""
    pod_labels: dict[str, str] = field(default_factory=dict)
    owner_kind: str = ""

    def matches(self, pod: Obj, container: Obj) -> bool:
        meta = pod.get("metadata") or {}
        if not _glob(self.image, container.get("image") or ""):
            return False
        if not _glob(self.container, container.get("name") or ""):
            return False
        if not _glob(self.namespace, meta.get("namespace") or ""):
            return False
        labels = meta.get("labels") or {}
        if any(k not in labels or not fnmatch.fnmatchcase(labels[k], v) for k, v in self.pod_labels.items()):
            return False
        if self.owner_kind:
            owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
            return owner is not None and owner.get("kind") == self.owner_kind
        return True


def _glob(pattern: str, value: str) -> bool:
    return not pattern or fnmatch.fnmatchcase(value, pattern)


@dataclass(frozen=True)
class Pull:
    seconds: float = 0.05
    fail: bool = False
    reason: str = "ErrImagePull"
    message: str = ""


@dataclass(frozen=True)
class Run:
    crash_after_seconds: float | None = None
    complete_after_seconds: float | None = None
    exit_code: int | None = None
    reason: str = ""

    def exit_after(self, init: bool) -> float | None:
        """Seconds from start to exit, or None for a container that runs until stopped."""
        if self.crash_after_seconds is not None:
            return self.crash_after_seconds
        if self.complete_after_seconds is not None:
            return self.complete_after_seconds
        return INIT_RUN_SECONDS if init else None

    def exit_status(self) -> tuple[int, str]:
        """(exit code, terminated reason) of a container that exits by itself."""
        code = self.exit_code if self.exit_code is not None else (1 if self.crash_after_seconds is not None else 0)
        return code, self.reason or ("Completed" if code == 0 else "Error")


@dataclass(frozen=True)
class Behaviour:
    """What the simulated runtime does with one container."""

    pull: Pull = Pull()
    start_seconds: float = 0.05
    run: Run = Run()
    readiness_fails: bool = False
    stop_seconds: float = 0.2


@dataclass(frozen=True)
class Rule:
    match: Match
    behaviour: Behaviour
    name: str = ""


@dataclass(frozen=True)
class BackOff:
    initial_seconds: float = 10.0
    max_seconds: float = 300.0

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th consecutive failure (1-based): 10s, 20s, 40s..."""
        return min(self.initial_seconds * 2 ** max(failures - 1, 0), self.max_seconds)


BUILTIN_RULES: tuple[Rule, ...] = (
    Rule(Match(owner_kind="Job"), Behaviour(run=Run(complete_after_seconds=JOB_RUN_SECONDS)), "job-pods-complete"),
    Rule(Match(), Behaviour(), "default"),
)


@dataclass(frozen=True)
class KubeletRules:
    rules: tuple[Rule, ...] = ()
    back_off: BackOff = BackOff()

    def behaviour(self, pod: Obj, container: Obj) -> Behaviour:
        """The behaviour of the first rule (yours, then the built-in ones) matching."""
        for rule in (*self.rules, *BUILTIN_RULES):
            if rule.match.matches(pod, container):
                return rule.behaviour
        raise AssertionError("the built-in default rule matches everything")

    @classmethod
    def load(cls, path: Path | None) -> KubeletRules:
        """The rules in `path`, or the built-in behaviour for None."""
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise KubeletRulesError(f"{path}: cannot read kubelet rules: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise KubeletRulesError(f"{path}: not valid YAML: {exc}") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, source: str = "<rules>") -> KubeletRules:
        """Rules from already-parsed YAML; errors name `source` and the offending field."""
        top = _Fields(data if data is not None else {}, source, "", ("backOff", "rules"))
        back = top.section("backOff", ("initialSeconds", "maxSeconds"))
        back_off = BackOff(back.seconds("initialSeconds", 10.0), back.seconds("maxSeconds", 300.0))
        if back_off.initial_seconds <= 0:
            raise KubeletRulesError(f"{source}: backOff.initialSeconds: must be more than 0")
        raw_rules = top.get("rules", list, [])
        rules = tuple(_parse_rule(item, source, f"rules[{i}]") for i, item in enumerate(raw_rules))
        return cls(rules, back_off)


def _parse_rule(item: Any, source: str, where: str) -> Rule:
    f = _Fields(item, source, where, ("name", "match", "pull", "start", "run", "readiness", "stop"))
    m = f.section("match", ("image", "container", "namespace", "podLabels", "ownerKind"))
    labels = m.get("podLabels", dict, {})
    for k, v in labels.items():
        if not isinstance(v, str):
            raise KubeletRulesError(f"{source}: {where}.match.podLabels.{k}: must be a string (a glob)")
    match = Match(
        m.get("image", str, ""),
        m.get("container", str, ""),
        m.get("namespace", str, ""),
        dict(labels),
        m.get("ownerKind", str, ""),
    )
    p = f.section("pull", ("seconds", "fail", "reason", "message"))
    pull = Pull(
        p.seconds("seconds", 0.05),
        p.get("fail", bool, False),
        p.get("reason", str, "ErrImagePull"),
        p.get("message", str, ""),
    )
    r = f.section("run", ("crashAfterSeconds", "completeAfterSeconds", "exitCode", "reason"))
    crash, complete = r.seconds("crashAfterSeconds", None), r.seconds("completeAfterSeconds", None)
    if crash is not None and complete is not None:
        raise KubeletRulesError(f"{source}: {where}.run: give crashAfterSeconds or completeAfterSeconds, not both")
    run = Run(crash, complete, r.get("exitCode", int, None), r.get("reason", str, ""))
    behaviour = Behaviour(
        pull=pull,
        start_seconds=f.section("start", ("seconds",)).seconds("seconds", 0.05),
        run=run,
        readiness_fails=f.section("readiness", ("fail",)).get("fail", bool, False),
        stop_seconds=f.section("stop", ("seconds",)).seconds("seconds", 0.2),
    )
    return Rule(match, behaviour, f.get("name", str, ""))


class _Fields:
    """Typed access to one mapping of the rule file, with errors that say where."""

    def __init__(self, data: Any, source: str, where: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise KubeletRulesError(f"{source}: {where or 'the file'}: must be a mapping")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise KubeletRulesError(
                f"{source}: {self._path(where, str(unknown[0]))}: unknown field (allowed: {', '.join(allowed)})"
            )
        self.data, self.source, self.where = data, source, where

    @staticmethod
    def _path(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def _error(self, key: str, what: str) -> KubeletRulesError:
        return KubeletRulesError(f"{self.source}: {self._path(self.where, key)}: {what}")

    def get(self, key: str, kind: type, default: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        # bool is an int in Python: an exit code of `true` is a mistake, not 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self._error(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def seconds(self, key: str, default: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self._error(key, "must be a number of seconds >= 0")
        return float(value)

    def section(self, key: str, allowed: tuple[str, ...]) -> _Fields:
        return _Fields(self.get(key, dict, {}), self.source, self._path(self.where, key), allowed)
