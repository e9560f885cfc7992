"""Renderer on real repositories: directories, Kustomize, Helm, Argo CD's example apps, and the render cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from gitops.source.git import RepoCache
from gitops.source.render import Renderer, RenderError
from tests.conftest import SHARED
from tests.gitops.conftest import GitRepo, GitServer, Symlink

EXAMPLES = SHARED / "peer-suites" / "argocd-example-apps"


def cm(name: str, **data: str) -> str:
    body = "".join(f"\n  {k}: {v!r}" for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:{body or ' {}'}\n"


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"].get("name") or o["metadata"].get("generateName") for o in objects]


@pytest.fixture
def repo(git_server: GitServer) -> GitRepo:
    return git_server.repo("apps")


@pytest.fixture
def renderer(repo_cache: RepoCache, tmp_path: Path) -> Renderer:
    return Renderer(repo_cache, tmp_path / "manifests")


def render(renderer: Renderer, repo: GitRepo, source: dict[str, Any], app: str = "demo", ns: str = "prod") -> list[Any]:
    sha = renderer.repos.resolve(repo.url(), "main", refresh=True)
    return renderer.render(repo.url(), sha, {"repoURL": repo.url(), "targetRevision": "main", **source}, app, ns)


def test_directory_sources_follow_recurse_include_and_exclude(repo: GitRepo, renderer: Renderer) -> None:
    repo.commit(
        {
            "app/b.yaml": cm("b"),
            "app/a.yml": cm("a") + "---\n# only a comment\n---\n" + cm("a2"),
            "app/list.json": '{"apiVersion": "v1", "kind": "List", "items": [' + '{"apiVersion": "v1", "kind": '
            '"ConfigMap", "metadata": {"name": "from-list"}}]}',
            "app/README.md": "not a manifest",
            "app/tool-config.yaml": "settings:\n  colour: blue\n",  # YAML that is not a manifest: skipped
            "app/sub/c.yaml": cm("c"),
            "app/sub/deeper/d.yaml": cm("d"),
            "app/skip/e.yaml": cm("e"),
        }
    )
    assert names(render(renderer, repo, {"path": "app"})) == ["a", "a2", "b", "from-list"]
    assert names(render(renderer, repo, {"path": "app", "directory": {"recurse": True}})) == [
        "a", "a2", "b", "from-list", "e", "c", "d",
    ]  # fmt: skip
    recursed = {"path": "app", "directory": {"recurse": True, "exclude": "{skip/*,*.json}"}}
    assert names(render(renderer, repo, recursed)) == ["a", "a2", "b", "c", "d"]
    only = {"path": "app", "directory": {"recurse": True, "include": "{b.yaml,sub/*}"}}
    assert names(render(renderer, repo, only)) == ["b", "c", "d"]
    both = {"path": "app", "directory": {"recurse": True, "include": "*.yaml", "exclude": "sub/deeper/*"}}
    assert names(render(renderer, repo, both)) == ["b", "e", "c"]


def test_broken_yaml_fails_the_render_naming_file_and_line(repo: GitRepo, renderer: Renderer) -> None:
    broken = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: app: web\n"
    repo.commit({"app/good.yaml": cm("good"), "app/web/deploy.yaml": broken})
    with pytest.raises(RenderError, match=r"^app/web/deploy\.yaml:5: mapping values are not allowed") as err:
        render(renderer, repo, {"path": "app", "directory": {"recurse": True}})
    assert (err.value.source, err.value.line) == ("app/web/deploy.yaml", 5)


def test_an_object_without_kind_is_an_error(repo: GitRepo, renderer: Renderer) -> None:
    repo.commit({"app/x.yaml": cm("ok") + "---\napiVersion: v1\nmetadata:\n  name: no-kind\n"})
    with pytest.raises(RenderError, match=r"app/x\.yaml:7: document 2 has no kind"):
        render(renderer, repo, {"path": "app"})


def test_a_symlink_out_of_the_repository_fails_the_render(repo: GitRepo, renderer: Renderer) -> None:
    repo.commit({"app/cm.yaml": cm("x"), "app/secret.yaml": Symlink("/etc/passwd")})
    with pytest.raises(RenderError, match=r"symlink app/secret\.yaml -> /etc/passwd points outside the repository"):
        render(renderer, repo, {"path": "app"})


def test_a_missing_path_is_named(repo: GitRepo, renderer: Renderer) -> None:
    repo.commit({"app/cm.yaml": cm("x")})
    with pytest.raises(RenderError, match="path 'nowhere' does not exist"):
        render(renderer, repo, {"path": "nowhere"})
    with pytest.raises(RenderError, match="must be relative"):
        render(renderer, repo, {"path": "../elsewhere"})
    with pytest.raises(RenderError, match="multiple application sources defined: Helm, Directory"):
        render(renderer, repo, {"path": "app", "helm": {"releaseName": "x"}, "directory": {"recurse": True}})


KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: base-
resources:
  - ../../base
"""
BASE_DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.25
"""


def test_kustomize_overlays_get_argo_cd_kustomize_options(repo: GitRepo, renderer: Renderer) -> None:
    repo.commit(
        {
            "base/kustomization.yaml": "resources: [deploy.yaml]\n",
            "base/deploy.yaml": BASE_DEPLOY,
            "overlays/prod/kustomization.yaml": KUSTOMIZATION,
        }
    )
    plain = render(renderer, repo, {"path": "overlays/prod"})
    assert names(plain) == ["base-web"]
    options = {
        "namePrefix": "prod-",
        "nameSuffix": "-v2",
        "images": ["nginx=registry.example.com/nginx:1.27"],
        "commonLabels": {"team": "web"},
        "commonAnnotations": {"owner": "ops"},
        "namespace": "web-prod",
    }
    (deploy,) = render(renderer, repo, {"path": "overlays/prod", "kustomize": options})
    assert deploy["metadata"]["name"] == "prod-web-v2"
    assert deploy["metadata"]["namespace"] == "web-prod"
    assert deploy["metadata"]["labels"] == {"team": "web"}
    assert deploy["metadata"]["annotations"] == {"owner": "ops"}
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/nginx:1.27"
    (tagged,) = render(renderer, repo, {"path": "overlays/prod", "kustomize": {"images": ["nginx:1.26"]}})
    assert tagged["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"


def test_a_kustomize_failure_is_reported_with_repository_paths(repo: GitRepo, renderer: Renderer) -> None:
    repo.commit({"overlays/prod/kustomization.yaml": "resources: [../../missing]\n"})
    with pytest.raises(RenderError, match=r"overlays/prod: kustomize build failed: .*missing") as err:
        render(renderer, repo, {"path": "overlays/prod"})
    assert str(renderer.cache_dir) not in str(err.value)


CHART = "apiVersion: v2\nname: web\nversion: 0.1.0\n"
VALUES = "replicas: 1\nimage:\n  repository: nginx\n  tag: '1.25'\nport: 80\nextra: {}\n"
TEMPLATE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  namespace: {{ .Release.Namespace }}
  annotations:
    env: {{ .Values.env | default "dev" | quote }}
    port-type: {{ kindOf .Values.port | quote }}
    {{- with .Values.extra.note }}
    note: {{ . | quote }}
    {{- end }}
spec:
  replicas: {{ .Values.replicas }}
  template:
    spec:
      containers:
        - name: web
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"""


def helm_chart(repo: GitRepo, extra: dict[str, str | Symlink | None] | None = None) -> str:
    return repo.commit(
        {
            "charts/web/Chart.yaml": CHART,
            "charts/web/values.yaml": VALUES,
            "charts/web/values-prod.yaml": "replicas: 3\nenv: prod\n",
            "charts/web/templates/deploy.yaml": TEMPLATE,
            "charts/web/templates/NOTES.txt": "Thanks for installing {{ .Release.Name }}\n",
            "charts/web/crds/widget.yaml": "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            "metadata:\n  name: widgets.example.com\n",
            "env/shared-values.yaml": "image:\n  tag: '1.26'\n",
            "env/note.txt": "hello, world",
            **(extra or {}),
        }
    )


def test_helm_values_files_values_and_parameters_apply_in_argo_cd_order(repo: GitRepo, renderer: Renderer) -> None:
    helm_chart(repo)
    crd, deploy = render(renderer, repo, {"path": "charts/web"}, app="shop", ns="shop-prod")
    assert crd["kind"] == "CustomResourceDefinition"
    assert (deploy["metadata"]["name"], deploy["metadata"]["namespace"]) == ("shop-web", "shop-prod")
    assert deploy["spec"]["replicas"] == 1

    helm = {
        "releaseName": "rel",
        "valueFiles": ["values-prod.yaml", "../../env/shared-values.yaml"],
        "values": "replicas: 5\nimage:\n  repository: registry.example.com/web\n",
        "parameters": [
            {"name": "image.tag", "value": "2.0"},
            {"name": "port", "value": "8080", "forceString": True},
            {"name": "extra.note", "value": "a,b"},
        ],
        "fileParameters": [{"name": "env", "path": "../../env/note.txt"}],
    }
    crd, deploy = render(renderer, repo, {"path": "charts/web", "helm": helm})
    assert deploy["metadata"]["name"] == "rel-web"
    assert deploy["spec"]["replicas"] == 5  # values beat value files
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/web:2.0"
    assert deploy["metadata"]["annotations"] == {"env": "hello, world", "port-type": "string", "note": "a,b"}

    as_object = {"valuesObject": {"replicas": 7}, "values": "replicas: 5\n", "skipCrds": True}
    (deploy,) = render(renderer, repo, {"path": "charts/web", "helm": as_object})
    assert deploy["spec"]["replicas"] == 7  # valuesObject replaces the values string, as in Argo CD


ESCAPING_LINK = {"charts/web/escape.yaml": Symlink("../../../../../../../tmp/x.yaml")}


@pytest.mark.parametrize(
    ("helm", "files"),
    [
        ({"valueFiles": ["../../../outside.yaml"]}, {}),
        ({"valueFiles": ["/../../etc/hostname"]}, {}),
        ({"fileParameters": [{"name": "x", "path": "../../../etc/hostname"}]}, {}),
        ({"valueFiles": ["escape.yaml"]}, ESCAPING_LINK),
    ],
)
def test_helm_files_outside_the_repository_are_refused(
    repo: GitRepo, renderer: Renderer, helm: Any, files: dict[str, Symlink]
) -> None:
    helm_chart(repo, dict(files))
    with pytest.raises(RenderError, match="outside the repository"):
        render(renderer, repo, {"path": "charts/web", "helm": helm})


def test_helm_errors_name_the_file_and_line(repo: GitRepo, renderer: Renderer) -> None:
    helm_chart(repo)
    with pytest.raises(RenderError, match="value file 'missing.yaml' does not exist"):
        render(renderer, repo, {"path": "charts/web", "helm": {"valueFiles": ["missing.yaml"]}})
    ignored = {"valueFiles": ["missing.yaml"], "ignoreMissingValueFiles": True}
    assert len(render(renderer, repo, {"path": "charts/web", "helm": ignored})) == 2
    with pytest.raises(RenderError, match=r"^charts/web \(helm\.values\):2: "):
        render(renderer, repo, {"path": "charts/web", "helm": {"values": "a: 1\nb: c: d\n"}})

    repo.commit({"charts/web/templates/broken.yaml": 'kind: x\nname: {{ required "name is required" .Values.nm }}\n'})
    with pytest.raises(RenderError, match=r"^charts/web/templates/broken\.yaml:2: helm: .*name is required") as err:
        render(renderer, repo, {"path": "charts/web"})
    assert (err.value.source, err.value.line) == ("charts/web/templates/broken.yaml", 2)


def test_an_unchanged_commit_is_never_rendered_twice(
    repo: GitRepo, repo_cache: RepoCache, renderer: Renderer, tmp_path: Path
) -> None:
    helm_chart(repo)
    source = {"path": "charts/web", "helm": {"parameters": [{"name": "replicas", "value": "2"}]}}
    first = render(renderer, repo, source)
    first[1]["spec"]["replicas"] = 99  # callers get their own copy
    second = render(renderer, repo, source)
    assert second[1]["spec"]["replicas"] == 2
    assert (renderer.renders, renderer.cache_hits) == (1, 1)

    other_app = render(renderer, repo, source, app="other")
    assert other_app[1]["metadata"]["name"] == "other-web"
    assert renderer.renders == 2

    restarted = Renderer(repo_cache, renderer.cache_dir)  # the disk cache survives a restart
    assert render(restarted, repo, source) == second
    assert restarted.renders == 0

    repo.commit({"charts/web/values.yaml": VALUES.replace("replicas: 1", "replicas: 4")})
    assert render(restarted, repo, {"path": "charts/web"})[1]["spec"]["replicas"] == 4
    assert restarted.renders == 1


def test_a_commit_elsewhere_in_a_monorepo_does_not_re_render_a_directory_app(repo: GitRepo, renderer: Renderer) -> None:
    repo.commit({"apps/a/cm.yaml": cm("a", v="1"), "apps/b/cm.yaml": cm("b", v="1"), "shared/cm.yaml": cm("s", v="1")})
    repo.commit({"apps/linked/cm.yaml": Symlink("../../shared/cm.yaml")})
    for app in ("a", "b", "linked"):
        render(renderer, repo, {"path": f"apps/{app}"}, app=app)
    assert renderer.renders == 3

    repo.commit({"apps/b/cm.yaml": cm("b", v="2")})
    assert render(renderer, repo, {"path": "apps/a"}, app="a")[0]["data"] == {"v": "1"}
    assert render(renderer, repo, {"path": "apps/b"}, app="b")[0]["data"] == {"v": "2"}
    assert renderer.renders == 4  # b only

    repo.commit({"shared/cm.yaml": cm("s", v="2")})  # outside apps/linked, but its symlink reads it
    assert render(renderer, repo, {"path": "apps/linked"}, app="linked")[0]["data"] == {"v": "2"}
    assert render(renderer, repo, {"path": "apps/a"}, app="a")[0]["data"] == {"v": "1"}
    assert renderer.renders == 5


@pytest.fixture
def examples(repo: GitRepo, tmp_path: Path) -> GitRepo:
    """Argo CD's example apps, copied into a fresh repository at test time."""
    if not EXAMPLES.is_dir():
        pytest.skip(f"{EXAMPLES} is not available")
    tree = tmp_path / "examples"
    for app in ("guestbook", "kustomize-guestbook", "helm-guestbook", "sync-waves"):
        shutil.copytree(EXAMPLES / app, tree / app)
    repo.add_tree(tree, "", "Argo CD example apps")
    return repo


def test_argo_cd_example_apps_render_as_argo_cd_renders_them(examples: GitRepo, renderer: Renderer) -> None:
    def kinds(objs: list[Any]) -> list[tuple[str, str]]:
        return [(o["kind"], o["metadata"].get("name") or o["metadata"]["generateName"]) for o in objs]

    assert kinds(render(renderer, examples, {"path": "guestbook"})) == [
        ("Deployment", "guestbook-ui"),
        ("Service", "guestbook-ui"),
    ]
    assert sorted(kinds(render(renderer, examples, {"path": "kustomize-guestbook"}))) == [
        ("Deployment", "kustomize-guestbook-ui"),
        ("Service", "kustomize-guestbook-ui"),
    ]
    helm = render(renderer, examples, {"path": "helm-guestbook", "helm": {"valueFiles": ["values-production.yaml"]}},
                  app="guestbook")  # fmt: skip
    assert kinds(helm) == [("Deployment", "guestbook-helm-guestbook"), ("Service", "guestbook-helm-guestbook")]
    assert helm[1]["spec"]["type"] == "LoadBalancer"
    waves = render(renderer, examples, {"path": "sync-waves"})
    assert [o["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave") for o in waves] == [
        None, None, None, "1", "2", "2", "3",
    ]  # fmt: skip
    assert waves[0]["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert {renderer.source_type(examples.url(), renderer.repos.resolve(examples.url()), {"path": p}) for p in (
        "guestbook", "kustomize-guestbook", "helm-guestbook")} == {"Directory", "Kustomize", "Helm"}  # fmt: skip
