"""Sigstore policy-controller `ClusterImagePolicy` (policy.sigstore.dev/v1beta1).

An image that matches any of `spec.images[].glob` must be signed by at least one of the
policy's `authorities` (several matching policies are ANDed by the engine, each being its
own Policy). `mode: warn` reports without blocking. Like policy-controller, mutate pins the
tags of matching images to the digests they resolve to, so the verified bits are what runs.
Authorities: `key.data` (PEM), `keyless.identities` (issuer/subject and their RegExp forms),
`static.action` pass|fail, and `source[].oci` for signatures kept in another repository.
The policy applies in every namespace (no opt-in label), so a policy never fails open."""

from __future__ import annotations

from dataclasses import dataclass

from policies.images.authority import Authority, AuthorityError, KeyAuthority, KeylessAuthority
from policies.images.reference import cip_glob_match
from policies.images.verifier import ImageVerificationError, ImageVerifier, RegistryUnavailable
from policies.images.workload import Path, container_images, patch_images
from policies.types import Lookup, Obj, Outcome, Request, RuleResult, Status

RULE = "authorities"


class ImagePolicyError(ValueError):
    """A ClusterImagePolicy that cannot be compiled; the message names the policy and field."""


@dataclass(frozen=True)
class _Authority:
    name: str
    identities: tuple[Authority, ...]  # any one of them; empty with static
    static: str = ""  # "pass" | "fail"
    source: str = ""


def _compile_authority(raw: Obj, where: str) -> _Authority:
    name = str(raw.get("name") or where)
    source = ""
    sources = raw.get("source") or []
    if sources:
        source = str((sources[0] or {}).get("oci") or "") if isinstance(sources[0], dict) else ""
        if not source:
            raise ValueError(f"{where}.source[0].oci: a repository is required")
    for unsupported in ("attestations",):
        if raw.get(unsupported):
            raise ValueError(f"{where}.{unsupported}: not supported")
    if isinstance(raw.get("static"), dict):
        action = str(raw["static"].get("action") or "")
        if action not in ("pass", "fail"):
            raise ValueError(f"{where}.static.action: must be pass or fail, not {action!r}")
        return _Authority(name, (), static=action)
    if isinstance(raw.get("key"), dict):
        key = raw["key"]
        for unsupported in ("kms", "secretRef"):
            if key.get(unsupported):
                raise ValueError(f"{where}.key.{unsupported}: not supported, give data (PEM)")
        if not key.get("data"):
            raise ValueError(f"{where}.key.data: a PEM public key is required")
        authority = KeyAuthority(str(key["data"]))
        try:
            authority.key  # noqa: B018 - parse now, so a bad PEM is a compile error
        except AuthorityError as e:
            raise ValueError(f"{where}.key.data: {e}") from None
        return _Authority(name, (authority,), source=source)
    if isinstance(raw.get("keyless"), dict):
        identities = [i for i in raw["keyless"].get("identities") or [] if isinstance(i, dict)]
        if not identities:
            raise ValueError(f"{where}.keyless.identities: at least one identity is required")
        compiled = tuple(
            KeylessAuthority(
                subject=str(i.get("subject") or ""),
                issuer=str(i.get("issuer") or ""),
                subject_regexp=str(i.get("subjectRegExp") or ""),
                issuer_regexp=str(i.get("issuerRegExp") or ""),
            )
            for i in identities
        )
        return _Authority(name, compiled, source=source)
    raise ValueError(f"{where}: needs key, keyless or static")


class ClusterImagePolicy:
    """A compiled ClusterImagePolicy (the types.Policy protocol)."""

    kind = "ClusterImagePolicy"

    def __init__(
        self, name: str, globs: list[str], authorities: list[_Authority], enforce: bool, verifier: ImageVerifier
    ) -> None:
        self.name = name
        self.globs = globs
        self.authorities = authorities
        self.enforce = enforce
        self.verifier = verifier

    def _matching(self, request: Request) -> list[tuple[Path, str]]:
        if request.object is None or request.operation == "DELETE":
            return []
        return [(p, i) for p, i in container_images(request.object) if any(cip_glob_match(g, i) for g in self.globs)]

    def mutate(self, request: Request, lookup: Lookup | None) -> Outcome:
        """Pin matching tags to digests; an unresolvable tag is left for validate to refuse."""
        digests: dict[Path, str] = {}
        for path, image in self._matching(request):
            if "@" in image:
                continue
            try:
                digests[path] = self.verifier.resolve(image).digest
            except ImageVerificationError:
                continue
        if not digests or request.object is None:
            return Outcome()
        return Outcome(patched=patch_images(request.object, digests))

    def validate(self, request: Request, lookup: Lookup | None) -> Outcome:
        resource = "/".join(p for p in (request.kind, request.namespace, request.name) if p)
        outcome = Outcome()
        for _, image in self._matching(request):
            status, message = self._check(image)
            outcome.results.append(
                RuleResult(self.name, RULE, status, message, resource, self.enforce, policy_kind=self.kind)
            )
        return outcome

    def _check(self, image: str) -> tuple[Status, str]:
        reasons: list[str] = []
        unavailable = 0
        for authority in self.authorities:
            if authority.static == "pass":
                return "pass", f"image {image} admitted by static authority {authority.name}"
            if authority.static == "fail":
                reasons.append(f"authority {authority.name}: static fail")
                continue
            for identity in authority.identities:
                try:
                    verified = self.verifier.verify(image, identity, authority.source)
                    return "pass", f"image {image} ({verified.image.digest}) signed by authority {authority.name}"
                except RegistryUnavailable as e:
                    unavailable += 1
                    reasons.append(f"authority {authority.name}: {e}")
                except ImageVerificationError as e:
                    reasons.append(f"authority {authority.name}: {e}")
        status: Status = "error" if unavailable and unavailable == len(reasons) else "fail"
        return status, f"image {image} failed ClusterImagePolicy {self.name}: " + "; ".join(reasons)


def compile_cluster_image_policy(doc: Obj, verifier: ImageVerifier) -> ClusterImagePolicy:
    name = str((doc.get("metadata") or {}).get("name") or "")
    spec = doc.get("spec") or {}
    try:
        if spec.get("policy"):
            raise ValueError("spec.policy: CUE/Rego policies are not supported")
        globs = [str(i.get("glob")) for i in spec.get("images") or [] if isinstance(i, dict) and i.get("glob")]
        if not globs:
            raise ValueError("spec.images: at least one glob is required")
        raw_authorities = [a for a in spec.get("authorities") or [] if isinstance(a, dict)]
        if not raw_authorities:
            raise ValueError("spec.authorities: at least one authority is required")
        authorities = [_compile_authority(a, f"spec.authorities[{i}]") for i, a in enumerate(raw_authorities)]
        mode = str(spec.get("mode") or "enforce")
        if mode not in ("enforce", "warn"):
            raise ValueError(f"spec.mode: must be enforce or warn, not {mode!r}")
    except (ValueError, AuthorityError) as e:
        raise ImagePolicyError(f"ClusterImagePolicy {name}: {e}") from None
    return ClusterImagePolicy(name, globs, authorities, mode == "enforce", verifier)
