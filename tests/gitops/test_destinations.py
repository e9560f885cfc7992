"""Destination clusters registered as Argo CD cluster Secrets: the engine runs against one
embedded cluster and deploys to a second one over its HTTPS API (bearer token + CA from
the second's kubeconfig), as Argo CD does with `argocd cluster add`."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from controllers import errors
from controllers.client import Client
from controllers.cluster import EmbeddedCluster
from controllers.manager import ClusterConfig
from gitops import apps, clusters
from gitops.engine import Engine
from tests.conftest import eventually, serving
from tests.gitops.conftest import GitServer, app_status, application
from tests.manifests import WEB_DEPLOYMENT, WEB_SERVICE

ENGINE_NS = "default"  # an engine serving all namespaces reads cluster Secrets here

CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data: {mode: prod}
"""


@pytest.fixture
def second() -> Iterator[EmbeddedCluster]:
    """The destination cluster: its own nodes and controllers, reached only over HTTPS."""
    config = ClusterConfig.default(1)
    config.heartbeat_seconds = 0.5
    with serving(config) as c:
        yield c


def register(client: Client, name: str, server: str, token: str, ca: bytes) -> None:
    """A cluster Secret as `argocd cluster add` writes it."""
    config = {"bearerToken": token, "tlsClientConfig": {"caData": base64.b64encode(ca).decode()}}
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"cluster-{name}",
                "namespace": ENGINE_NS,
                "labels": {clusters.SECRET_TYPE_LABEL: "cluster"},
            },
            "type": "Opaque",
            "stringData": {"name": name, "server": server, "config": orjson.dumps(config).decode()},
        }
    )


def status(client: Client, name: str) -> dict[str, Any]:
    return client.get(apps.API_VERSION, "Application", name, "default").get("status") or {}


def condition(client: Client, name: str, ctype: str) -> str:
    conds = status(client, name).get("conditions") or []
    return next((c["message"] for c in conds if c["type"] == ctype), "")


def exists(client: Client, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
    try:
        client.get(api_version, kind, name, namespace)
    except errors.NotFound:
        return False
    return True


def test_apps_deploy_to_a_cluster_registered_as_a_secret(
    kube: EmbeddedCluster, second: EmbeddedCluster, engine: Engine, git_server: GitServer
) -> None:
    own, remote = kube.client, second.client
    assert second.certs is not None and second.token
    register(own, "prod", second.url, second.token, second.certs.ca_pem())
    repo = git_server.repo("shop")
    first = repo.commit({"web/deploy.yaml": WEB_DEPLOYMENT, "web/svc.yaml": WEB_SERVICE, "web/cm.yaml": CONFIGMAP})

    # One app names the cluster by server URL, the other by name.
    own.create(application("by-server", repo.url(), "web", destination={"server": second.url, "namespace": "shop"}))
    own.create(application("by-name", repo.url(), "web", destination={"name": "prod", "namespace": "shop2"}))
    for name in ("by-server", "by-name"):
        eventually(lambda n=name: app_status(own, n) == ("Synced", "Healthy", first), 120, f"{name} Synced+Healthy")
    for ns in ("shop", "shop2"):
        deploy = remote.get("apps/v1", "Deployment", "web", ns)
        assert deploy["status"]["readyReplicas"] == 2
        assert exists(remote, "v1", "Service", "web", ns) and exists(remote, "v1", "ConfigMap", "settings", ns)
        assert not exists(own, "v1", "Namespace", ns)  # nothing lands in the engine's cluster
    assert not own.list("apps/v1", "Deployment", "")["items"]
    resources = {(r["kind"], r["version"]) for r in status(own, "by-server")["resources"]}
    assert resources == {("Deployment", "v1"), ("Service", "v1"), ("ConfigMap", "v1")}

    # Drift in the destination is reverted (selfHeal), seen through its own watch.
    remote.patch("apps/v1", "Deployment", "web", {"spec": {"replicas": 5}}, "shop", "merge")
    eventually(lambda: remote.get("apps/v1", "Deployment", "web", "shop")["spec"]["replicas"] == 2, 60, "healed")
    remote.patch("v1", "ConfigMap", "settings", {"data": {"mode": "dev"}}, "shop2", "merge")
    eventually(lambda: remote.get("v1", "ConfigMap", "settings", "shop2")["data"] == {"mode": "prod"}, 60, "healed")

    # A resource removed from git is pruned from the destination.
    second_rev = repo.commit({"web/svc.yaml": None})
    for name in ("by-server", "by-name"):
        engine.controller.refresh(f"{apps.API_VERSION}|default/{name}")
    for name in ("by-server", "by-name"):
        eventually(lambda n=name: app_status(own, n) == ("Synced", "Healthy", second_rev), 60, f"{name} pruned")
    assert not exists(remote, "v1", "Service", "web", "shop") and not exists(remote, "v1", "Service", "web", "shop2")

    # Deleted with Argo CD's resources finalizer (cascade): its resources go from the destination.
    finalizer = {"metadata": {"finalizers": ["resources-finalizer.argocd.argoproj.io"]}}
    own.patch(apps.API_VERSION, "Application", "by-server", finalizer, "default", "merge")
    own.delete(apps.API_VERSION, "Application", "by-server", "default")
    eventually(lambda: not exists(own, apps.API_VERSION, "Application", "by-server", "default"), 60, "app gone")
    assert not exists(remote, "apps/v1", "Deployment", "web", "shop")
    assert not exists(remote, "v1", "ConfigMap", "settings", "shop")
    assert exists(remote, "apps/v1", "Deployment", "web", "shop2")  # the other app's

    # The Secret removed: the cluster is no longer known, and nothing is touched.
    own.delete("v1", "Secret", "cluster-prod", ENGINE_NS)
    eventually(lambda: "is not registered" in condition(own, "by-name", "InvalidSpecError"), 60, "unregistered")
    assert app_status(own, "by-name")[0] == "Unknown"
    assert exists(remote, "apps/v1", "Deployment", "web", "shop2")  # left as it is, as Argo CD does


def test_unknown_or_unreachable_destinations_say_so_and_apply_nothing(
    kube: EmbeddedCluster, second: EmbeddedCluster, engine: Engine, git_server: GitServer
) -> None:
    own = kube.client
    assert second.certs is not None and second.token
    repo = git_server.repo("shop")
    repo.commit({"web/deploy.yaml": WEB_DEPLOYMENT, "web/cm.yaml": CONFIGMAP})

    own.create(application("nowhere", repo.url(), "web", destination={"name": "nope", "namespace": "ghost"}))
    message = eventually(lambda: condition(own, "nowhere", "InvalidSpecError"), 60, "InvalidSpecError")
    assert message == (
        "cluster name 'nope' is not registered: add a Secret labelled "
        f"argocd.argoproj.io/secret-type=cluster in namespace '{ENGINE_NS}'"
    )
    assert app_status(own, "nowhere")[0] == "Unknown"

    # Registered, but nothing listens there: the server is named, the token never.
    url = second.url
    token, ca = second.token, second.certs.ca_pem()
    second.stop()
    register(own, "gone", url, token, ca)
    own.create(application("unreachable", repo.url(), "web", destination={"server": url, "namespace": "ghost"}))
    message = eventually(lambda: condition(own, "unreachable", "ComparisonError"), 60, "ComparisonError")
    assert message.startswith(f"cluster {url} (secret {ENGINE_NS}/cluster-gone) is unreachable: "), message
    assert token not in message
    assert app_status(own, "unreachable")[0] == "Unknown"

    # Registering the missing cluster later is picked up without a restart or an edit.
    register(own, "nope", url, token, ca)
    message = eventually(lambda: condition(own, "nowhere", "ComparisonError"), 60, "re-resolved")
    assert message.startswith(f"cluster {url} (secret {ENGINE_NS}/cluster-nope) is unreachable: "), message
    assert not condition(own, "nowhere", "InvalidSpecError")
    assert not exists(own, "v1", "Namespace", "ghost") and not own.list("v1", "ConfigMap", "ghost")["items"]
