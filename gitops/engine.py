"""The GitOps engine assembled on a cluster client: the Application CRDs, the git cache,
the renderer and the application controller."""

from __future__ import annotations

import logging
from pathlib import Path

from controllers import errors
from controllers.client import Client
from controllers.runtime import InformerFactory
from gitops import apps
from gitops.controller import AppController, EngineSettings, PolicyGate
from gitops.resources import Obj
from gitops.source.git import RepoCache
from gitops.source.render import Renderer
from gitops.yamlload import load_manifests

log = logging.getLogger(__name__)


def install_crds(client: Client) -> None:
    """Create or update the Application CRDs (ours and Argo CD's group)."""
    for group in (apps.GROUP, "argoproj.io"):
        crd = apps.application_crd(group)
        client.apply(crd, field_manager="gitops", force=True)


class Engine:
    def __init__(
        self,
        client: Client,
        data_dir: Path,
        settings: EngineSettings | None = None,
        gate: PolicyGate | None = None,
        informers: InformerFactory | None = None,
    ) -> None:
        """`informers`: the embedded cluster's shared factory, so that the kinds both read
        (Deployments, Services...) are watched and cached once; the engine's own otherwise."""
        self.client = client
        self.data_dir = data_dir
        self.repos = RepoCache(data_dir / "repos")
        # Renders of small apps are ~10 KB of JSON: 2,048 of them keep a no-op pass over
        # 1,000 apps off the disk cache.
        self.renderer = Renderer(self.repos, data_dir / "manifests", memory_entries=2048)
        self._own_informers = informers is None
        self.informers = informers or InformerFactory(client)
        self.controller = AppController(client, self.informers, self.repos, self.renderer, settings, gate)

    def start(self) -> Engine:
        install_crds(self.client)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        if self._own_informers:
            self.informers.stop()

    def apply_app_file(self, path: Path) -> list[Obj]:
        """Create or update the Applications listed in a YAML file (`gitops up --app`)."""
        applied = []
        for obj in load_manifests(path.read_text(), str(path)):
            if not apps.is_application(obj):
                raise errors.BadRequest(f"{path}: {obj.get('kind')} is not an Application")
            app = apps.convert_argo(obj) if obj["apiVersion"] == apps.ARGO_API_VERSION else obj
            app["metadata"].setdefault("namespace", "default")
            applied.append(self.client.apply(app, field_manager="gitops-cli", force=True))
        return applied
