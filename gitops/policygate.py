"""The sync's policy pre-flight: the whole desired set of a sync is evaluated against the
cluster's policies, and against the policies the sync itself delivers, before anything is
applied. One Enforce violation blocks the whole sync (all-or-nothing); Audit results are
reported as warnings. Implements gitops/controller.py's `PolicyGate`."""

from __future__ import annotations

import logging
from pathlib import Path

import policies
from controllers.client import Client
from gitops.controller import Violation
from gitops.resources import Obj
from gitops.yamlload import load_manifests
from policies.admission import ClusterPolicies, is_policy, resource_id, skipped
from policies.engine import PolicyError, PolicySet
from policies.types import Request

log = logging.getLogger(__name__)

BUNDLE_DIR = Path(policies.__file__).resolve().parent / "bundle"
SIGNED_IMAGES_TEMPLATE = "require-signed-images.yaml.template"


class SyncPolicyGate:
    """Pre-flight over the policies `ClusterPolicies` watches (the ones the API server's
    admission plugin enforces), so what the sync lets through the API lets in too."""

    def __init__(self, policies: ClusterPolicies) -> None:
        self.policies = policies

    def check(self, objects: list[Obj]) -> list[Violation]:
        delivered = [o for o in objects if is_policy(o)]
        try:
            pset = self._policyset(delivered)
        except PolicyError as exc:
            return [self._bad_policy(delivered, exc)]
        if not len(pset):
            return []
        labels = {
            o["metadata"]["name"]: dict(o["metadata"].get("labels") or {})
            for o in objects
            if o.get("kind") == "Namespace" and o.get("apiVersion") == "v1"
        }
        violations: list[Violation] = []
        for obj in objects:
            meta = obj.get("metadata") or {}
            namespace = str(meta.get("namespace") or "")
            if is_policy(obj) or skipped(str(obj.get("kind", "")), namespace):
                continue
            live = self.policies.lookup.get(
                str(obj.get("apiVersion")), str(obj.get("kind")), meta.get("name", ""), namespace
            )
            request = Request(
                operation="UPDATE" if live is not None else "CREATE",
                object=obj,
                old_object=live,
                namespace_labels=labels.get(namespace) or self.policies.namespace_labels(namespace),
            )
            resource = resource_id(obj)
            try:
                outcome = pset.admit(request, self.policies.lookup)
            except Exception as exc:  # fail closed, as the admission plugin does
                log.exception("policy pre-flight of %s failed", resource)
                violations.append(Violation("", "", resource, f"policy evaluation failed: {exc}", "Enforce"))
                continue
            violations += [
                Violation(r.policy, r.rule, resource, r.message or "validation failed", "Enforce")
                for r in outcome.blocking
            ]
            violations += [
                Violation(r.policy, r.rule, resource, r.message or "validation failed", "Audit")
                for r in outcome.warnings
            ]
        return violations

    def _policyset(self, delivered: list[Obj]) -> PolicySet:
        """The cluster's policies, those of the same name replaced by the delivered ones."""
        if not delivered:
            return self.policies.policyset()
        keys = {resource_id(d) for d in delivered}
        current = [d for d in self.policies.documents() if resource_id(d) not in keys]
        return PolicySet.from_objects([*current, *delivered], self.policies.verifier)

    def _bad_policy(self, delivered: list[Obj], exc: PolicyError) -> Violation:
        """Name the delivered policy that does not compile (the error names it too)."""
        for doc in delivered:
            try:
                PolicySet.from_objects([doc], self.policies.verifier)
            except PolicyError as own:
                name = (doc.get("metadata") or {}).get("name", "")
                return Violation(name, "", resource_id(doc), f"policy does not compile: {own}", "Enforce")
        return Violation("", "", "", f"policies do not compile: {exc}", "Enforce")


def load_policies(source: str, signed_registries: tuple[str, ...] = (), public_key: str = "") -> list[Obj]:
    """The policy objects of `gitops up --policies`: `default` is the bundle under
    policies/bundle (its signed-images policy only when registries are configured), any
    other value a directory whose *.yaml / *.yml files are read (other kinds skipped)."""
    if source == "default":
        files = sorted(BUNDLE_DIR.glob("*.yaml"))
    else:
        root = Path(source)
        if not root.is_dir():
            raise ValueError(f"--policies: {source} is neither `default` nor a directory")
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    docs = [d for f in files for d in load_manifests(f.read_text(), str(f)) if is_policy(d)]
    if signed_registries:
        if source != "default":
            raise ValueError("--signed-registry configures the default bundle; use it with --policies default")
        if not public_key.strip():
            raise ValueError("--signed-registry needs --signing-key (the cosign public key, PEM)")
        path = BUNDLE_DIR / SIGNED_IMAGES_TEMPLATE
        (signed,) = load_manifests(path.read_text(), str(path))
        verify = signed["spec"]["rules"][0]["verifyImages"][0]
        verify["imageReferences"] = list(signed_registries)
        verify["attestors"][0]["entries"][0]["keys"]["publicKeys"] = public_key.strip()
        docs.append(signed)
    return docs


def apply_policies(client: Client, docs: list[Obj]) -> None:
    """Create or update policy objects (admission rejects one that does not compile)."""
    for doc in docs:
        client.apply(doc, field_manager="gitops-policies", force=True)
