"""Who may sign an image: a public key, or a keyless (Fulcio certificate) identity.

Kyverno attestors and ClusterImagePolicy authorities both compile to these, so the
verifier and its cache speak one language whatever the policy kind."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class AuthorityError(ValueError):
    """An authority a policy spells wrongly (bad PEM, bad regexp)."""


@dataclass(frozen=True)
class KeyAuthority:
    """Signatures made with the private half of one ECDSA public key (cosign `--key`)."""

    pem: str

    @cached_property
    def key(self) -> ec.EllipticCurvePublicKey:
        try:
            key = serialization.load_pem_public_key(self.pem.strip().encode())
        except ValueError as e:
            raise AuthorityError(f"invalid public key PEM: {e}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise AuthorityError(f"unsupported public key type {type(key).__name__}: cosign keys are ECDSA")
        return key

    def describe(self) -> str:
        der = self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"key sha256:{hashlib.sha256(der).hexdigest()[:16]}"


@dataclass(frozen=True)
class KeylessAuthority:
    """A Fulcio-certified identity: exact subject/issuer, or regular expressions (full match)."""

    subject: str = ""
    issuer: str = ""
    subject_regexp: str = ""
    issuer_regexp: str = ""
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.subject or self.subject_regexp):
            raise AuthorityError("keyless authority needs a subject or subjectRegExp")
        for name in ("subject_regexp", "issuer_regexp"):
            pattern = getattr(self, name)
            if pattern:
                try:
                    self._compiled[name] = re.compile(pattern)
                except re.error as e:
                    raise AuthorityError(f"invalid {name} {pattern!r}: {e}") from None

    def subject_matches(self, value: str) -> bool:
        if self.subject_regexp:
            return bool(self._compiled["subject_regexp"].fullmatch(value))
        if "*" in self.subject:  # Kyverno accepts wildcards in subject
            return bool(re.fullmatch(".*".join(map(re.escape, self.subject.split("*"))), value))
        return value == self.subject

    def issuer_matches(self, value: str) -> bool:
        if self.issuer_regexp:
            return bool(self._compiled["issuer_regexp"].fullmatch(value))
        return not self.issuer or value == self.issuer

    def describe(self) -> str:
        subject = self.subject_regexp or self.subject
        issuer = self.issuer_regexp or self.issuer or "any issuer"
        return f"keyless identity {subject} from {issuer}"


Authority = KeyAuthority | KeylessAuthority
