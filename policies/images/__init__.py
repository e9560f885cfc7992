"""Container image signature verification: cosign keys and Sigstore bundles, read from OCI
registries, in the shape of Kyverno `verifyImages` (policies.images.kyverno) and sigstore
policy-controller `ClusterImagePolicy` (policies.images.cip)."""

from policies.images.authority import Authority, AuthorityError, KeyAuthority, KeylessAuthority
from policies.images.verifier import ImageVerificationError, ImageVerifier, RegistryUnavailable, Verified

__all__ = [
    "Authority",
    "AuthorityError",
    "ImageVerificationError",
    "ImageVerifier",
    "KeyAuthority",
    "KeylessAuthority",
    "RegistryUnavailable",
    "Verified",
]
