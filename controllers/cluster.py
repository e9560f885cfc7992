"""The embedded control plane assembled: store, API machinery, the HTTP API and the
kubeconfig that points kubectl and clients at it."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

import yaml

from controllers.apiserver import APIServer
from controllers.client import LocalClient
from controllers.http import KubeAPI
from controllers.store import MemoryStore, SQLiteStore
from controllers.wsgi import WSGIServer

log = logging.getLogger(__name__)


class EmbeddedCluster:
    """One embedded cluster. `data_dir=None` keeps everything in memory (tests)."""

    def __init__(self, data_dir: str | Path | None, api_port: int = 0, host: str = "127.0.0.1",
                 auth: bool = True) -> None:
        self.data_dir = Path(data_dir) if data_dir else None
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.store: MemoryStore = SQLiteStore(self.data_dir / "state.db")
        else:
            self.store = MemoryStore()
        self.api = APIServer(self.store)
        self.token = self._token() if auth else None
        self.http = WSGIServer(KubeAPI(self.api, self.token), host, api_port)
        self.client = LocalClient(self.api)

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
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "gitops", "cluster": {"server": self.url}}],
            "users": [{"name": "gitops-admin", "user": user}],
            "contexts": [{"name": "gitops", "context": {"cluster": "gitops", "user": "gitops-admin",
                                                        "namespace": "default"}}],
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
        if self.data_dir:
            self.write_kubeconfig()
        return self

    def stop(self) -> None:
        self.http.stop()
        self.store.close()
