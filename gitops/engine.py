"""The GitOps engine assembled on a cluster client: the Application CRDs, the git cache,
the renderer and the application controller."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from controllers import errors
from controllers.client import Client, RemoteClient
from controllers.runtime import InformerFactory
from gitops import apps, metrics
from gitops.controller import AppController, EngineSettings, PolicyGate
from gitops.leader import LeaderElector, LeaseConfig
from gitops.push import PushDispatcher
from gitops.repocreds import SecretCredentials
from gitops.resources import Obj
from gitops.source.git import RepoCache
from gitops.source.render import Renderer
from gitops.yamlload import load_manifests

log = logging.getLogger(__name__)


def install_crds(client: Client) -> None:
    """Create or update the Application CRDs: ours, and Argo CD's group unless Argo CD (or
    anyone but us) installed that one: its full schema must not be replaced by ours."""
    for group in (apps.GROUP, "argoproj.io"):
        crd = apps.application_crd(group)
        if group != apps.GROUP:
            try:
                live = client.get(crd["apiVersion"], crd["kind"], crd["metadata"]["name"])
            except errors.NotFound:
                live = None
            managers = {m.get("manager") for m in (live or {}).get("metadata", {}).get("managedFields") or []}
            if live is not None and "gitops" not in managers:
                log.info("%s is installed by someone else: left as it is", crd["metadata"]["name"])
                continue
        client.apply(crd, field_manager="gitops", force=True)


class Engine:
    def __init__(
        self,
        client: Client,
        data_dir: Path,
        settings: EngineSettings | None = None,
        gate: PolicyGate | None = None,
        informers: InformerFactory | None = None,
        own_urls: Iterable[str] = (),
    ) -> None:
        """`informers`: the embedded cluster's shared factory, so that the kinds both read
        (Deployments, Services...) are watched and cached once; the engine's own otherwise.
        `own_urls`: addresses of the engine's cluster that destinations may use (a
        RemoteClient's own is known); any other destination is a cluster registered as a
        Secret in the engine's namespace (`default` when it serves all namespaces)."""
        self.client = client
        self.data_dir = data_dir
        self.namespace = (settings or EngineSettings()).namespace
        self.repos = RepoCache(
            data_dir / "repos",
            credentials=SecretCredentials(client, self.namespace),
            on_request=metrics.observe_git_request,
        )
        # Renders of small apps are ~10 KB of JSON: 2,048 of them keep a no-op pass over
        # 1,000 apps off the disk cache.
        self.renderer = Renderer(self.repos, data_dir / "manifests", memory_entries=2048)
        self._own_informers = informers is None
        self.informers = informers or InformerFactory(client)
        if isinstance(client, RemoteClient):
            own_urls = [*own_urls, str(client.api_client.configuration.host)]
        self.controller = AppController(client, self.informers, self.repos, self.renderer, settings, gate, own_urls)
        # Webhooks and git hooks feed it; a standby passes pushes on to the leader.
        self.push = PushDispatcher(self.controller, self.repos, leading=lambda: self.is_leader)
        self.elector: LeaderElector | None = None
        self._lock = threading.Lock()
        self._reconciling = False
        self._stopping = False

    def start(self, election: LeaseConfig | None = None, on_lost: Callable[[], None] | None = None) -> Engine:
        """Reconcile at once, or, with `election`, only while this process holds the Lease.
        A follower keeps the Application caches warm (for readers, and to take over
        fast); `on_lost` is called when leadership is lost rather than given up."""
        install_crds(self.client)
        if election is None:
            self._start_reconciling()
        else:
            self.controller.watch_apps()

            def stopped_leading() -> None:
                self._stop_reconciling()
                if not self._stopping and on_lost is not None:
                    on_lost()

            self.elector = LeaderElector(self.client, election, self._start_reconciling, stopped_leading).start()
        self.push.start()
        return self

    def _start_reconciling(self) -> None:
        with self._lock:
            if not self._stopping and not self._reconciling:
                self._reconciling = True
                self.controller.start()

    def _stop_reconciling(self) -> None:
        with self._lock:
            if self._reconciling:
                self._reconciling = False
                self.controller.stop()

    @property
    def is_leader(self) -> bool:
        """Whether this engine reconciles (always, without leader election)."""
        return self._reconciling

    def stop(self) -> None:
        """Stop reconciling first, then give the Lease up: the successor starts only once
        this engine has stopped writing."""
        with self._lock:
            self._stopping = True
        self.push.stop()
        self._stop_reconciling()
        if self.elector is not None:
            self.elector.stop()
        if self._own_informers:
            self.informers.stop()

    def apply_app_file(self, path: Path) -> list[Obj]:
        """Create or update the Applications listed in a YAML file (`gitops up --app`); one
        without a namespace goes to the namespace the engine serves (`default` when all)."""
        applied = []
        for obj in load_manifests(path.read_text(), str(path)):
            if not apps.is_application(obj):
                raise errors.BadRequest(f"{path}: {obj.get('kind')} is not an Application")
            app = apps.convert_argo(obj) if obj["apiVersion"] == apps.ARGO_API_VERSION else obj
            app["metadata"].setdefault("namespace", self.namespace or "default")
            applied.append(self.client.apply(app, field_manager="gitops-cli", force=True))
        return applied
