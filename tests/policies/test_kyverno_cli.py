"""`gitops policy test` and `gitops policy apply` as a user runs them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gitops.cli import main
from tests.policies.conftest import PEER_SUITE

POLICY = """\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-team
spec:
  validationFailureAction: Enforce
  rules:
  - name: team-label
    match:
      any:
      - resources:
          kinds: [Pod]
    validate:
      message: "The label `team` is required."
      pattern:
        metadata:
          labels:
            team: "?*"
"""
RESOURCES = """\
apiVersion: v1
kind: Pod
metadata: {name: good, namespace: shop, labels: {team: core}}
spec: {containers: [{name: a, image: x:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: shop}
spec: {containers: [{name: a, image: x:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata: {labels: {team: core}}
    spec: {containers: [{name: a, image: x:1}]}
"""


def test_policy_test_reports_each_file_and_a_total(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "resources.yaml").write_text(RESOURCES)
    good = tmp_path / "good"
    good.mkdir()
    (good / "kyverno-test.yaml").write_text(
        """\
policies: [../policy.yaml]
resources: [../resources.yaml]
results:
- {policy: require-team, rule: team-label, kind: Pod, resources: [good], result: pass}
- {policy: require-team, rule: team-label, kind: Pod, resources: [bad], result: fail}
- {policy: require-team, rule: team-label, kind: Deployment, resources: [web], result: pass}
"""
    )
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "kyverno-test.yaml").write_text(
        """\
policies: [../policy.yaml]
resources: [../resources.yaml]
results:
- {policy: require-team, rule: team-label, kind: Pod, resources: [bad], result: pass}
"""
    )
    result = CliRunner().invoke(main, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "good/kyverno-test.yaml: PASS (3 expectations)"
    assert lines[1].startswith("wrong/kyverno-test.yaml: FAIL (1 of 1 expectations: require-team/team-label Pod/bad: ")
    assert "expected pass, got fail" in lines[1]
    assert lines[-1] == "1 passed, 1 failed"


def test_policy_test_on_the_peer_suite_directory() -> None:
    result = CliRunner().invoke(main, ["policy", "test", str(PEER_SUITE / "best-practices")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "18 passed, 0 failed"


def test_policy_apply_blocks_on_enforce_failures(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "resources.yaml").write_text(RESOURCES)
    result = CliRunner().invoke(
        main, ["policy", "apply", str(tmp_path / "policy.yaml"), "-r", str(tmp_path / "resources.yaml")]
    )
    assert result.exit_code == 1, result.output
    assert (
        "Pod/shop/bad: require-team/team-label: fail: validation error: The label `team` is required. "
        "rule team-label failed at path /metadata/labels/"
    ) in result.output
    assert "Deployment/shop/web: require-team/autogen-team-label: pass" in result.output
    assert result.output.splitlines()[-1] == "2 passed, 1 failed, 0 skipped"
