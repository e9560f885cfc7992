"""The clusters the engine talks to: the one it runs against (embedded, a kubeconfig, or
the pod's service account) and destination clusters registered as Secrets.

A destination cluster is registered as Argo CD does it, so Argo CD's cluster Secrets work
as they are: a Secret in the engine's namespace labelled
`argocd.argoproj.io/secret-type: cluster` with `name`, `server` and `config` (JSON:
`bearerToken`, or `username`/`password`, and `tlsClientConfig` with `caData`, `certData`,
`keyData`, `serverName`, `insecure`). Instead of `config` the Secret may hold a whole
`kubeconfig` (and optionally which `context` of it to use). Each registered cluster is
reached through its own RemoteClient; `https://kubernetes.default.svc`, the name
`in-cluster` and the URLs of the engine's own cluster map to the engine's own client."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from controllers.client import Client, RemoteClient
from controllers.runtime import Informer
from gitops import apps
from gitops.yamlload import ManifestError, load_yaml

log = logging.getLogger(__name__)

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 - a label name
CLUSTER_SELECTOR = f"{SECRET_TYPE_LABEL}=cluster"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_NAME = "in-cluster"
# Every informer holds one connection for its watch, and workers make requests besides:
# the official client's default pool of 10 would open and discard connections all the time.
CONNECTIONS = 64
PROBE_SECONDS = 5.0  # how long a cluster's /version may take before it counts as unreachable

Obj = dict[str, Any]


class ClusterError(ValueError):
    """A destination that is not registered, or a cluster Secret that cannot be used."""


class Unreachable(ClusterError):
    """A registered cluster that does not answer, or refuses the Secret's credentials."""


# ---------------------------------------------------------------------- the engine's own cluster
def in_cluster_available() -> bool:
    """Running in a pod with a service account (what client-go's InClusterConfig needs)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()


def connect(kubeconfig: Path | None, context: str | None = None) -> tuple[RemoteClient, str]:
    """A client for the cluster of `kubeconfig` (its `context`), or of the pod's service
    account when `kubeconfig` is None; and the namespace that names by default (the
    context's, or the pod's)."""
    from kubernetes import client, config

    if kubeconfig is None:
        if not in_cluster_available():
            raise ClusterError(
                "in-cluster mode needs KUBERNETES_SERVICE_HOST and a service account token in "
                f"{SERVICE_ACCOUNT_DIR}: run in a pod, or give --kubeconfig"
            )
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        configuration.connection_pool_maxsize = CONNECTIONS
        namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or "default"
        return RemoteClient(client.ApiClient(configuration)), namespace
    try:
        contexts, current = config.list_kube_config_contexts(str(kubeconfig))
        chosen = next((c for c in contexts if c["name"] == context), None) if context else current
        if chosen is None:
            names = ", ".join(c["name"] for c in contexts)
            raise ClusterError(f"{kubeconfig}: no context {context!r} (it has: {names})")
        configuration = client.Configuration()
        config.load_kube_config(str(kubeconfig), chosen["name"], client_configuration=configuration)
    except config.ConfigException as exc:
        raise ClusterError(f"{kubeconfig}: {exc}") from None
    configuration.connection_pool_maxsize = CONNECTIONS
    namespace = str((chosen.get("context") or {}).get("namespace") or "default")
    return RemoteClient(client.ApiClient(configuration)), namespace


# ---------------------------------------------------------------------- destination clusters
def kubeconfig_from_argo(name: str, server: str, cfg: Obj) -> Obj:
    """Argo CD's cluster `config` as a kubeconfig, so that one loader (the official
    client's) handles both kinds of Secret."""
    tls = cfg.get("tlsClientConfig") or {}
    cluster: Obj = {"server": server}
    if tls.get("insecure"):
        cluster["insecure-skip-tls-verify"] = True
    if tls.get("caData"):
        cluster["certificate-authority-data"] = tls["caData"]
    if tls.get("serverName"):
        cluster["tls-server-name"] = tls["serverName"]
    user: Obj = {}
    if cfg.get("bearerToken"):
        user["token"] = cfg["bearerToken"]
    if cfg.get("username"):
        user["username"], user["password"] = cfg["username"], cfg.get("password", "")
    if tls.get("certData"):
        user["client-certificate-data"] = tls["certData"]
    if tls.get("keyData"):
        user["client-key-data"] = tls["keyData"]
    unsupported = sorted(k for k in ("execProviderConfig", "awsAuthConfig") if cfg.get(k))
    if unsupported:
        raise ClusterError(f"{', '.join(unsupported)} is not supported: use bearerToken or client certificates")
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def _secret_data(secret: Obj) -> dict[str, str]:
    where = f"secret {secret['metadata'].get('namespace', '')}/{secret['metadata']['name']}"
    out = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ClusterError(f"{where}: data.{key} is not base64-encoded text") from None
    for key, value in (secret.get("stringData") or {}).items():
        out[key] = str(value)
    return out


class RegisteredCluster:
    """One cluster Secret, parsed; its client is made when first needed."""

    def __init__(self, secret: Obj) -> None:
        meta = secret["metadata"]
        self.key = f"{meta.get('namespace', '')}/{meta['name']}"
        self.where = f"secret {self.key}"
        self.version = (meta.get("uid"), meta.get("resourceVersion"))
        data = _secret_data(secret)
        self.name = data.get("name", "")
        self.server = data.get("server", "").rstrip("/")
        self._kubeconfig = data.get("kubeconfig", "")
        self._context = data.get("context") or None
        self._config = data.get("config", "")
        self._client: RemoteClient | None = None
        self._lock = threading.Lock()
        if not self.server and not self._kubeconfig:
            raise ClusterError(f"{self.where}: needs `server` (with `config`) or `kubeconfig`")

    def client(self) -> RemoteClient:
        """The cluster's client, made once the server answers: the official client's
        discovery asks it at once. Raises Unreachable (naming the server and the Secret,
        never the credentials) while it does not."""
        with self._lock:
            if self._client is None:
                api_client = self._api_client()
                self._probe(api_client)
                try:
                    self._client = RemoteClient(api_client)
                except Exception as exc:  # the discovery after the probe, e.g. the server went away
                    raise self._unreachable(api_client, exc) from None
            return self._client

    def _probe(self, api_client: Any) -> None:
        """Ask the server its version, with a deadline (the discovery has none)."""
        from kubernetes.client import VersionApi

        try:
            VersionApi(api_client).get_code(_request_timeout=PROBE_SECONDS)
        except Exception as exc:
            raise self._unreachable(api_client, exc) from None

    def _unreachable(self, api_client: Any, exc: Exception) -> Unreachable:
        from kubernetes.client.exceptions import ApiException

        server = self.server or str(api_client.configuration.host)
        if isinstance(exc, ApiException):  # e.g. 401: the Secret's credentials are refused
            return Unreachable(f"cluster {server} ({self.where}) answered {exc.status} {exc.reason}")
        reason = getattr(exc, "reason", None) or exc  # urllib3's and ssl's texts hold no credentials
        return Unreachable(f"cluster {server} ({self.where}) is unreachable: {reason}")

    def _api_client(self) -> Any:
        from kubernetes import config

        try:
            if self._kubeconfig:
                doc = load_yaml(self._kubeconfig, f"{self.where} (kubeconfig)")
                if not isinstance(doc, dict):
                    raise ClusterError(f"{self.where}: kubeconfig must be a mapping")
                return config.new_client_from_config_dict(doc, context=self._context)
            try:
                cfg = orjson.loads(self._config or "{}")
            except orjson.JSONDecodeError as exc:
                raise ClusterError(f"{self.where}: config is not valid JSON: {exc}") from None
            if not isinstance(cfg, dict):
                raise ClusterError(f"{self.where}: config must be a JSON object")
            return config.new_client_from_config_dict(kubeconfig_from_argo(self.name or "cluster", self.server, cfg))
        except (config.ConfigException, ManifestError) as exc:
            raise ClusterError(f"{self.where}: {exc}") from None


class ClusterRegistry:
    """Destination name or server -> client, from the cluster Secrets in one namespace
    (watched, so a Secret added or rotated takes effect without a restart)."""

    def __init__(self, client: Client, namespace: str, own_urls: Iterable[str] = ()) -> None:
        self.client = client
        self.own_urls = {apps.IN_CLUSTER, *(u.rstrip("/") for u in own_urls)}
        self.secrets = Informer(client, "v1", "Secret", namespace, label_selector=CLUSTER_SELECTOR)
        self._parsed: dict[str, RegisteredCluster] = {}
        self._lock = threading.Lock()

    def start(self) -> ClusterRegistry:
        self.secrets.start()
        return self

    def stop(self) -> None:
        self.secrets.stop()

    def clusters(self) -> list[RegisteredCluster]:
        """Every usable registered cluster (a broken Secret is logged and skipped)."""
        out = []
        with self._lock:
            for secret in self.secrets.cache.list():
                key = f"{secret['metadata'].get('namespace')}/{secret['metadata']['name']}"
                cached = self._parsed.get(key)
                version = (secret["metadata"].get("uid"), secret["metadata"].get("resourceVersion"))
                if cached is None or cached.version != version:
                    try:
                        cached = self._parsed[key] = RegisteredCluster(secret)
                    except ClusterError as exc:
                        log.warning("%s", exc)
                        continue
                out.append(cached)
        return out

    def client_for(self, server: str = "", name: str = "") -> Client:
        """The client of a destination (Argo CD's `destination.server` or `.name`)."""
        cluster = self.find(server, name)
        return self.client if cluster is None else cluster.client()

    def find(self, server: str = "", name: str = "") -> RegisteredCluster | None:
        """The registered cluster of a destination, or None for the engine's own cluster."""
        server = server.rstrip("/")
        if (server and server in self.own_urls) or (not server and name == IN_CLUSTER_NAME):
            return None
        for cluster in self.clusters():
            if (server and cluster.server == server) or (not server and name and cluster.name == name):
                return cluster
        what = f"server {server!r}" if server else f"name {name!r}"
        raise ClusterError(
            f"cluster {what} is not registered: add a Secret labelled {CLUSTER_SELECTOR} "
            f"in namespace {self.secrets.namespace!r}"
        )
