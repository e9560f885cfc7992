"""The CEL policies of the peer suite (kyverno/policies' *-cel and *-vpol directories:
ClusterPolicy `validate.cel` rules and ValidatingPolicies) through `gitops policy test`'s
runner, against their own kyverno-test.yaml expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.testrunner import find_tests, run_test_file
from tests.conftest import SHARED

SUITE = SHARED / "peer-suites" / "kyverno-policies"
DIRS = ("best-practices-cel", "pod-security-cel", "best-practices-vpol", "pod-security-vpol")
TEST_FILES = sorted(t for d in DIRS for t in find_tests(SUITE / d))


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: str(p.parent.parent.relative_to(SUITE)))
def test_peer_suite_file(test_file: Path) -> None:
    report = run_test_file(test_file)
    assert report.passed, report.line(SUITE)
    assert report.checked > 0


def test_every_cel_test_file_of_the_dev_split_is_found() -> None:
    assert len(TEST_FILES) == 63
