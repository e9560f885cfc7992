"""ImageVerifier: one image, one authority, a yes or a reason; fail closed on every doubt.

Tags are resolved to digests at every call (a tag can move); verdicts about a digest are
cached, successes for `ttl` and failures briefly (`failure_ttl`) so a freshly signed image
is admitted soon after. A registry that cannot be asked is never cached and never passes."""

from __future__ import annotations

from dataclasses import dataclass

from policies.images import cosign
from policies.images.authority import Authority, AuthorityError
from policies.images.cache import TTLCache
from policies.images.reference import ImageRef, ReferenceError, parse
from policies.images.registry import NotFound, RegistryClient, RegistryError


class ImageVerificationError(Exception):
    """An image that may not run; the message names the image, its registry and the reason."""


class RegistryUnavailable(ImageVerificationError):
    """The registry could not be asked: an error, not a verdict, and it still blocks."""


@dataclass(frozen=True)
class Verified:
    image: ImageRef  # with its digest
    authority: Authority
    where: str  # the signature that verified


class ImageVerifier:
    """Registry access over the OCI distribution API, cosign/Sigstore checks, a digest cache."""

    def __init__(
        self,
        insecure_registries: frozenset[str] = frozenset(),
        timeout: float = 5.0,
        ttl: float = 300.0,
        failure_ttl: float = 10.0,
    ) -> None:
        self.client = RegistryClient(insecure_registries, timeout)
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.cache: TTLCache[Verified | str] = TTLCache()

    def resolve(self, image: str) -> ImageRef:
        """The image with its digest: as written, or the digest its tag points at now."""
        try:
            ref = parse(image)
        except ReferenceError as e:
            raise ImageVerificationError(str(e)) from None
        if ref.digest:
            return ref
        try:
            return ref.with_digest(self.client.resolve(ref.registry, ref.api_repository, ref.tag))
        except NotFound:
            raise ImageVerificationError(
                f"image {image}: tag {ref.tag!r} not found in registry {ref.registry}"
            ) from None
        except RegistryError as e:
            raise RegistryUnavailable(f"cannot verify image {image}: {e}") from None

    def verify(self, image: str, authority: Authority, source: str = "", use_cache: bool = True) -> Verified:
        """Check that `authority` signed the image (signatures read from `source` repo if given)."""
        ref = self.resolve(image)
        try:
            src = parse(source) if source else None
        except ReferenceError as e:
            raise ImageVerificationError(f"signature repository: {e}") from None
        key = (ref.name, ref.digest, authority, src.name if src else "")
        cached = self.cache.get(key) if use_cache else None
        if isinstance(cached, Verified):
            return cached
        if isinstance(cached, str):
            raise ImageVerificationError(cached)
        try:
            found = cosign.find_signatures(self.client, ref, src)
            where = cosign.verify(found, authority, ref)
        except RegistryError as e:
            raise RegistryUnavailable(f"cannot verify image {image}: {e}") from None
        except (cosign.SignatureError, AuthorityError) as e:
            message = f"image {image} ({ref.digest}) from registry {ref.registry}: {e}"
            self.cache.put(key, message, self.failure_ttl)
            raise ImageVerificationError(message) from None
        verified = Verified(ref, authority, where)
        self.cache.put(key, verified, self.ttl)
        return verified
