"""Keyless verification with the `sigstore` package, offline, on a real bundle from GitHub
Actions (../shared/fixtures/sigstore), and the identity policies Kyverno and
ClusterImagePolicy spell (exact, regexp, Kyverno's subject wildcards)."""

from __future__ import annotations

import pytest

from policies.images import KeylessAuthority
from policies.images.keyless import KeylessError, verify_blob
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "sigstore"
IDENTITY = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def artifact() -> tuple[bytes, bytes]:
    return (FIXTURES / "bundle_v3_github.whl").read_bytes(), (FIXTURES / "bundle_v3_github.whl.sigstore").read_bytes()


@pytest.mark.parametrize(
    "authority",
    [
        KeylessAuthority(subject=IDENTITY, issuer=ISSUER),
        KeylessAuthority(subject="https://github.com/trailofbits/*", issuer=ISSUER),
        KeylessAuthority(
            subject_regexp=r"https://github\.com/trailofbits/.+@refs/tags/v.*", issuer_regexp=r"https://.*"
        ),
    ],
    ids=["exact", "wildcard", "regexp"],
)
def test_bundle_verifies_for_its_identity(artifact: tuple[bytes, bytes], authority: KeylessAuthority):
    verify_blob(*artifact, authority)


@pytest.mark.parametrize(
    ("authority", "reason"),
    [
        (KeylessAuthority(subject=IDENTITY.replace("v0.1.2", "v0.1.3"), issuer=ISSUER), "SANs do not match"),
        (KeylessAuthority(subject=IDENTITY, issuer="https://accounts.google.com"), "OIDCIssuer does not match"),
        (KeylessAuthority(subject_regexp=r"https://github\.com/sigstore/.*", issuer=ISSUER), "do not match"),
    ],
    ids=["wrong-identity", "wrong-issuer", "wrong-regexp"],
)
def test_bundle_fails_for_another_identity(artifact: tuple[bytes, bytes], authority: KeylessAuthority, reason: str):
    with pytest.raises(KeylessError, match=reason):
        verify_blob(*artifact, authority)


def test_bundle_fails_for_another_artifact(artifact: tuple[bytes, bytes]):
    with pytest.raises(KeylessError):
        verify_blob(artifact[0] + b"tampered", artifact[1], KeylessAuthority(subject=IDENTITY, issuer=ISSUER))
