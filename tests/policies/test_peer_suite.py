"""The whole dev split of the Kyverno policy library (best-practices*, pod-security*:
ClusterPolicy patterns, ClusterPolicy validate.cel and ValidatingPolicy) through the
`gitops policy test` runner: at least 95 % of its test files must pass."""

from __future__ import annotations

from policies.testrunner import find_tests, run_test_file
from tests.policies.conftest import PEER_SUITE

DIRS = (
    "best-practices",
    "pod-security",
    "best-practices-cel",
    "pod-security-cel",
    "best-practices-vpol",
    "pod-security-vpol",
)


def test_peer_suite_pass_ratio() -> None:
    reports = [run_test_file(path) for d in DIRS for path in find_tests(PEER_SUITE / d)]
    assert len(reports) == 103, f"expected the 103 test files of the dev split, found {len(reports)}"
    failed = [r.line(PEER_SUITE) for r in reports if not r.passed]
    ratio = (len(reports) - len(failed)) / len(reports)
    print(f"peer suite: {len(reports) - len(failed)}/{len(reports)} test files pass ({ratio:.1%})")
    for line in failed:
        print(line)
    assert ratio >= 0.95, "\n".join(failed)
    assert all(r.checked > 0 for r in reports)


def test_pattern_policies_all_pass() -> None:
    """The pattern/anchor/JMESPath policies (this engine's own part) pass without exception."""
    reports = [run_test_file(p) for d in ("best-practices", "pod-security") for p in find_tests(PEER_SUITE / d)]
    assert len(reports) == 40
    failed = [r.line(PEER_SUITE) for r in reports if not r.passed]
    assert not failed, "\n".join(failed)
