"""Kyverno `verifyImages` rules: which images a rule covers, who must have signed them, and
the digest pinning (`mutateDigest`) that makes the verdict stick to what actually runs.

Semantics (Kyverno's, for the fields we read):
- `imageReferences` / `skipImageReferences`: wildcard patterns (`*`, `?`) over the image as
  written or normalised (`nginx` is `docker.io/nginx:latest`).
- `attestors`: every attestor set must pass; within a set `count` entries must pass (default:
  all). A `publicKeys` field holding several PEM keys counts as one entry per key.
- `mutateDigest` (default true): tags are pinned to the verified digest in the patched object.
  `verifyDigest` (default true): without `mutateDigest`, an image without a digest fails.
- `required` (default true): when false, a failed verification is reported as `warn` and does
  not block. `failureAction: Audit` on the entry makes its failures non-blocking too (the
  policy-level failure action is the caller's to apply on top).
- `repository`: signatures are read from that repository instead of the image's own.
Unsupported pieces (attestations, Notary, certificates, KMS keys, custom roots) give an
`error` result naming the field, never a silent pass."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from policies.images.authority import Authority, AuthorityError, KeyAuthority, KeylessAuthority
from policies.images.reference import kyverno_match
from policies.images.verifier import ImageVerificationError, ImageVerifier, RegistryUnavailable
from policies.images.workload import Path, container_images, patch_images
from policies.types import Obj, Request, RuleResult, Status

_PEM_RE = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


class _ConfigError(ValueError):
    """A verifyImages entry we cannot honour; the message names the field."""


@dataclass
class _AttestorSet:
    count: int
    entries: list[tuple[str, Authority]]  # (field path, authority)


@dataclass
class _Entry:
    """One verifyImages list item, read once per call."""

    where: str
    references: list[str]
    skip: list[str]
    attestor_sets: list[_AttestorSet] = field(default_factory=list)
    mutate_digest: bool = True
    verify_digest: bool = True
    required: bool = True
    enforce: bool = True
    repository: str = ""
    use_cache: bool = True
    error: str = ""

    def covers(self, image: str) -> bool:
        return any(kyverno_match(p, image) for p in self.references) and not any(
            kyverno_match(p, image) for p in self.skip
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _authorities(entry: Obj, where: str) -> list[tuple[str, Authority]]:
    if isinstance(entry.get("keys"), dict):
        keys = entry["keys"]
        for unsupported in ("kms", "secret"):
            if keys.get(unsupported):
                raise _ConfigError(f"{where}.keys.{unsupported}: not supported, give publicKeys")
        pems = _PEM_RE.findall(str(keys.get("publicKeys") or ""))
        if not pems:
            raise _ConfigError(f"{where}.keys.publicKeys: no PEM public key")
        authorities = [KeyAuthority(pem) for pem in pems]
        for authority in authorities:
            try:
                authority.key  # noqa: B018 - parse now, so a bad key is named at its field
            except AuthorityError as e:
                raise _ConfigError(f"{where}.keys.publicKeys: {e}") from None
        return [(f"{where}.keys", a) for a in authorities]
    if isinstance(entry.get("keyless"), dict):
        kl = entry["keyless"]
        if kl.get("roots"):
            raise _ConfigError(f"{where}.keyless.roots: custom roots are not supported")
        try:
            keyless_authority = KeylessAuthority(
                subject=str(kl.get("subject") or ""),
                issuer=str(kl.get("issuer") or ""),
                subject_regexp=str(kl.get("subjectRegExp") or ""),
                issuer_regexp=str(kl.get("issuerRegExp") or ""),
            )
        except AuthorityError as e:
            raise _ConfigError(f"{where}.keyless: {e}") from None
        return [(f"{where}.keyless", keyless_authority)]
    for unsupported in ("certificates", "attestor"):
        if unsupported in entry:
            raise _ConfigError(f"{where}.{unsupported}: not supported")
    raise _ConfigError(f"{where}: needs keys or keyless")


def _parse_entry(item: Obj, index: int) -> _Entry:
    where = f"verifyImages[{index}]"
    entry = _Entry(
        where=where,
        references=_strings(item.get("imageReferences")) or _strings(item.get("image")),
        skip=_strings(item.get("skipImageReferences")),
        mutate_digest=item.get("mutateDigest", True) is not False,
        verify_digest=item.get("verifyDigest", True) is not False,
        required=item.get("required", True) is not False,
        enforce=str(item.get("failureAction") or "Enforce").lower() != "audit",
        repository=str(item.get("repository") or ""),
        use_cache=item.get("useCache", True) is not False,
    )
    try:
        kind = str(item.get("type") or "Cosign")
        if kind not in ("Cosign", "SigstoreBundle"):
            raise _ConfigError(f"{where}.type: {kind} signatures are not supported")
        if item.get("attestations"):
            raise _ConfigError(f"{where}.attestations: attestation checks are not supported")
        attestors = [a for a in item.get("attestors") or [] if isinstance(a, dict)]
        if item.get("key"):  # the pre-attestor spelling
            attestors.append({"entries": [{"keys": {"publicKeys": item["key"]}}]})
        elif item.get("subject") or item.get("issuer"):
            legacy = {"subject": item.get("subject"), "issuer": item.get("issuer"), "roots": item.get("roots")}
            attestors.append({"entries": [{"keyless": legacy}]})
        for a, attestor in enumerate(attestors):
            entries: list[tuple[str, Authority]] = []
            for e, raw in enumerate(attestor.get("entries") or []):
                entries += _authorities(raw if isinstance(raw, dict) else {}, f"{where}.attestors[{a}].entries[{e}]")
            if not entries:
                raise _ConfigError(f"{where}.attestors[{a}].entries: empty")
            count = int(attestor.get("count") or len(entries))
            entry.attestor_sets.append(_AttestorSet(min(max(count, 1), len(entries)), entries))
    except _ConfigError as e:
        entry.error = str(e)
    except ValueError as e:  # a non-numeric count
        entry.error = f"{where}.attestors: {e}"
    return entry


def _resource_name(request: Request) -> str:
    parts = [request.kind, request.namespace, request.name]
    return "/".join(p for p in parts if p)


def _verify(entry: _Entry, image: str, verifier: ImageVerifier) -> tuple[Status, str, str]:
    """(status, message, digest) for one image under one verifyImages entry."""
    if entry.error:
        return "error", entry.error, ""
    try:
        digest = verifier.resolve(image).digest
        for attestor_set in entry.attestor_sets:
            passed, reasons = 0, []
            for where, authority in attestor_set.entries:
                try:
                    verified = verifier.verify(image, authority, entry.repository, entry.use_cache)
                    digest = verified.image.digest
                    passed += 1
                except RegistryUnavailable:
                    raise
                except ImageVerificationError as e:
                    reasons.append(f"{where}: {e}")
            if passed < attestor_set.count:
                need = f"{attestor_set.count} of {len(attestor_set.entries)}"
                return (
                    "fail",
                    f"failed to verify image {image}: {need} attestors needed, {passed} passed; "
                    + ("; ".join(reasons)),
                    digest,
                )
    except RegistryUnavailable as e:
        return "error", f"failed to verify image {image}: {e}", ""
    except ImageVerificationError as e:
        return "fail", f"failed to verify image {image}: {e}", ""
    if not entry.mutate_digest and entry.verify_digest and "@" not in image:
        return "fail", f"missing digest for image {image} ({entry.where}.verifyDigest)", digest
    what = "verified image signatures for" if entry.attestor_sets else "resolved digest of"
    return "pass", f"{what} {image} ({digest})", digest


def verify_images_rule(
    policy: str, rule: str, verify_images: list[Obj], request: Request, verifier: ImageVerifier
) -> tuple[list[RuleResult], Obj | None]:
    """Results for every image the rule covers (none: empty list), and the object with tags
    pinned to digests when `mutateDigest` applies (None when unchanged)."""
    if request.object is None or request.operation == "DELETE":
        return [], None
    images = container_images(request.object)
    results: list[RuleResult] = []
    digests: dict[Path, str] = {}
    resource = _resource_name(request)
    for index, item in enumerate(verify_images):
        entry = _parse_entry(item if isinstance(item, dict) else {}, index)
        for path, image in images:
            if not entry.covers(image):
                continue
            status, message, digest = _verify(entry, image, verifier)
            if status == "pass" and entry.mutate_digest and digest and "@" not in image:
                digests[path] = digest
            if status == "fail" and not entry.required:
                status = "warn"
            results.append(RuleResult(policy, rule, status, message, resource, enforce=entry.enforce))
    if not digests:
        return results, None
    return results, patch_images(request.object, digests)
