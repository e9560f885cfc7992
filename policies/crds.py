"""CustomResourceDefinitions of the policy kinds that are not built into Kubernetes, so
the embedded cluster stores Kyverno, Kyverno CEL and sigstore policy-controller policies
like a cluster with those projects installed would (`kubectl apply -f policy.yaml` works).

The schemas keep every field: the policy engine, not the API, validates a policy (the
admission plugin rejects one that does not compile)."""

from __future__ import annotations

from dataclasses import dataclass

from policies.types import Obj


@dataclass(frozen=True)
class PolicyKind:
    group: str
    kind: str
    plural: str
    namespaced: bool
    versions: tuple[str, ...]  # served; the first is the storage version
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.versions[0]}"


# Every policy kind the gates store or watch. The ValidatingAdmissionPolicy kinds are
# built into the API server (admissionregistration.k8s.io/v1), so they need no CRD.
KINDS = (
    PolicyKind("kyverno.io", "ClusterPolicy", "clusterpolicies", False, ("v1", "v2beta1"), ("cpol",)),
    PolicyKind("kyverno.io", "Policy", "policies", True, ("v1", "v2beta1"), ("pol",)),
    PolicyKind("policies.kyverno.io", "ValidatingPolicy", "validatingpolicies", False, ("v1", "v1beta1", "v1alpha1")),
    PolicyKind("policies.kyverno.io", "MutatingPolicy", "mutatingpolicies", False, ("v1", "v1beta1", "v1alpha1")),
    PolicyKind("policy.sigstore.dev", "ClusterImagePolicy", "clusterimagepolicies", False, ("v1beta1", "v1alpha1")),
    PolicyKind(
        "admissionregistration.k8s.io", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", False, ("v1",)
    ),
    PolicyKind(
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        False,
        ("v1",),
    ),
)
BUILT_IN_GROUPS = frozenset({"admissionregistration.k8s.io"})


def crd(k: PolicyKind) -> Obj:
    """The CRD of one policy kind: open schema, status subresource, every version served."""
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": free,
                "status": free,
            },
        }
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{k.plural}.{k.group}"},
        "spec": {
            "group": k.group,
            "scope": "Namespaced" if k.namespaced else "Cluster",
            "names": {
                "plural": k.plural,
                "singular": k.kind.lower(),
                "kind": k.kind,
                "listKind": f"{k.kind}List",
                "shortNames": list(k.short_names),
                "categories": ["policies"],
            },
            "versions": [
                {"name": v, "served": True, "storage": i == 0, "subresources": {"status": {}}, "schema": schema}
                for i, v in enumerate(k.versions)
            ],
        },
    }


def crds() -> list[Obj]:
    """The CRDs the embedded cluster needs to store every policy kind."""
    return [crd(k) for k in KINDS if k.group not in BUILT_IN_GROUPS]
