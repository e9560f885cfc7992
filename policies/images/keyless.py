"""Keyless verification: Sigstore bundles checked with the `sigstore` package, offline.

The trust root is the one built into `sigstore` (no TUF refresh at admission time, so a
network blip cannot turn into an outage); the identity policy is sigstore's own `Identity`
for exact subject/issuer and a pattern policy for regexps and Kyverno's subject wildcards."""

from __future__ import annotations

from functools import cache

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError
from sigstore.models import Bundle
from sigstore.verify import Verifier, policy

from policies.images.authority import KeylessAuthority

_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw bytes
_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
_OTHERNAME_SAN = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


class KeylessError(Exception):
    """A bundle that does not verify, or verifies for someone else."""


@cache
def sigstore_verifier() -> Verifier:
    """Sigstore production trust (Fulcio, Rekor, CT log keys) from the package, offline."""
    return Verifier.production(offline=True)


def _der_utf8(raw: bytes) -> str:
    if len(raw) < 2 or raw[0] != 0x0C:
        raise KeylessError("certificate issuer extension is not a UTF8String")
    length, offset = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, offset = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
    return raw[offset : offset + length].decode()


def certificate_issuer(cert: x509.Certificate) -> str:
    """The OIDC issuer Fulcio recorded in the certificate (v2 extension first)."""
    for oid, decode in ((_ISSUER_V2, _der_utf8), (_ISSUER_V1, bytes.decode)):
        try:
            ext = cert.extensions.get_extension_for_oid(oid)
        except x509.ExtensionNotFound:
            continue
        return decode(ext.value.value)  # type: ignore[attr-defined]
    return ""


def certificate_identities(cert: x509.Certificate) -> set[str]:
    """The certificate's SANs: emails, URIs and Sigstore's own other-name identities."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    values = set(san.get_values_for_type(x509.RFC822Name))
    values |= set(san.get_values_for_type(x509.UniformResourceIdentifier))
    values |= {o.value.decode() for o in san.get_values_for_type(x509.OtherName) if o.type_id == _OTHERNAME_SAN}
    return values


class PatternIdentity:
    """A sigstore VerificationPolicy for regexp subjects/issuers and wildcard subjects."""

    def __init__(self, authority: KeylessAuthority) -> None:
        self.authority = authority

    def verify(self, cert: x509.Certificate) -> None:
        issuer = certificate_issuer(cert)
        if not self.authority.issuer_matches(issuer):
            raise VerificationError(f"certificate issuer {issuer!r} does not match {self.authority.describe()}")
        sans = certificate_identities(cert)
        if not any(self.authority.subject_matches(s) for s in sans):
            raise VerificationError(f"certificate identities {sorted(sans)} do not match {self.authority.describe()}")


def identity_policy(authority: KeylessAuthority) -> policy.VerificationPolicy:
    exact = not (authority.subject_regexp or authority.issuer_regexp or "*" in authority.subject)
    if exact and authority.issuer:
        return policy.Identity(identity=authority.subject, issuer=authority.issuer)
    return PatternIdentity(authority)


def _bundle(bundle_json: bytes) -> Bundle:
    try:
        return Bundle.from_json(bundle_json)
    except (SigstoreError, ValueError) as e:
        raise KeylessError(f"not a Sigstore bundle: {e}") from None


def verify_blob(artifact: bytes, bundle_json: bytes, authority: KeylessAuthority) -> None:
    """A message-signature bundle over `artifact`, signed by `authority` (raises KeylessError)."""
    try:
        sigstore_verifier().verify_artifact(artifact, _bundle(bundle_json), identity_policy(authority))
    except SigstoreError as e:
        raise KeylessError(f"{authority.describe()}: {e}") from None


def verify_dsse(bundle_json: bytes, authority: KeylessAuthority) -> tuple[str, bytes]:
    """A DSSE bundle signed by `authority`: its (payloadType, payload) once verified."""
    try:
        return sigstore_verifier().verify_dsse(_bundle(bundle_json), identity_policy(authority))
    except SigstoreError as e:
        raise KeylessError(f"{authority.describe()}: {e}") from None
