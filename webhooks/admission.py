"""AdmissionReview v1 for real clusters: the same policies as the embedded API server's
admission plugin, served as a validating and a mutating webhook.

POST /api/admission/validate  allowed or denied (status 403 naming policy, rule and
                              reason), Audit failures as `warnings`
POST /api/admission/mutate    allowed, with the policies' mutations as a base64 JSONPatch

Timeout budget and failurePolicy: an evaluation that does not finish within
`timeout_seconds` (or raises) is answered at once, as the webhook's configured
failurePolicy says: `Fail` (the default, as Kyverno's) denies with code 500, `Ignore`
admits with a warning. Register the webhook with a `timeoutSeconds` above the budget so
the API server hears our answer rather than its own timeout. A review that is not an
AdmissionReview v1 gets HTTP 400.

The endpoints take no token (the API server calls webhooks over TLS without one) and
change nothing: they only evaluate what they are sent. `gitops up` serves them on its
web server."""

from __future__ import annotations

import base64
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

import jsonpatch
import orjson
from flask import Blueprint, Response, request

from policies.admission import denial_message, resource_id, warning_messages
from policies.engine import PolicySet
from policies.types import Lookup, Obj, Outcome, Request

log = logging.getLogger(__name__)

API_VERSION = "admission.k8s.io/v1"
FAILURE_POLICIES = ("Fail", "Ignore")


class BadReview(ValueError):
    """The body is not an AdmissionReview v1 request."""


def admission_blueprint(
    policyset_provider: Callable[[], PolicySet],
    timeout_seconds: float = 10.0,
    *,
    failure_policy: str = "Fail",
    lookup: Lookup | None = None,
    namespace_labels: Callable[[str], dict[str, str]] | None = None,
    workers: int = 4,
) -> Blueprint:
    """The webhook endpoints. `policyset_provider` is called per review (the current
    policies, e.g. `ClusterPolicies.policyset`); `lookup` resolves context entries and
    `namespace_labels` feeds namespaceSelector (AdmissionReview does not carry them)."""
    if failure_policy not in FAILURE_POLICIES:
        raise ValueError(f"failurePolicy must be one of {', '.join(FAILURE_POLICIES)}, not {failure_policy!r}")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="admission")
    bp = Blueprint("admission", __name__)

    def evaluate(review: Obj) -> Outcome:
        req = review["request"]
        namespace = str(req.get("namespace") or "")
        user = req.get("userInfo") or {}
        policy_request = Request(
            operation=str(req["operation"]),
            object=req.get("object"),
            old_object=req.get("oldObject"),
            namespace_labels=namespace_labels(namespace) if namespace_labels and namespace else {},
            username=str(user.get("username") or ""),
            groups=tuple(user.get("groups") or ()),
            subresource=str(req.get("subResource") or ""),
            dry_run=bool(req.get("dryRun")),
        )
        return policyset_provider().admit(policy_request, lookup)

    def answer(mutating: bool) -> Response:
        try:
            review = _parse(request.get_data())
        except BadReview as exc:
            return _json({"error": str(exc)}, 400)
        uid = review["request"]["uid"]
        try:
            outcome = pool.submit(evaluate, review).result(timeout=timeout_seconds)
        except concurrent.futures.TimeoutError:
            return _review(
                _failed(uid, f"policy evaluation did not finish within {timeout_seconds:g}s", failure_policy)
            )
        except Exception as exc:
            log.exception("admission review %s failed", uid)
            return _review(_failed(uid, f"policy evaluation failed: {exc}", failure_policy))
        return _review(_mutation(uid, review, outcome) if mutating else _validation(uid, review, outcome))

    @bp.post("/api/admission/validate")
    def validate() -> Response:
        return answer(mutating=False)

    @bp.post("/api/admission/mutate")
    def mutate() -> Response:
        return answer(mutating=True)

    return bp


def _parse(body: bytes) -> Obj:
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadReview(f"body is not JSON: {exc}") from None
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise BadReview("body is not an AdmissionReview")
    if review.get("apiVersion") != API_VERSION:
        raise BadReview(
            f"AdmissionReview apiVersion {review.get('apiVersion')!r} is not supported (only {API_VERSION})"
        )
    req = review.get("request")
    if not isinstance(req, dict):
        raise BadReview("AdmissionReview has no request")
    for field in ("uid", "operation"):
        if not isinstance(req.get(field), str) or not req[field]:
            raise BadReview(f"AdmissionReview request.{field} is missing")
    for field in ("object", "oldObject"):
        if req.get(field) is not None and not isinstance(req[field], dict):
            raise BadReview(f"AdmissionReview request.{field} is not an object")
    if req.get("object") is None and req.get("oldObject") is None:
        raise BadReview("AdmissionReview request has neither object nor oldObject")
    return review


def _validation(uid: str, review: Obj, outcome: Outcome) -> Obj:
    response: Obj = {"uid": uid, "allowed": outcome.allowed}
    if not outcome.allowed:
        req = review["request"]
        message = denial_message(resource_id(req.get("object") or req.get("oldObject") or {}), outcome.blocking)
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    warnings = warning_messages(outcome)
    if warnings:
        response["warnings"] = warnings
    return response


def _mutation(uid: str, review: Obj, outcome: Outcome) -> Obj:
    response: Obj = {"uid": uid, "allowed": True}
    original = review["request"].get("object")
    if outcome.patched is not None and original is not None:
        ops = jsonpatch.make_patch(original, outcome.patched).patch
        if ops:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(orjson.dumps(ops)).decode()
    return response


def _failed(uid: str, message: str, failure_policy: str) -> Obj:
    if failure_policy == "Ignore":
        return {"uid": uid, "allowed": True, "warnings": [f"{message}; admitted (failurePolicy Ignore)"]}
    return {"uid": uid, "allowed": False, "status": {"code": 500, "reason": "InternalError", "message": message}}


def _review(response: Obj) -> Response:
    return _json({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}, 200)


def _json(body: Any, code: int) -> Response:
    return Response(orjson.dumps(body), status=code, mimetype="application/json")
