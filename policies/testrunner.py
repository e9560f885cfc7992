"""`gitops policy test`: runs Kyverno CLI test files (`kyverno-test.yaml`).

A test file names policy files, resource files, optional variables/values and user info,
and the expected results: for a policy (and rule), a resource kind and names, the result
pass | fail | skip | warn | error, plus the expected object after mutation
(`patchedResources`) or the object a generate rule creates (`generatedResource`).
Every policy is applied to every resource as an admission CREATE (or the operation the
values set), mutate first and then validate on the mutated object, as the Kyverno CLI
does; each expectation is then checked against what the engine reported."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitops.yamlload import ManifestError, load_manifests, load_yaml
from policies.engine import PolicyError, PolicySet
from policies.types import Obj, Request, RuleResult

TEST_FILE = "kyverno-test.yaml"
_DETAIL = 200  # characters of an engine message quoted in a failure line


class TestFileError(ValueError):
    """A test file that cannot be run; the message names the file and field."""


@dataclass
class Evaluation:
    """Everything the engine said about one resource under one policy."""

    resource: Obj
    results: list[RuleResult]
    patched: Obj | None
    generated: list[Obj]


@dataclass
class TestReport:
    path: Path
    failures: list[str] = field(default_factory=list)
    checked: int = 0
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures and not self.error

    def line(self, root: Path | None = None) -> str:
        shown = self.path.relative_to(root) if root and self.path.is_relative_to(root) else self.path
        if self.error:
            return f"{shown}: FAIL ({self.error})"
        if self.failures:
            return f"{shown}: FAIL ({len(self.failures)} of {self.checked} expectations: {'; '.join(self.failures)})"
        return f"{shown}: PASS ({self.checked} expectations)"


class MemoryLookup:
    """The cluster as a test file describes it: its resources and namespaces."""

    def __init__(self, objects: list[Obj]) -> None:
        self.objects = objects

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        for obj in self.list(api_version, kind, namespace):
            if (obj.get("metadata") or {}).get("name") == name:
                return obj
        return None

    def list(self, api_version: str, kind: str, namespace: str = "") -> list[Obj]:
        return [
            o
            for o in self.objects
            if o.get("kind") == kind
            and o.get("apiVersion") == api_version
            and (not namespace or (o.get("metadata") or {}).get("namespace", "") == namespace)
        ]


def find_tests(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(root.rglob(TEST_FILE))


def _load_file(path: Path) -> list[Obj]:
    try:
        return load_manifests(path.read_text(), str(path))
    except OSError as err:
        raise TestFileError(f"{path}: cannot read: {err.strerror}") from err


def _files(base: Path, entries: Any, field_name: str, test: Path) -> Iterator[Path]:
    if entries is None:
        return
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list):
        raise TestFileError(f"{test}: {field_name} must be a list of file paths")
    for entry in entries:
        path = (base / str(entry)).resolve()
        if not path.exists():
            raise TestFileError(f"{test}: {field_name}: {entry} does not exist")
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        else:
            yield path


class _Values:
    """The test's `variables`/`values`: global values, per policy/rule/resource values,
    namespace labels and Namespace objects."""

    def __init__(self, raw: Any) -> None:
        raw = raw if isinstance(raw, dict) else {}
        self.global_values: dict[str, Any] = dict(raw.get("globalValues") or {})
        self.rule_values: dict[tuple[str, str], dict[str, Any]] = {}
        self.resource_values: dict[tuple[str, str], dict[str, Any]] = {}
        for p in raw.get("policies") or []:
            pname = str(p.get("name", ""))
            for r in p.get("rules") or []:
                self.rule_values[(pname, str(r.get("name", "")))] = dict(r.get("values") or {})
            for res in p.get("resources") or []:
                self.resource_values[(pname, str(res.get("name", "")))] = dict(res.get("values") or {})
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.namespaces: list[Obj] = []
        for ns in raw.get("namespaces") or []:
            meta = ns.get("metadata") or {}
            self.namespace_labels[str(meta.get("name", ""))] = dict(meta.get("labels") or {})
            self.namespaces.append({"apiVersion": "v1", "kind": "Namespace", **ns})
        for sel in raw.get("namespaceSelector") or []:
            self.namespace_labels.setdefault(str(sel.get("name", "")), {}).update(sel.get("labels") or {})


def _expected_results(test: Obj, path: Path) -> list[Obj]:
    results = test.get("results") or []
    if not isinstance(results, list):
        raise TestFileError(f"{path}: results must be a list")
    return results


def run_test_file(path: Path) -> TestReport:
    report = TestReport(path)
    try:
        _run(path, report)
    except (TestFileError, ManifestError, PolicyError) as err:
        report.error = str(err)
    return report


def _run(path: Path, report: TestReport) -> None:
    test = load_yaml(path.read_text(), str(path)) or {}
    if not isinstance(test, dict):
        raise TestFileError(f"{path}: not a test object")
    base = path.parent
    policy_docs = [d for f in _files(base, test.get("policies"), "policies", path) for d in _load_file(f)]
    resources = [d for f in _files(base, test.get("resources"), "resources", path) for d in _load_file(f)]
    values_raw: Any = test.get("values")
    if test.get("variables"):
        files = list(_files(base, test.get("variables"), "variables", path))
        values_raw = load_yaml(files[0].read_text(), str(files[0])) if files else None
    values = _Values(values_raw)
    user = _user_info(base, test, path)
    policy_set = PolicySet.from_objects(policy_docs)
    evaluations = _evaluate(policy_set, resources, values, user)
    for expected in _expected_results(test, path):
        _check(expected, evaluations, base, path, report)


def _user_info(base: Path, test: Obj, path: Path) -> dict[str, Any]:
    if not test.get("userinfo"):
        return {}
    files = list(_files(base, test.get("userinfo"), "userinfo", path))
    raw = load_yaml(files[0].read_text(), str(files[0])) if files else None
    return raw if isinstance(raw, dict) else {}


def _request(resource: Obj, values: _Values, user: dict[str, Any], extra: dict[str, Any]) -> Request:
    meta = resource.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    operation = str(extra.get("request.operation") or values.global_values.get("request.operation") or "CREATE")
    info = user.get("userInfo") or {}
    kwargs: dict[str, Any] = {
        "operation": operation,
        "object": resource if operation != "DELETE" else None,
        "old_object": resource if operation in ("DELETE", "UPDATE") else None,
        "namespace_labels": values.namespace_labels.get(namespace, {}),
        "roles": tuple(str(r) for r in user.get("roles") or ()),
        "cluster_roles": tuple(str(r) for r in user.get("clusterRoles") or ()),
    }
    if info.get("username"):
        kwargs["username"] = str(info["username"])
    if info.get("groups"):
        kwargs["groups"] = tuple(str(g) for g in info["groups"])
    return Request(**kwargs)


def _evaluate(
    policy_set: PolicySet, resources: list[Obj], values: _Values, user: dict[str, Any]
) -> dict[str, list[Evaluation]]:
    """policy name -> one Evaluation per resource."""
    from policies.kyverno import KyvernoPolicy

    out: dict[str, list[Evaluation]] = {}
    lookup = MemoryLookup(resources + values.namespaces)
    for policy in policy_set.policies:
        evaluations = out.setdefault(policy.name, [])
        for resource in resources:
            name = str((resource.get("metadata") or {}).get("name", ""))
            extra = {**values.global_values, **values.resource_values.get((policy.name, name), {})}
            if isinstance(policy, KyvernoPolicy):
                policy.preset = {
                    r.name: {**extra, **values.rule_values.get((policy.name, _base_rule(r.name)), {})}
                    for r in policy.rules
                }
            request = _request(resource, values, user, extra)
            mutated = policy.mutate(request, lookup)
            patched = mutated.patched
            if patched is not None:
                request = replace(request, object=patched)
            validated = (
                policy.validate(request, lookup, None)
                if isinstance(policy, KyvernoPolicy)
                else policy.validate(request, lookup)
            )
            evaluations.append(Evaluation(resource, mutated.results + validated.results, patched, validated.generated))
    return out


def _base_rule(name: str) -> str:
    for prefix in ("autogen-cronjob-", "autogen-"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _rule_matches(expected: str, actual: str) -> bool:
    return not expected or actual in (expected, f"autogen-{expected}", f"autogen-cronjob-{expected}")


def _actual_status(results: list[RuleResult]) -> str:
    statuses = {r.status for r in results}
    for status in ("error", "fail", "warn", "pass"):
        if status in statuses:
            return status
    return "skip"


def _resource_matches(resource: Obj, kind: str, ref: str, namespace: str) -> bool:
    meta = resource.get("metadata") or {}
    if kind and resource.get("kind") != kind:
        return False
    name = str(meta.get("name", ""))
    ns = str(meta.get("namespace") or "")
    if "/" in ref:
        ref_ns, _, ref_name = ref.rpartition("/")
        return name == ref_name and ns == ref_ns
    return name == ref and (not namespace or ns == namespace)


def _check(expected: Obj, evaluations: dict[str, list[Evaluation]], base: Path, path: Path, report: TestReport) -> None:
    policy = str(expected.get("policy", "")).rpartition("/")[2]
    rule = str(expected.get("rule", "") or "")
    kind = str(expected.get("kind", "") or "")
    want = str(expected.get("result", "") or expected.get("status", "")).lower()
    refs = list(expected.get("resources") or [])
    if expected.get("resource"):
        refs.append(expected["resource"])
    if policy not in evaluations:
        report.checked += 1
        report.failures.append(f"policy {policy} not found in the test's policies")
        return
    for ref in refs:
        report.checked += 1
        label = f"{policy}/{rule or '*'} {kind}/{ref}"
        matches = [e for e in evaluations[policy] if _resource_matches(e.resource, kind, str(ref), "")]
        if not matches:
            report.failures.append(f"{label}: resource not found")
            continue
        results = [r for e in matches for r in e.results if _rule_matches(rule, r.rule)]
        got = _actual_status(results)
        if want == "warn" and any(r.status == "fail" and not r.enforce for r in results):
            got = "warn"
        if got != want:
            detail = next((r.message for r in results if r.status == got and r.message), "")
            if len(detail) > _DETAIL:
                detail = detail[: _DETAIL - 3] + "..."
            report.failures.append(f"{label}: expected {want}, got {got}" + (f" ({detail})" if detail else ""))
            continue
        patched_file = expected.get("patchedResources") or expected.get("patchedResource")
        if patched_file:
            patched = [e.patched or e.resource for e in matches]
            _check_object(base / str(patched_file), patched, label, "patched", report, exact=True)
        generated_file = expected.get("generatedResource")
        if generated_file:
            generated = [g for e in matches for g in e.generated]
            _check_object(base / str(generated_file), generated, label, "generated", report, exact=False)


def _check_object(file: Path, actual: list[Obj], label: str, what: str, report: TestReport, *, exact: bool) -> None:
    try:
        wanted = load_manifests(file.read_text(), str(file))
    except OSError as err:
        report.failures.append(f"{label}: cannot read {file.name}: {err.strerror}")
        return
    for want in wanted:
        meta = want.get("metadata") or {}
        candidates = [
            a
            for a in actual
            if a.get("kind") == want.get("kind") and (a.get("metadata") or {}).get("name") == meta.get("name")
        ]
        if not any((a == want) if exact else _contains(a, want) for a in candidates):
            report.failures.append(f"{label}: {what} {want.get('kind')}/{meta.get('name')} differs from {file.name}")


def _contains(actual: Any, expected: Any) -> bool:
    """The expected document is part of the actual one (generated objects may carry more,
    e.g. the labels Kyverno puts on what it generates)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(_contains(actual.get(k), v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(_contains, actual, expected))
    return bool(actual == expected)


def run_tests(root: Path) -> list[TestReport]:
    return [run_test_file(p) for p in find_tests(root)]
