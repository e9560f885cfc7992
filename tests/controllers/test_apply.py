"""Server-side apply and field ownership, as a user of `kubectl apply --server-side` sees them."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from controllers.apiserver import PATCH_APPLY, PATCH_MERGE, APIServer, WriteOptions
from controllers.apply import server_side_apply, update_managed_fields
from controllers.errors import BadRequest, Conflict
from controllers.schema import type_for
from controllers.store import MemoryStore

DEPLOYMENT = type_for("apps/v1", "Deployment")
SERVICE = type_for("v1", "Service")
CONFIGMAP = type_for("v1", "ConfigMap")


def deployment(replicas: int | None = 2, image: str = "nginx:1.25", env: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
    if env:
        container["env"] = [{"name": "MODE", "value": "prod"}]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": spec,
    }


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["manager"], m["operation"]): m for m in obj["metadata"].get("managedFields", [])}


def apply(
    live: dict[str, Any] | None,
    cfg: dict[str, Any],
    manager: str = "kubectl",
    force: bool = False,
    node: Any = DEPLOYMENT,
) -> dict[str, Any]:
    return server_side_apply(live, cfg, manager, force, node, "2024-05-01T10:00:00Z")


def test_apply_creates_the_object_with_kubernetes_fieldsv1() -> None:
    cfg = deployment()
    cfg["metadata"]["finalizers"] = ["example.com/keep"]
    out = apply(None, cfg)
    assert out["spec"] == cfg["spec"]
    [entry] = out["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": "2024-05-01T10:00:00Z",
        "fieldsType": "FieldsV1",
    }
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:finalizers": {'v:"example.com/keep"': {}}}
    assert fields["f:spec"]["f:selector"] == {}  # a label selector is owned whole
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert container["."] == {} and "f:image" in container
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in container["f:ports"]
    assert "f:name" not in fields["f:metadata"]  # identity is never tracked


def test_reapply_without_a_field_removes_it() -> None:
    live = apply(None, deployment())
    out = apply(live, deployment(replicas=None, env=False))
    assert "replicas" not in out["spec"]
    assert "env" not in out["spec"]["template"]["spec"]["containers"][0]
    fields = managers(out)[("kubectl", "Apply")]["fieldsV1"]
    assert "f:replicas" not in fields["f:spec"]


def test_second_manager_changing_an_owned_field_gets_a_409() -> None:
    live = apply(None, deployment())
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    with pytest.raises(Conflict) as exc:
        apply(live, other, manager="ci")
    assert exc.value.code == 409
    assert exc.value.message == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert exc.value.causes == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".spec.replicas"},
    ]


def test_several_conflicts_are_listed_per_manager() -> None:
    live = apply(None, deployment())
    with pytest.raises(Conflict) as exc:
        apply(live, deployment(replicas=3, image="nginx:1.27"), manager="ci")
    assert exc.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl":\n- .spec.replicas\n'
        '- .spec.template.spec.containers[name="web"].image'
    )


def test_force_takes_ownership() -> None:
    live = apply(None, deployment())
    out = apply(live, deployment(replicas=7), manager="ci", force=True)
    assert out["spec"]["replicas"] == 7
    owners = managers(out)
    assert "f:replicas" in owners[("ci", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in owners[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    # The previous owner no longer applies replicas... and it stays, owned by ci.
    again = apply(out, deployment(replicas=None))
    assert again["spec"]["replicas"] == 7


def test_equal_values_are_shared_without_conflict() -> None:
    live = apply(None, deployment())
    shared = apply(
        live,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}},
        manager="ci",
    )
    assert "f:replicas" in managers(shared)[("ci", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in managers(shared)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    # One sharer stops applying it: the other still owns it, so it stays.
    out = apply(shared, deployment(replicas=None))
    assert out["spec"]["replicas"] == 2


def test_scale_then_apply_conflicts_on_replicas() -> None:
    """`kubectl scale` is an Update through the scale subresource; a later apply of the
    manifest's old replica count must not silently undo it."""
    live = apply(None, deployment())
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    scaled = update_managed_fields(live, scaled, "kubectl", "Update", "2024-05-01T10:05:00Z", subresource="scale")
    scale_entry = managers(scaled)[("kubectl", "Update")]
    assert scale_entry["subresource"] == "scale"
    assert scale_entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in managers(scaled)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    with pytest.raises(
        Conflict,
        match=r'conflict with "kubectl" with subresource "scale" using apps/v1: '
        r"\.spec\.replicas",
    ):
        apply(scaled, deployment())
    # Changing something else is fine, and leaves replicas alone.
    out = apply(scaled, deployment(replicas=None, image="nginx:1.26"))
    assert out["spec"]["replicas"] == 5
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"


def test_updates_record_changed_fields_and_ignore_server_metadata_and_status() -> None:
    created = deployment()
    created["metadata"].update(
        uid="u1", resourceVersion="1", generation=1, creationTimestamp="t", labels={"app": "web"}
    )
    created = update_managed_fields(None, created, "kubectl-create", now="t1")
    fields = managers(created)[("kubectl-create", "Update")]["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert "f:replicas" in fields["f:spec"]

    edited = copy.deepcopy(created)
    edited["spec"]["replicas"] = 4
    edited["metadata"]["resourceVersion"] = "2"
    edited["status"] = {"replicas": 4}
    edited = update_managed_fields(created, edited, "kubectl-edit", now="t2")
    owners = managers(edited)
    # resourceVersion and status are not the main resource's to own.
    assert owners[("kubectl-edit", "Update")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners[("kubectl-create", "Update")]["fieldsV1"]["f:spec"]

    status = copy.deepcopy(edited)
    status["status"] = {"replicas": 4, "readyReplicas": 4}
    status = update_managed_fields(edited, status, "deployment-controller", now="t3", subresource="status")
    entry = managers(status)[("deployment-controller", "Update")]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:readyReplicas": {}}}  # what this write changed


def test_sending_an_empty_entry_strips_managed_fields() -> None:
    live = apply(None, deployment())
    edited = copy.deepcopy(live)
    edited["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in update_managed_fields(live, edited, "kubectl", now="t")["metadata"]


def test_first_apply_on_an_untracked_object_conflicts_with_its_existing_values() -> None:
    untracked = deployment()
    with pytest.raises(Conflict, match='"before-first-apply" using apps/v1: .spec.replicas'):
        apply(untracked, deployment(replicas=9))
    out = apply(untracked, deployment())
    assert ("kubectl", "Apply") in managers(out)


def test_label_keys_are_owned_one_by_one() -> None:
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"team": "a"}},
        "data": {"x": "1"},
    }
    live = apply(None, cm, manager="team-a", node=CONFIGMAP)
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"env": "prod"}}}
    both = apply(live, other, manager="team-b", node=CONFIGMAP)
    assert both["metadata"]["labels"] == {"team": "a", "env": "prod"}
    without_label = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1"}}
    dropped = apply(both, without_label, manager="team-a", node=CONFIGMAP)
    assert dropped["metadata"]["labels"] == {"env": "prod"}
    assert dropped["data"] == {"x": "1"}


def test_service_ports_are_keyed_by_port_and_protocol() -> None:
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }
    live = apply(None, svc, node=SERVICE)
    extra = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 53, "protocol": "UDP"}]},
    }
    out = apply(live, extra, manager="dns", node=SERVICE)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]
    fields = managers(out)[("dns", "Apply")]["fieldsV1"]
    assert list(fields["f:spec"]["f:ports"]) == ['k:{"port":53,"protocol":"UDP"}']


def test_custom_resource_list_types_from_the_crd_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "listeners": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        },
                    },
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
    }
    node = type_for("example.com/v1", "Gateway", schema)

    def gw(spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "example.com/v1", "kind": "Gateway", "metadata": {"name": "g"}, "spec": spec}

    live = apply(
        None,
        gw({"listeners": [{"name": "http", "port": 80}], "tags": ["a"], "args": ["x"]}),
        manager="team-a",
        node=node,
    )
    out = apply(live, gw({"listeners": [{"name": "https", "port": 443}], "tags": ["b"]}), manager="team-b", node=node)
    assert out["spec"]["listeners"] == [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
    assert out["spec"]["tags"] == ["a", "b"]
    fields = managers(out)[("team-b", "Apply")]["fieldsV1"]["f:spec"]
    assert 'k:{"name":"https"}' in fields["f:listeners"] and 'v:"b"' in fields["f:tags"]
    # Lists without a list type are atomic: a different value from another manager conflicts.
    with pytest.raises(Conflict, match=r"\.spec\.args"):
        apply(out, gw({"args": ["y"]}), manager="team-b", node=node)
    with pytest.raises(Conflict, match=r'\.spec\.listeners\[name="http"\]\.port'):
        apply(out, gw({"listeners": [{"name": "http", "port": 8080}]}), manager="team-b", node=node)


def test_apply_rejects_managed_fields_and_a_missing_manager() -> None:
    cfg = deployment()
    cfg["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(BadRequest, match="managedFields must be nil"):
        apply(None, cfg)
    with pytest.raises(BadRequest, match="fieldManager"):
        apply(None, deployment(), manager="")


def test_an_apply_that_creates_is_one_write_with_the_appliers_fields() -> None:
    """An apply that creates stores the object once: one new revision, one ADDED event
    and no MODIFIED, so a controller writing the new object at once cannot make the
    apply fail; the object is defaulted and owned by the applier alone."""
    server = APIServer(MemoryStore())
    server.create(server.resource("", "v1", "namespaces"), "", {"metadata": {"name": "shop"}})
    rt = server.resource("apps", "v1", "deployments")
    watch = server.watch(rt, "shop", str(server.store.revision))
    before = server.store.revision

    out = server.patch(rt, "shop", "web", PATCH_APPLY, deployment(), WriteOptions(field_manager="kubectl"))

    assert server.store.revision == before + 1
    assert out["metadata"]["resourceVersion"] == str(before + 1)
    assert out["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert [(m["manager"], m["operation"]) for m in out["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    assert "f:strategy" not in out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]  # defaults are not owned
    events = []
    while (event := watch.next(timeout=0.2)) is not None:
        events.append((event[0], orjson.loads(event[1])["metadata"]["resourceVersion"]))
    watch.stop()
    assert events == [("ADDED", str(before + 1))]
    assert server.get(rt, "shop", "web") == out

    # A dry-run apply that would create answers the same object and writes nothing.
    dry = server.patch(
        rt,
        "shop",
        "dry",
        PATCH_APPLY,
        {**deployment(), "metadata": {"name": "dry"}},
        WriteOptions(field_manager="kubectl", dry_run=True),
    )
    assert [(m["manager"], m["operation"]) for m in dry["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    assert server.store.revision == before + 1


class _WritesFirst:
    """A mutating plugin that, once, writes the object the request is about before the
    request's own write, as a controller reacting between the read and the write would."""

    name = "writes-first"

    def __init__(self, server: APIServer, write: Any) -> None:
        self.server, self.write, self.done = server, write, False

    def mutate(self, req: Any) -> None:
        if not self.done and req.object is not None and req.object["metadata"].get("name") == "web":
            self.done = True
            self.write()


def test_an_apply_that_races_another_writer_is_applied_to_what_that_writer_left() -> None:
    server = APIServer(MemoryStore())
    server.create(server.resource("", "v1", "namespaces"), "", {"metadata": {"name": "shop"}})
    rt = server.resource("apps", "v1", "deployments")
    kubectl = WriteOptions(field_manager="kubectl")

    # Created by someone else between the apply's read (nothing there) and its create.
    other = {**deployment(), "metadata": {"name": "web", "namespace": "shop", "labels": {"by": "other"}}}
    plugin = _WritesFirst(server, lambda: server.create(rt, "shop", other, WriteOptions(field_manager="other")))
    server.admission.add_mutating(plugin)
    out = server.patch(rt, "shop", "web", PATCH_APPLY, deployment(), kubectl)
    assert plugin.done and out["metadata"]["labels"] == {"by": "other"}
    assert {m["manager"] for m in out["metadata"]["managedFields"]} == {"other", "kubectl"}
    server.admission.remove(plugin.name)

    # Changed by a controller between the apply's read and its update.
    def scale() -> None:
        server.patch(rt, "shop", "web", PATCH_MERGE, {"metadata": {"annotations": {"seen": "yes"}}}, WriteOptions())

    plugin = _WritesFirst(server, scale)
    server.admission.add_mutating(plugin)
    forced = WriteOptions(field_manager="kubectl", force=True)  # "other" shares the image
    out = server.patch(rt, "shop", "web", PATCH_APPLY, deployment(image="nginx:1.27"), forced)
    assert plugin.done
    assert out["metadata"]["annotations"] == {"seen": "yes"}
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
