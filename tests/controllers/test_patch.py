"""Patches as kubectl and clients send them: strategic merge, JSON merge, JSON patch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controllers.errors import BadRequest, Invalid
from controllers.kinds import ResourceType
from controllers.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    json_patch,
    merge_patch,
    strategic_merge_patch,
    supports_patch_type,
)
from controllers.schema import type_for

DEPLOYMENT = type_for("apps/v1", "Deployment")
POD = type_for("v1", "Pod")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 2,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "env": [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "3"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36"},
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def test_image_change_keeps_the_other_containers_and_fields() -> None:
    live = deployment()
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert [(c["name"], c["image"]) for c in containers(out)] == [
        ("web", "nginx:1.27"),
        ("sidecar", "busybox:1.36"),
    ]
    assert containers(out)[0]["env"] == containers(live)[0]["env"]
    assert containers(live)[0]["image"] == "nginx:1.25"  # the input is left alone


def test_delete_directive_removes_one_env_var() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "env": [{"name": "MODE", "$patch": "delete"}]},
                    ]
                }
            }
        }
    }
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert containers(out)[0]["env"] == [{"name": "LEVEL", "value": "3"}]


def test_set_element_order_reorders_the_merged_list() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
                }
            }
        }
    }
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["sidecar", "web"]


def test_new_item_without_order_directive_goes_first_as_in_kubernetes() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "init", "image": "alpine"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["init", "web", "sidecar"]


def test_finalizers_union_and_delete_from_primitive_list() -> None:
    out = strategic_merge_patch(deployment(), {"metadata": {"finalizers": ["b", "c"]}}, DEPLOYMENT)
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b", "c"]
    out = strategic_merge_patch(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, DEPLOYMENT)
    assert sorted(out["metadata"]["finalizers"]) == ["b", "c"]


def test_lists_without_merge_strategy_are_replaced() -> None:
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_kubectl_client_side_apply_three_way_patch() -> None:
    """The patch `kubectl apply` sends after editing a manifest: image bumped, one env
    var dropped, the sidecar removed, the rollout strategy switched to Recreate."""
    last_applied = json.dumps({"kind": "Deployment", "spec": {"replicas": 2}})
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "LEVEL"}],
                            "env": [{"$patch": "delete", "name": "MODE"}],
                            "image": "nginx:1.26",
                            "name": "web",
                        },
                        {"$patch": "delete", "name": "sidecar"},
                    ],
                }
            },
        },
    }
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert containers(out) == [
        {
            "name": "web",
            "image": "nginx:1.26",
            "env": [{"name": "LEVEL", "value": "3"}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
        }
    ]
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == last_applied
    assert out["metadata"]["labels"] == {"app": "web"}


def test_null_removes_a_key_and_label_patches_merge() -> None:
    out = strategic_merge_patch(
        deployment(), {"metadata": {"labels": {"tier": "frontend"}}, "spec": {"replicas": None}}, DEPLOYMENT
    )
    assert out["metadata"]["labels"] == {"app": "web", "tier": "frontend"}
    assert "replicas" not in out["spec"]


def test_replace_directive_in_a_list_and_in_a_map() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}],
                }
            }
        }
    }
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert containers(out) == [{"name": "only", "image": "x"}]
    patch = {"metadata": {"labels": {"$patch": "replace", "new": "1"}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert out["metadata"]["labels"] == {"new": "1"}


def test_conditions_merge_by_type() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False"},
            ]
        },
    }
    out = strategic_merge_patch(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, POD)
    assert out["status"]["conditions"] == [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True"},
    ]


def test_without_type_information_it_is_a_merge_patch() -> None:
    obj = {"spec": {"items": [1, 2], "keep": True}}
    out = strategic_merge_patch(obj, {"spec": {"items": [3]}}, None)
    assert out == {"spec": {"items": [3], "keep": True}}


def test_malformed_strategic_patches_are_bad_requests() -> None:
    with pytest.raises(BadRequest):
        strategic_merge_patch(deployment(), ["not", "an", "object"], DEPLOYMENT)
    with pytest.raises(BadRequest, match="unknown patch type"):
        strategic_merge_patch(deployment(), {"metadata": {"$patch": "explode"}}, DEPLOYMENT)
    with pytest.raises(BadRequest, match="merge key"):
        strategic_merge_patch(
            deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, DEPLOYMENT
        )
    with pytest.raises(BadRequest, match="retainKeys"):
        strategic_merge_patch(
            deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, DEPLOYMENT
        )
    with pytest.raises(BadRequest, match="setElementOrder"):
        strategic_merge_patch(
            deployment(),
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "web"}],
                            "containers": [{"name": "sidecar", "image": "y"}],
                        }
                    }
                }
            },
            DEPLOYMENT,
        )


def test_merge_patch_replaces_lists_and_null_deletes() -> None:
    out = merge_patch(deployment(), {"metadata": {"finalizers": ["z"], "labels": {"app": None, "x": "1"}}})
    assert out["metadata"]["finalizers"] == ["z"]
    assert out["metadata"]["labels"] == {"x": "1"}
    with pytest.raises(BadRequest):
        merge_patch(deployment(), [1])


def test_json_patch_applies_operations() -> None:
    out = json_patch(
        deployment(),
        [
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
        ],
    )
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"]["tier"] == "web"
    assert [c["name"] for c in containers(out)] == ["web"]


def test_json_patch_failed_test_is_422_and_bad_body_is_400() -> None:
    with pytest.raises(Invalid) as exc:
        json_patch(deployment(), [{"op": "test", "path": "/spec/replicas", "value": 3}])
    assert exc.value.code == 422
    assert exc.value.message == "the server rejected our request due to an error in our request"
    assert exc.value.causes and exc.value.causes[0]["message"]
    with pytest.raises(Invalid):
        json_patch(deployment(), [{"op": "remove", "path": "/spec/nothing"}])
    with pytest.raises(BadRequest) as bad:
        json_patch(deployment(), {"op": "add"})
    assert bad.value.code == 400


def test_json_patch_never_changes_its_input_and_copies_what_it_brings() -> None:
    live = deployment()
    before = json.dumps(live, sort_keys=True)
    value = {"note": "x"}
    out = json_patch(
        live,
        [
            {"op": "add", "path": "/metadata/annotations", "value": value},
            {"op": "copy", "from": "/spec/template/spec/containers/0", "path": "/spec/template/spec/containers/-"},
            {"op": "replace", "path": "/spec/template/spec/containers/2/name", "value": "copy"},
            {"op": "move", "from": "/spec/replicas", "path": "/metadata/annotations/replicas"},
            {"op": "test", "path": "/metadata/annotations/note", "value": "x"},
        ],
    )
    assert json.dumps(live, sort_keys=True) == before
    assert out["metadata"]["annotations"] == {"note": "x", "replicas": live["spec"]["replicas"]}
    assert value == {"note": "x"}  # the patch's own value is copied, not taken
    assert [c["name"] for c in containers(out)] == ["web", "sidecar", "copy"]
    assert "replicas" not in out["spec"]
    # RFC 6902 test compares JSON values: true is not 1; an index must be in range.
    for ops in (
        [{"op": "test", "path": "/spec/replicas", "value": True}],
        [{"op": "add", "path": "/spec/template/spec/containers/3", "value": {}}],
        [{"op": "move", "from": "/spec", "path": "/spec/inner"}],
    ):
        with pytest.raises(Invalid) as exc:
            json_patch(live, ops)
        assert ops[0]["path"] in exc.value.causes[0]["message"]
    assert json.dumps(live, sort_keys=True) == before


def test_strategic_merge_patch_is_refused_for_custom_resources() -> None:
    builtin = ResourceType("apps", "v1", "Deployment", "deployments", True)
    custom = ResourceType("example.com", "v1", "Widget", "widgets", True, crd=True)
    for patch_type in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH):
        assert supports_patch_type(builtin, patch_type)
    assert not supports_patch_type(custom, STRATEGIC_MERGE_PATCH)
    assert supports_patch_type(custom, MERGE_PATCH)
    assert not supports_patch_type(builtin, "application/xml")


def test_type_lookup_for_builtin_kinds_and_crds() -> None:
    assert DEPLOYMENT is not None
    spec = DEPLOYMENT.field("spec")
    assert spec is not None and spec.field("selector") is not None and spec.field("selector").atomic  # type: ignore[union-attr]
    hpa = type_for("autoscaling/v2", "HorizontalPodAutoscaler")
    assert hpa is not None and hpa.field("status") is not None
    assert type_for("events.k8s.io/v1", "Event") is not None
    assert type_for("example.com/v1", "Deployment") is None
    crd = type_for(
        "example.com/v1",
        "Widget",
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port"],
                            "items": {"type": "object", "properties": {"port": {"type": "integer"}}},
                        }
                    },
                }
            },
        },
    )
    assert crd is not None
    ports = crd.field("spec").field("ports")  # type: ignore[union-attr]
    assert ports is not None and ports.list_info is not None
    assert (ports.list_info.list_type, ports.list_info.map_keys) == ("map", ("port",))
