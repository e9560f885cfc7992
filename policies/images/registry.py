"""A read-only client for the OCI distribution API: what image verification needs and no more.

Every byte fetched by digest is checked against that digest, so a registry (or anything
between us and it) cannot swap a manifest or blob under a signature. Registries listed as
insecure are spoken to over plain HTTP (loopback registries in tests and on laptops)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from policies.images.reference import DOCKER_HUB

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
MAX_MANIFEST_BYTES = 4 << 20
MAX_BLOB_BYTES = 32 << 20


class RegistryError(Exception):
    """The registry could not be asked (down, refused, timed out, or answered nonsense)."""


class NotFound(RegistryError):
    """The registry answered, and the thing is not there."""


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError as e:
            raise RegistryError(f"manifest {self.digest} is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return data


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow blob redirects (registries hand blobs to a CDN) without leaking our token there."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


class RegistryClient:
    """Anonymous pulls with the bearer-token challenge handshake; thread-safe."""

    def __init__(self, insecure_registries: frozenset[str] = frozenset(), timeout: float = 5.0) -> None:
        self.insecure = insecure_registries
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_SameHostRedirects())
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _base(self, registry: str) -> str:
        host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        scheme = "http" if registry in self.insecure else "https"
        return f"{scheme}://{host}/v2/"

    def _request(
        self, registry: str, repo: str, path: str, method: str = "GET", accept: str = "", limit: int = MAX_BLOB_BYTES
    ) -> tuple[int, dict[str, str], bytes]:
        """One call; 404 raises NotFound, other failures RegistryError naming the registry."""
        url = self._base(registry) + path
        headers = {"Accept": accept} if accept else {}
        with self._lock:
            token = self._tokens.get((registry, repo))
        if token and token[1] > time.monotonic():
            headers["Authorization"] = f"Bearer {token[0]}"
        for attempt in range(2):
            req = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - http(s) only
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    body = resp.read(limit + 1) if method != "HEAD" else b""
                    if len(body) > limit:
                        raise RegistryError(f"registry {registry}: {path} is larger than {limit} bytes")
                    return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body
            except urllib.error.HTTPError as e:
                challenge = e.headers.get("WWW-Authenticate", "")
                if e.code == 401 and attempt == 0 and challenge.lower().startswith("bearer "):
                    headers["Authorization"] = f"Bearer {self._token(registry, repo, challenge)}"
                    continue
                if e.code == 404:
                    raise NotFound(f"registry {registry}: {path} not found") from None
                raise RegistryError(f"registry {registry} answered {e.code} {e.reason} for {path}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise RegistryError(f"registry {registry} is unreachable: {reason}") from None
        raise RegistryError(f"registry {registry} refused our token for {path}")

    def _token(self, registry: str, repo: str, challenge: str) -> str:
        """Answer a `Bearer realm=...,service=...` challenge with an anonymous pull token."""
        params = dict(_parse_challenge(challenge[len("bearer ") :]))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"registry {registry}: unusable auth realm {realm!r}")
        query = {"service": params.get("service", ""), "scope": params.get("scope") or f"repository:{repo}:pull"}
        req = urllib.request.Request(realm + "?" + urllib.parse.urlencode(query))  # noqa: S310 - realm checked above
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read(1 << 20))
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RegistryError(f"registry {registry}: token service {realm} failed: {e}") from None
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {registry}: token service {realm} gave no token")
        expires = time.monotonic() + max(int(data.get("expires_in") or 60) - 10, 10)
        with self._lock:
            self._tokens[(registry, repo)] = (token, expires)
        return token

    def resolve(self, registry: str, repo: str, reference: str) -> str:
        """The digest a tag points at now (HEAD first, GET when the header is missing)."""
        path = f"{repo}/manifests/{reference}"
        _, headers, _ = self._request(registry, repo, path, "HEAD", MANIFEST_ACCEPT)
        digest = headers.get("docker-content-digest", "")
        if digest.startswith("sha256:"):
            return digest
        return self.manifest(registry, repo, reference).digest

    def manifest(self, registry: str, repo: str, reference: str) -> Manifest:
        """A manifest by tag or digest; by digest the body must hash to it."""
        _, headers, body = self._request(
            registry, repo, f"{repo}/manifests/{reference}", accept=MANIFEST_ACCEPT, limit=MAX_MANIFEST_BYTES
        )
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"registry {registry}: manifest {reference} came back with digest {digest}")
        media_type = headers.get("content-type", "").split(";")[0].strip()
        return Manifest(digest, media_type, body)

    def blob(self, registry: str, repo: str, digest: str) -> bytes:
        _, _, body = self._request(registry, repo, f"{repo}/blobs/{digest}")
        if sha256_digest(body) != digest:
            raise RegistryError(f"registry {registry}: blob {digest} does not match its digest")
        return body

    def referrers(self, registry: str, repo: str, digest: str, artifact_type: str) -> list[dict[str, Any]] | None:
        """Descriptors from the OCI referrers API; None when the registry does not offer it."""
        query = urllib.parse.urlencode({"artifactType": artifact_type})
        try:
            _, headers, body = self._request(
                registry, repo, f"{repo}/referrers/{digest}?{query}", accept=OCI_INDEX, limit=MAX_MANIFEST_BYTES
            )
        except NotFound:
            return None
        if not headers.get("content-type", "").startswith(OCI_INDEX):
            return None
        try:
            manifests = json.loads(body).get("manifests") or []
        except (ValueError, AttributeError):
            raise RegistryError(f"registry {registry}: referrers of {digest} are not an OCI index") from None
        return [m for m in manifests if isinstance(m, dict)]


def _parse_challenge(text: str) -> list[tuple[str, str]]:
    """`k="v",k2="v2"` as in WWW-Authenticate (values may hold commas inside quotes)."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lstrip(",").strip().lower()
        if text[eq + 1 : eq + 2] == '"':
            end = text.find('"', eq + 2)
            end = len(text) if end < 0 else end
            value, i = text[eq + 2 : end], end + 1
        else:
            end = text.find(",", eq + 1)
            end = len(text) if end < 0 else end
            value, i = text[eq + 1 : end].strip(), end
        out.append((key, value))
        i = text.find(",", i) + 1 if text.find(",", i) >= 0 else len(text)
    return out
