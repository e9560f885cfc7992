"""Discovery documents as kubectl and the Python client read them."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from controllers import discovery
from controllers.kinds import Registry, ResourceType

KUBECTL_DISCOVERY_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def _deserialize(doc: dict[str, Any], model: str) -> Any:
    """Decode a document the way the official client decodes a response body."""
    return client.ApiClient()._ApiClient__deserialize(doc, model)  # type: ignore[attr-defined]


def _widget_crd(registry: Registry) -> None:
    registry.add_crd(
        "widgets.example.com",
        [
            ResourceType(
                "example.com",
                version,
                "Widget",
                "widgets",
                True,
                ("wg",),
                ("all",),
                ("status", "scale"),
                crd=True,
            )
            for version in ("v1beta1", "v1")
        ],
    )


def test_version_is_one_kubectl_132_accepts() -> None:
    info = discovery.version_info()
    assert info["gitVersion"] == "v1.32.0"
    assert (info["major"], info["minor"]) == ("1", "32")
    assert "/" in info["platform"]
    assert _deserialize(info, "VersionInfo").git_version == "v1.32.0"


def test_core_versions() -> None:
    doc = discovery.api_versions()
    assert doc["kind"] == "APIVersions"
    assert doc["versions"] == ["v1"]
    assert doc["serverAddressByClientCIDRs"][0]["clientCIDR"] == "0.0.0.0/0"
    assert _deserialize(doc, "V1APIVersions").versions == ["v1"]


def test_group_list_has_named_groups_with_preferred_version() -> None:
    doc = discovery.api_group_list(Registry())
    names = [g["name"] for g in doc["groups"]]
    assert "" not in names
    assert names.index("apps") < names.index("events.k8s.io") < names.index("batch")
    apps = next(g for g in doc["groups"] if g["name"] == "apps")
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    parsed = _deserialize(doc, "V1APIGroupList")
    assert {g.name for g in parsed.groups} >= {"apps", "batch", "autoscaling"}


def test_crd_group_appears_with_ga_version_preferred() -> None:
    registry = Registry()
    _widget_crd(registry)
    group = discovery.api_group(registry, "example.com")
    assert group is not None
    assert group["kind"] == "APIGroup"
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["groupVersion"] == "example.com/v1"
    assert discovery.api_group_list(registry)["groups"][-1]["name"] == "example.com"


def test_unknown_group_and_version_are_not_found() -> None:
    registry = Registry()
    assert discovery.api_group(registry, "nope.example.com") is None
    assert discovery.api_resource_list(registry, "apps", "v1beta1") is None
    assert discovery.api_resource_list(registry, "nope.example.com", "v1") is None


def test_apps_v1_lists_deployments_and_their_subresources() -> None:
    doc = discovery.api_resource_list(Registry(), "apps", "v1")
    assert doc is not None
    assert doc["groupVersion"] == "apps/v1"
    by_name = {r["name"]: r for r in doc["resources"]}
    deployments = by_name["deployments"]
    assert deployments["singularName"] == "deployment"
    assert deployments["namespaced"] is True
    assert deployments["kind"] == "Deployment"
    assert deployments["shortNames"] == ["deploy"]
    assert deployments["categories"] == ["all"]
    assert set(deployments["verbs"]) >= {"create", "get", "list", "watch", "patch", "delete"}
    assert deployments["storageVersionHash"]
    scale = by_name["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert scale["verbs"] == ["get", "patch", "update"]
    status = by_name["deployments/status"]
    assert status["kind"] == "Deployment" and "group" not in status
    assert [r["name"] for r in doc["resources"]] == sorted(by_name)
    parsed = _deserialize(doc, "V1APIResourceList")
    assert "deployments/scale" in {r.name for r in parsed.resources}


def test_core_v1_has_pod_binding_and_no_short_names_on_subresources() -> None:
    doc = discovery.api_resource_list(Registry(), "", "v1")
    assert doc is not None and doc["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["pods/binding"]["kind"] == "Binding"
    assert by_name["pods/binding"]["verbs"] == ["create"]
    assert by_name["pods"]["shortNames"] == ["po"]
    assert by_name["namespaces"]["namespaced"] is False
    assert all("shortNames" not in r for r in doc["resources"] if "/" in r["name"])


def test_wants_aggregated_follows_kubectl_accept_header() -> None:
    assert discovery.wants_aggregated(KUBECTL_DISCOVERY_ACCEPT)
    assert discovery.wants_aggregated("application/json; g=apidiscovery.k8s.io; as=APIGroupDiscoveryList; v=v2")
    assert not discovery.wants_aggregated("application/json, */*")
    assert not discovery.wants_aggregated(
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    )
    assert not discovery.wants_aggregated("")


def test_aggregated_discovery_for_api_and_apis() -> None:
    registry = Registry()
    _widget_crd(registry)
    core, content_type = discovery.aggregated_discovery(registry, legacy_core=True)
    assert content_type == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert (core["kind"], core["apiVersion"]) == ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2")
    assert len(core["items"]) == 1 and core["items"][0]["metadata"] == {}
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert pods["scope"] == "Namespaced" and pods["shortNames"] == ["po"]
    binding = next(s for s in pods["subresources"] if s["subresource"] == "binding")
    assert binding["responseKind"] == {"group": "", "version": "", "kind": "Binding"}

    apis, _ = discovery.aggregated_discovery(registry, legacy_core=False)
    groups = {g["metadata"]["name"]: g for g in apis["items"]}
    assert "" not in groups
    apps_v1 = groups["apps"]["versions"][0]
    assert apps_v1["version"] == "v1" and apps_v1["freshness"] == "Current"
    deployments = next(r for r in apps_v1["resources"] if r["resource"] == "deployments")
    assert deployments["responseKind"] == {"group": "", "version": "", "kind": "Deployment"}
    subs = {s["subresource"]: s for s in deployments["subresources"]}
    assert subs["scale"]["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert subs["status"]["verbs"] == ["get", "patch", "update"]
    assert [v["version"] for v in groups["example.com"]["versions"]] == ["v1", "v1beta1"]
    nodes = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "nodes")
    assert nodes["scope"] == "Cluster"


@pytest.mark.parametrize("legacy_core", [True, False])
def test_aggregated_and_legacy_discovery_agree(legacy_core: bool) -> None:
    registry = Registry()
    doc, _ = discovery.aggregated_discovery(registry, legacy_core=legacy_core)
    for group in doc["items"]:
        name = group["metadata"].get("name", "")
        for version in group["versions"]:
            legacy = discovery.api_resource_list(registry, name, version["version"])
            assert legacy is not None
            top = {r["name"] for r in legacy["resources"] if "/" not in r["name"]}
            assert top == {r["resource"] for r in version["resources"]}
