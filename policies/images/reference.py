"""Container image references: parsing, Docker Hub normalisation and the two glob dialects.

Policies name images loosely (`nginx`, `ghcr.io/org/*`) while the registry needs exact
coordinates, so every comparison goes through one normalised form."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_PATH_RE = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+|__)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")


class ReferenceError(ValueError):
    """An image string that is not a valid reference."""


@dataclass(frozen=True)
class ImageRef:
    """One image: registry host, repository path, and a tag and/or digest."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """registry/repository, the unit signatures and globs are about."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_repository(self) -> str:
        """The repository as the registry API spells it (Docker Hub's implicit `library/`)."""
        if self.registry == DOCKER_HUB and "/" not in self.repository:
            return f"library/{self.repository}"
        return self.repository

    def with_digest(self, digest: str) -> ImageRef:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@lru_cache(maxsize=4096)
def parse(image: str) -> ImageRef:
    """Parse `[registry/]repository[:tag][@digest]` as Docker does (default tag `latest`)."""
    rest, _, digest = image.strip().partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise ReferenceError(f"invalid digest in image reference {image!r}")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    registry = DOCKER_HUB if registry in _HUB_ALIASES else registry
    tag = ""
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ReferenceError(f"invalid tag in image reference {image!r}")
    if registry == DOCKER_HUB and path.startswith("library/") and path.count("/") == 1:
        path = path.removeprefix("library/")
    if not path or not _PATH_RE.match(path):
        raise ReferenceError(f"invalid repository in image reference {image!r}")
    if not tag and not digest:
        tag = "latest"
    return ImageRef(registry, path, tag, digest)


@lru_cache(maxsize=1024)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    """Kyverno wildcards: `*` any run of characters (slashes included), `?` exactly one."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


def kyverno_match(pattern: str, image: str) -> bool:
    """Kyverno `imageReferences`: the pattern against the image as written or normalised."""
    regex = _wildcard_regex(pattern)
    if regex.match(image):
        return True
    try:
        ref = parse(image)
    except ReferenceError:
        return False
    return bool(regex.match(str(ref)) or regex.match(str(ref).replace(f"{DOCKER_HUB}/", "index.docker.io/", 1)))


@lru_cache(maxsize=1024)
def _glob_regex(glob: str) -> re.Pattern[str]:
    """policy-controller globs: `*` stays within one path segment, `**` crosses segments."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _normalise_glob(glob: str) -> str:
    """Give a glob the registry and repository spelling `parse` gives images."""
    if glob.startswith("*"):
        return glob
    first, slash, rest = glob.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if first not in _HUB_ALIASES:
            return glob
        glob = rest
    if glob.startswith("library/") and glob.count("/") == 1:
        glob = glob.removeprefix("library/")
    return f"{DOCKER_HUB}/{glob}"


def cip_glob_match(glob: str, image: str) -> bool:
    """ClusterImagePolicy `images[].glob`: matched against registry/repository, so a glob
    without a tag covers every tag and digest; Docker Hub names are normalised on both sides."""
    try:
        ref = parse(image)
    except ReferenceError:
        return False
    regex = _glob_regex(_normalise_glob(glob))
    return bool(regex.match(ref.name) or regex.match(str(ref)))
