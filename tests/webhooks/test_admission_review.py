"""AdmissionReview v1 over real HTTP: the webhook blueprint served by the project's WSGI
server, answering validating and mutating reviews as the Kubernetes API server expects."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import flask
import jsonpatch
import pytest
import yaml

from controllers.wsgi import WSGIServer
from gitops.policygate import load_policies
from policies.engine import PolicySet
from tests.manifests import ADD_TEAM_LABEL
from webhooks.admission import admission_blueprint


def pod(image: str, resources: bool = True, labels: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if resources:
        container["resources"] = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "16Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": labels or {"app": "web"}},
        "spec": {"containers": [container]},
    }


def review(obj: dict[str, Any], uid: str = "6f1c-42", operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


class Webhook:
    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback test server)
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def review(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        code, answer = self.post(path, json.dumps(body).encode())
        assert code == 200, answer
        assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
        return answer["response"]


@pytest.fixture
def policyset() -> PolicySet:
    return PolicySet.from_objects([*load_policies("default"), yaml.safe_load(ADD_TEAM_LABEL)])


def serve(provider: Callable[[], PolicySet], **kw: Any) -> Iterator[Webhook]:
    app = flask.Flask("admission-test")
    app.register_blueprint(admission_blueprint(provider, **kw))
    server = WSGIServer(app).start()
    try:
        yield Webhook(server.url)
    finally:
        server.stop()


@pytest.fixture
def webhook(policyset: PolicySet) -> Iterator[Webhook]:
    yield from serve(lambda: policyset, timeout_seconds=10)


def test_validate_denies_naming_policy_rule_and_reason(webhook: Webhook) -> None:
    response = webhook.review("/api/admission/validate", review(pod("nginx:latest"), uid="abc-1"))
    assert response["uid"] == "abc-1"
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert "resource Pod/shop/web was blocked due to the following policies" in message
    assert "disallow-latest-tag: validate-image-tag: validation error: the `latest` tag is not allowed" in message


def test_validate_admits_audit_failures_with_warnings(webhook: Webhook) -> None:
    response = webhook.review("/api/admission/validate", review(pod("nginx:1.25", resources=False), uid="abc-2"))
    assert response == {
        "uid": "abc-2",
        "allowed": True,
        "warnings": [response["warnings"][0]],
    }
    assert response["warnings"][0].startswith("policy require-requests-limits.validate-resources: ")
    clean = webhook.review("/api/admission/validate", review(pod("nginx:1.25")))
    assert clean["allowed"] is True and "warnings" not in clean


def test_mutate_answers_a_base64_json_patch(webhook: Webhook) -> None:
    original = pod("nginx:1.25")
    response = webhook.review("/api/admission/mutate", review(original, uid="abc-3"))
    assert response["uid"] == "abc-3" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(original, ops)
    assert patched["metadata"]["labels"] == {"app": "web", "team": "gates"}
    # Already labelled: nothing to patch.
    same = webhook.review("/api/admission/mutate", review(pod("nginx:1.25", labels={"team": "ops"})))
    assert same["allowed"] is True and "patch" not in same and "patchType" not in same


@pytest.mark.parametrize(
    "body, error",
    [
        (b"{not json", "not JSON"),
        (b'{"kind": "Pod"}', "not an AdmissionReview"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {}}', "only admission"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "no request"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"operation": "CREATE"}}',
            "request.uid",
        ),
    ],
)
def test_malformed_reviews_get_400(webhook: Webhook, body: bytes, error: str) -> None:
    for path in ("/api/admission/validate", "/api/admission/mutate"):
        code, answer = webhook.post(path, body)
        assert code == 400 and error in answer["error"]


@pytest.mark.parametrize("failure_policy", ["Fail", "Ignore"])
def test_an_evaluation_over_budget_answers_per_failure_policy(policyset: PolicySet, failure_policy: str) -> None:
    def slow() -> PolicySet:  # a policy source that stalls (e.g. a cluster that does not answer)
        time.sleep(3)
        return policyset

    for webhook in serve(slow, timeout_seconds=0.5, failure_policy=failure_policy):
        started = time.monotonic()
        response = webhook.review("/api/admission/validate", review(pod("nginx:latest"), uid="slow-1"))
        assert time.monotonic() - started < 2.5
        assert response["uid"] == "slow-1"
        if failure_policy == "Fail":
            assert response["allowed"] is False and response["status"]["code"] == 500
            assert "did not finish within 0.5s" in response["status"]["message"]
        else:
            assert response["allowed"] is True
            assert "did not finish within 0.5s; admitted (failurePolicy Ignore)" in response["warnings"][0]


def test_unknown_failure_policy_is_refused(policyset: PolicySet) -> None:
    with pytest.raises(ValueError, match="failurePolicy must be one of Fail, Ignore"):
        admission_blueprint(lambda: policyset, 10, failure_policy="Sometimes")
