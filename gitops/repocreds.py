"""Repository credentials from Kubernetes Secrets, as Argo CD declares them.

A Secret labelled `argocd.argoproj.io/secret-type: repository` holds one repository's
`url` with `username`/`password` (a token is a password) or `sshPrivateKey`;
`repo-creds` holds the same for every repository under a URL prefix. The exact URL wins,
then the longest prefix; when no Secret matches, `GITOPS_GIT_*` environment variables
(`env_credentials`) apply. Secrets are read at most every `ttl` seconds, so a fetch storm
does not become a list storm, and a new Secret applies within that time."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time

from controllers import errors
from controllers.client import Client
from gitops.resources import Obj
from gitops.source.git import Credentials, CredentialsProvider, credentials_by_prefix, env_credentials

log = logging.getLogger(__name__)

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 (a label, not a secret)
SELECTOR = f"{SECRET_TYPE_LABEL} in (repository,repo-creds)"


class SecretCredentials:
    """A CredentialsProvider over the repository Secrets of `namespace` ("" for all)."""

    def __init__(self, client: Client, namespace: str = "", ttl: float = 5.0) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl = ttl
        self._env = env_credentials()
        self._lock = threading.Lock()
        self._lookup: CredentialsProvider | None = None
        self._read_at = 0.0

    def __call__(self, url: str) -> Credentials | None:
        return self._current()(url) or self._env(url)

    def _current(self) -> CredentialsProvider:
        with self._lock:
            if self._lookup is None or time.monotonic() - self._read_at > self.ttl:
                self._lookup = credentials_by_prefix(self._read())
                self._read_at = time.monotonic()
            return self._lookup

    def _read(self) -> dict[str, Credentials]:
        try:
            secrets = self.client.list("v1", "Secret", self.namespace, label_selector=SELECTOR)["items"]
        except errors.APIError as exc:  # e.g. RBAC without secrets: environment credentials only
            log.warning("repository credentials: cannot list Secrets: %s", exc)
            return {}
        found: dict[str, Credentials] = {}
        for secret in secrets:
            meta = secret.get("metadata") or {}
            data = _decoded(secret)
            url = data.get("url", "")
            if not url:
                log.warning("repository Secret %s/%s has no url: ignored", meta.get("namespace"), meta.get("name"))
                continue
            found[url] = Credentials(
                data.get("username", ""),
                data.get("password", ""),
                data.get("sshPrivateKey", ""),
                data.get("insecureIgnoreHostKey", "").lower() == "true",
            )
        return found


def _decoded(secret: Obj) -> dict[str, str]:
    """`stringData` as written, `data` base64-decoded; undecodable values are skipped (and
    never logged: they are secrets)."""
    out = {str(k): str(v) for k, v in (secret.get("stringData") or {}).items()}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            log.warning("repository Secret %s: data.%s is not base64 text", secret["metadata"].get("name"), key)
    return out
