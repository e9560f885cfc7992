"""Admission-policy evaluation: Kyverno and CEL policies, image-signature verification."""
