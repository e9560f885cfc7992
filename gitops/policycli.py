"""`gitops policy ...`: run Kyverno CLI test files and evaluate policies ad hoc, with the
same engine the admission gates use."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gitops.yamlload import ManifestError, load_manifests
from policies.engine import POLICY_KINDS, PolicyError, PolicySet
from policies.kyverno.policy import resource_name
from policies.testrunner import find_tests, run_test_file
from policies.types import Obj, Request


@click.group("policy")
def policy() -> None:
    """Test and apply admission policies (Kyverno, CEL, image policies)."""


@policy.command("test")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
def test_command(directory: Path) -> None:
    """Run every kyverno-test.yaml under DIRECTORY; exit 1 when any test file fails."""
    paths = find_tests(directory)
    if not paths:
        raise click.ClickException(f"no kyverno-test.yaml under {directory}")
    root = directory if directory.is_dir() else directory.parent
    passed = failed = 0
    for path in paths:
        report = run_test_file(path)
        click.echo(report.line(root))
        if report.passed:
            passed += 1
        else:
            failed += 1
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def _load(paths: tuple[Path, ...]) -> list[Obj]:
    docs: list[Obj] = []
    for path in paths:
        files = (
            sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
        )
        for file in files:
            try:
                docs.extend(load_manifests(file.read_text(), str(file)))
            except ManifestError as err:
                raise click.ClickException(str(err)) from err
    return docs


@policy.command("apply")
@click.argument("policies", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--resource",
    "-r",
    "resources",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A manifest file (or directory) to evaluate; repeat for more.",
)
@click.option("--operation", default="CREATE", show_default=True, type=click.Choice(["CREATE", "UPDATE", "DELETE"]))
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
def apply_command(policies: tuple[Path, ...], resources: tuple[Path, ...], operation: str, output: str) -> None:
    """Evaluate POLICIES against the resources; exit 1 when an Enforce rule fails."""
    policy_docs = [d for d in _load(policies) if _is_policy(d)]
    if not policy_docs:
        raise click.ClickException("no policy objects in the given files")
    try:
        policy_set = PolicySet.from_objects(policy_docs)
    except PolicyError as err:
        raise click.ClickException(str(err)) from err
    blocked = False
    report: list[dict[str, Any]] = []
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for resource in _load(resources):
        request = Request(operation=operation, object=resource if operation != "DELETE" else None, old_object=resource)
        outcome = policy_set.admit(request)
        blocked = blocked or not outcome.allowed
        name = resource_name(request)
        for r in outcome.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        report.append(
            {
                "resource": name,
                "allowed": outcome.allowed,
                "results": [
                    {"policy": r.policy, "rule": r.rule, "status": r.status, "enforce": r.enforce, "message": r.message}
                    for r in outcome.results
                ],
                **({"patched": outcome.patched} if outcome.patched is not None else {}),
            }
        )
        if output == "text":
            for r in outcome.results:
                mode = "" if r.status == "pass" or r.enforce else " (audit)"
                click.echo(
                    f"{name}: {r.policy}/{r.rule}: {r.status}{mode}" + (f": {r.message}" if r.status != "pass" else "")
                )
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    sys.exit(1 if blocked else 0)


def _is_policy(doc: Obj) -> bool:
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(doc.get("kind", ""))) in POLICY_KINDS
