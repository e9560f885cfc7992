"""Kyverno `ClusterPolicy` / `Policy` (kyverno.io/v1, v2beta1) compiled for evaluation."""

from policies.kyverno.policy import KyvernoPolicy, KyvernoPolicyError, compile_policy

__all__ = ["KyvernoPolicy", "KyvernoPolicyError", "compile_policy"]
