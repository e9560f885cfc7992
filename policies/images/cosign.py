"""Cosign signatures as they sit in a registry, and checking them against an authority.

Two layouts, both read for every image:
- legacy (cosign < 3): tag `sha256-<hex>.sig`, one layer per signature whose blob is the
  simple-signing payload and whose `dev.cosignproject.cosign/signature` annotation is the
  base64 ECDSA signature over it;
- Sigstore bundles (cosign 3): manifests with artifactType
  `application/vnd.dev.sigstore.bundle.v0.3+json` whose `subject` is the image, found with the
  OCI referrers API or, where a registry lacks it, in the index under tag `sha256-<hex>`.
  The bundle's DSSE envelope carries an in-toto statement about the image digest with
  predicate type `https://sigstore.dev/cosign/sign/v1`.

A signature only counts when it verifies AND its signed claims name this very digest, so a
valid signature of another image (or a tampered payload) never passes."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from policies.images import keyless
from policies.images.authority import Authority, KeyAuthority
from policies.images.reference import ImageRef, ReferenceError, parse
from policies.images.registry import OCI_INDEX, NotFound, RegistryClient

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


class SignatureError(Exception):
    """No signature verifies; the message says what was found and why each one failed."""


@dataclass(frozen=True)
class LegacySignature:
    payload: bytes
    signature: bytes
    certificate: str
    where: str


@dataclass(frozen=True)
class BundleSignature:
    bundle: bytes
    where: str


@dataclass
class Signatures:
    """Everything signature-like attached to one digest, and where we looked."""

    legacy: list[LegacySignature] = field(default_factory=list)
    bundles: list[BundleSignature] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.legacy or self.bundles)


def find_signatures(client: RegistryClient, image: ImageRef, source: ImageRef | None = None) -> Signatures:
    """Read both layouts for `image` (which carries a digest) from `source` or the image's repo."""
    repo = source or image
    registry, name = repo.registry, repo.api_repository
    hexdigest = image.digest.removeprefix("sha256:")
    found = Signatures()
    sig_tag = f"sha256-{hexdigest}.sig"
    found.searched.append(f"tag {repo.name}:{sig_tag}")
    try:
        manifest = client.manifest(registry, name, sig_tag).json()
    except NotFound:
        manifest = {}
    for i, layer in enumerate(_dicts(manifest.get("layers"))):
        sig = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if layer.get("mediaType") != SIMPLE_SIGNING or not isinstance(sig, str):
            continue
        where = f"{repo.name}:{sig_tag} layer {i}"
        try:
            raw_sig = base64.b64decode(sig, validate=True)
        except binascii.Error:
            raw_sig = b""
        payload = client.blob(registry, name, str(layer.get("digest")))
        cert = str((layer.get("annotations") or {}).get(CERTIFICATE_ANNOTATION) or "")
        found.legacy.append(LegacySignature(payload, raw_sig, cert, where))

    descriptors = client.referrers(registry, name, image.digest, BUNDLE_MEDIA_TYPE)
    if descriptors is None:
        fallback = f"sha256-{hexdigest}"
        found.searched.append(f"referrers tag {repo.name}:{fallback}")
        try:
            index = client.manifest(registry, name, fallback)
            descriptors = _dicts(index.json().get("manifests")) if index.media_type in (OCI_INDEX, "") else []
        except NotFound:
            descriptors = []
    else:
        found.searched.append(f"referrers API of {repo.name}@{image.digest}")
    for desc in descriptors:
        if desc.get("artifactType") not in (BUNDLE_MEDIA_TYPE, None):
            continue
        referrer = client.manifest(registry, name, str(desc.get("digest"))).json()
        if referrer.get("artifactType") != BUNDLE_MEDIA_TYPE:
            continue
        if (referrer.get("subject") or {}).get("digest") != image.digest:
            continue
        for layer in _dicts(referrer.get("layers")):
            if layer.get("mediaType") == BUNDLE_MEDIA_TYPE:
                blob = client.blob(registry, name, str(layer.get("digest")))
                found.bundles.append(BundleSignature(blob, f"{repo.name}@{desc.get('digest')}"))
    return found


def verify(found: Signatures, authority: Authority, image: ImageRef) -> str:
    """Where the first signature that `authority` made over this digest lives; else SignatureError."""
    if not found:
        raise SignatureError(f"no signatures found (looked in {', '.join(found.searched)})")
    reasons: list[str] = []
    for legacy in found.legacy:
        try:
            _check_legacy(legacy, authority, image)
            return legacy.where
        except SignatureError as e:
            reasons.append(f"{legacy.where}: {e}")
    for bundle in found.bundles:
        try:
            _check_bundle(bundle, authority, image)
            return bundle.where
        except SignatureError as e:
            reasons.append(f"{bundle.where}: {e}")
    raise SignatureError(f"no signature verifies with {authority.describe()} ({'; '.join(reasons)})")


def _check_legacy(sig: LegacySignature, authority: Authority, image: ImageRef) -> None:
    if not isinstance(authority, KeyAuthority):
        raise SignatureError("keyless signatures in the legacy .sig layout are not supported (use cosign 3 bundles)")
    _ecdsa_verify(authority, sig.signature, sig.payload)
    claims = _json(sig.payload, "simple-signing payload")
    critical: dict[str, Any] = claims["critical"] if isinstance(claims.get("critical"), dict) else {}
    if critical.get("type") != SIMPLE_SIGNING_TYPE:
        raise SignatureError(f"payload type is {critical.get('type')!r}, not {SIMPLE_SIGNING_TYPE!r}")
    signed_digest = (critical.get("image") or {}).get("docker-manifest-digest")
    if signed_digest != image.digest:
        raise SignatureError(f"signed payload is for digest {signed_digest}, not {image.digest}")
    reference = (critical.get("identity") or {}).get("docker-reference")
    if reference:
        try:
            signed_name = parse(str(reference)).name
        except ReferenceError:
            raise SignatureError(f"signed docker-reference {reference!r} is not an image reference") from None
        if signed_name != image.name:
            raise SignatureError(f"signed docker-reference is {signed_name}, not {image.name}")


def _check_bundle(sig: BundleSignature, authority: Authority, image: ImageRef) -> None:
    if isinstance(authority, KeyAuthority):
        bundle = _json(sig.bundle, "Sigstore bundle")
        envelope = bundle.get("dsseEnvelope")
        if not isinstance(envelope, dict):
            raise SignatureError("bundle has no DSSE envelope (a message signature cannot bind an image)")
        payload_type = str(envelope.get("payloadType", ""))
        payload = _b64(envelope.get("payload"), "DSSE payload")
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)
        errors = []
        for entry in _dicts(envelope.get("signatures")):
            try:
                _ecdsa_verify(authority, _b64(entry.get("sig"), "DSSE signature"), pae)
                break
            except SignatureError as e:
                errors.append(str(e))
        else:
            raise SignatureError("; ".join(errors) or "DSSE envelope has no signatures")
    else:
        try:
            payload_type, payload = keyless.verify_dsse(sig.bundle, authority)
        except keyless.KeylessError as e:
            raise SignatureError(str(e)) from None
    if payload_type != IN_TOTO:
        raise SignatureError(f"DSSE payload type is {payload_type!r}, not {IN_TOTO!r}")
    statement = _json(payload, "in-toto statement")
    if statement.get("predicateType") != SIGN_PREDICATE:
        raise SignatureError(f"bundle is an attestation of type {statement.get('predicateType')!r}, not a signature")
    hexdigest = image.digest.removeprefix("sha256:")
    if not any((s.get("digest") or {}).get("sha256") == hexdigest for s in _dicts(statement.get("subject"))):
        raise SignatureError(f"signed statement is not about digest {image.digest}")


def _ecdsa_verify(authority: KeyAuthority, signature: bytes, data: bytes) -> None:
    try:
        authority.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise SignatureError(f"signature does not verify with {authority.describe()}") from None


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise SignatureError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise SignatureError(f"{what} is not a JSON object")
    return value


def _b64(value: object, what: str) -> bytes:
    text = str(value or "").replace("-", "+").replace("_", "/")  # protobuf JSON accepts both alphabets
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise SignatureError(f"{what} is not base64") from None


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
