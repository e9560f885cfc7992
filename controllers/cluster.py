"""The embedded control plane assembled: store, API machinery, the HTTP API and the
kubeconfig that points kubectl and clients at it."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controllers.apiserver import APIServer
from controllers.client import LocalClient
from controllers.http import KubeAPI
from controllers.manager import ClusterConfig, ControllerContext, ControllerManager
from controllers.runtime import InformerFactory
from controllers.store import MemoryStore, SQLiteStore
from controllers.tls import ServingCerts, ensure_serving_certs
from controllers.wsgi import WSGIServer

log = logging.getLogger(__name__)


class EmbeddedCluster:
    """One embedded cluster. `data_dir=None` keeps everything in memory (tests)."""

    def __init__(
        self,
        data_dir: str | Path | None,
        api_port: int = 0,
        host: str = "127.0.0.1",
        tls: bool = True,
        config: ClusterConfig | None = None,
        controllers: list[str] | None = None,
    ) -> None:
        """With `tls` (the default) the API is HTTPS with a bearer token; without it, plain
        HTTP with no authentication (kubectl sends tokens only over TLS), for loopback only.

        `config` brings up nodes and the controllers (all of them, or those named in
        `controllers`); without it the cluster is the bare API (the API's own tests)."""
        self.data_dir = Path(data_dir) if data_dir else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.store: MemoryStore = SQLiteStore(self.data_dir / "state.db")
            pki = self.data_dir / "pki"
        else:
            self.store = MemoryStore()
            self._tmp = tempfile.TemporaryDirectory(prefix="gitops-pki-")
            pki = Path(self._tmp.name)
        self.config = config
        tolerate = config.pod_eviction_seconds if config else 300
        self.api = APIServer(self.store, default_toleration_seconds=tolerate)
        self.certs: ServingCerts | None = None
        self.token: str | None = None
        if tls:
            self.certs = ensure_serving_certs(pki, _cert_hosts(host))
            self.token = self._token()
        serving = (str(self.certs.cert), str(self.certs.key)) if self.certs else None
        self.http = WSGIServer(KubeAPI(self.api, self.token), host, api_port, tls=serving)
        self.client = LocalClient(self.api)
        self.manager: ControllerManager | None = None
        if config is not None:
            ctx = ControllerContext(LocalClient(self.api), InformerFactory(LocalClient(self.api)), config)
            self.manager = ControllerManager(ctx)
            self.manager.add_defaults(controllers)

    def _token(self) -> str:
        """A bearer token kept in the data dir (mode 0600) so kubeconfigs survive restarts."""
        if self.data_dir is None:
            return secrets.token_urlsafe(32)
        path = self.data_dir / "token"
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token

    @property
    def url(self) -> str:
        return self.http.url

    def kubeconfig(self) -> dict[str, Any]:
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        cluster: dict[str, Any] = {"server": self.url}
        if self.certs:
            cluster["certificate-authority-data"] = base64.b64encode(self.certs.ca_pem()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "gitops", "cluster": cluster}],
            "users": [{"name": "gitops-admin", "user": user}],
            "contexts": [
                {"name": "gitops", "context": {"cluster": "gitops", "user": "gitops-admin", "namespace": "default"}}
            ],
            "current-context": "gitops",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else (self.data_dir or Path(".")) / "kubeconfig"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(self.kubeconfig(), f, sort_keys=False)
        return target

    def start(self) -> EmbeddedCluster:
        self.http.start()
        if self.manager is not None:
            self.manager.start()
        if self.data_dir:
            self.write_kubeconfig()
        return self

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.stop()
        self.store.close_watchers()  # open watch streams hold server threads until they end
        self.http.stop()
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _cert_hosts(host: str) -> tuple[str, ...]:
    base = ("127.0.0.1", "localhost", "::1")
    return base if host in base or host in ("0.0.0.0", "::") else (*base, host)  # noqa: S104
