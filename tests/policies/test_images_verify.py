"""Image signature verification against a real registry on loopback: Kyverno `verifyImages`
rules and ClusterImagePolicy, with images and cosign signatures pushed over the registry API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policies.images import ImageVerifier
from policies.images.cip import ImagePolicyError, compile_cluster_image_policy
from policies.images.kyverno import verify_images_rule
from policies.kyverno.policy import compile_policy
from policies.types import Outcome, Request
from tests.policies.images_registry import (
    REGISTRY_BIN,
    CosignKey,
    Registry,
    TokenIssuer,
    attach_bundle,
    cosign_bundle,
    free_port,
    sign_legacy,
    simple_signing_payload,
)

pytestmark = pytest.mark.skipif(
    not Path(REGISTRY_BIN).exists(), reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry (.ci/run does)"
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def key() -> CosignKey:
    return CosignKey()


@pytest.fixture
def verifier(registry: Registry) -> ImageVerifier:
    return ImageVerifier(frozenset({registry.host}), timeout=10.0)


def pod(*images: str, name: str = "web") -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": containers},
    }


def key_rule(registry: Registry, *pems: str, **extra: Any) -> list[dict[str, Any]]:
    entries = [{"keys": {"publicKeys": pem}} for pem in pems]
    return [{"imageReferences": [f"{registry.host}/*"], "attestors": [{"entries": entries}], **extra}]


def run(rule: list[dict[str, Any]], obj: dict[str, Any], verifier: ImageVerifier) -> tuple[Any, Any]:
    return verify_images_rule("check-images", "verify", rule, Request("CREATE", obj), verifier)


def test_signed_image_passes_and_mutate_digest_pins_the_tag(
    registry: Registry, key: CosignKey, verifier: ImageVerifier
):
    digest = registry.push_image("shop/web", "v1", b"web v1")
    sign_legacy(registry, "shop/web", digest, key)
    image = f"{registry.host}/shop/web:v1"

    results, patched = run(key_rule(registry, key.public_pem), pod(image), verifier)

    assert [(r.policy, r.rule, r.status, r.resource) for r in results] == [
        ("check-images", "verify", "pass", "Pod/shop/web")
    ]
    assert digest in results[0].message
    assert patched["spec"]["containers"][0]["image"] == f"{image}@{digest}"
    # the request object itself is untouched; an image already pinned is left alone
    assert pod(image)["spec"]["containers"][0]["image"] == image
    results, patched = run(key_rule(registry, key.public_pem), pod(f"{image}@{digest}"), verifier)
    assert [r.status for r in results] == ["pass"] and patched is None


def test_unsigned_image_fails_naming_image_and_registry(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    registry.push_image("shop/unsigned", "v1", b"unsigned")
    image = f"{registry.host}/shop/unsigned:v1"

    results, patched = run(key_rule(registry, key.public_pem), pod(image), verifier)

    assert [r.status for r in results] == ["fail"] and patched is None
    message = results[0].message
    assert image in message and f"registry {registry.host}" in message and "no signatures found" in message
    assert Outcome(results=results).allowed is False


def test_signature_by_another_key_fails(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    digest = registry.push_image("shop/other", "v1", b"other key")
    sign_legacy(registry, "shop/other", digest, CosignKey())

    results, _ = run(key_rule(registry, key.public_pem), pod(f"{registry.host}/shop/other:v1"), verifier)

    assert [r.status for r in results] == ["fail"]
    assert "signature does not verify with key" in results[0].message


def test_tampered_payload_fails(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    repo = "shop/tampered"
    digest = registry.push_image(repo, "v1", b"tampered")
    honest = simple_signing_payload(f"{registry.host}/{repo}", digest)
    # the stored payload was edited after signing (identity swapped): the signature breaks
    edited = honest.replace(repo.encode(), b"shop/evil")
    sign_legacy(registry, repo, digest, key, payload=edited, signed=honest)
    results, _ = run(key_rule(registry, key.public_pem), pod(f"{registry.host}/{repo}:v1"), verifier)
    assert [r.status for r in results] == ["fail"]
    assert "signature does not verify" in results[0].message

    # a genuine signature, but over another image's digest, does not transfer to this one
    other = registry.push_image(repo, "v2", b"tampered v2")
    sign_legacy(registry, repo, other, key, payload=simple_signing_payload(f"{registry.host}/{repo}", digest))
    results, _ = run(key_rule(registry, key.public_pem), pod(f"{registry.host}/{repo}:v2"), verifier)
    assert [r.status for r in results] == ["fail"]
    assert f"signed payload is for digest {digest}, not {other}" in results[0].message


def test_sigstore_bundle_layout_passes(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    repo = "shop/bundled"
    digest = registry.push_image(repo, "v3", b"cosign v3")
    attach_bundle(registry, repo, digest, cosign_bundle(digest, CosignKey()))  # someone else's first
    attach_bundle(registry, repo, digest, cosign_bundle(digest, key))
    image = f"{registry.host}/{repo}:v3"

    results, patched = run(key_rule(registry, key.public_pem), pod(image), verifier)

    assert [r.status for r in results] == ["pass"], results[0].message
    assert patched["spec"]["containers"][0]["image"] == f"{image}@{digest}"


def test_bundle_that_is_an_attestation_or_about_another_digest_fails(
    registry: Registry, key: CosignKey, verifier: ImageVerifier
):
    repo = "shop/attested"
    digest = registry.push_image(repo, "v1", b"attested")
    other = registry.push_image(repo, "v2", b"attested v2")
    attach_bundle(registry, repo, digest, cosign_bundle(digest, key, predicate_type="https://slsa.dev/provenance/v1"))
    attach_bundle(registry, repo, digest, cosign_bundle(other, key))

    results, _ = run(key_rule(registry, key.public_pem), pod(f"{registry.host}/{repo}:v1"), verifier)

    assert [r.status for r in results] == ["fail"]
    assert "attestation of type 'https://slsa.dev/provenance/v1'" in results[0].message
    assert f"not about digest {digest}" in results[0].message


def test_registry_down_fails_closed_and_cache_holds_by_digest(tmp_path: Path, key: CosignKey):
    reg = Registry(tmp_path).start()
    try:
        digest = reg.push_image("app", "v1")
        sign_legacy(reg, "app", digest, key)
        verifier = ImageVerifier(frozenset({reg.host}), timeout=5.0)
        rule = key_rule(reg, key.public_pem)
        assert [r.status for r in run(rule, pod(f"{reg.host}/app@{digest}"), verifier)[0]] == ["pass"]
    finally:
        reg.stop()

    # verdicts about a digest are cached: the pinned image still passes without the registry
    hits = verifier.cache.hits
    assert [r.status for r in run(rule, pod(f"{reg.host}/app@{digest}"), verifier)[0]] == ["pass"]
    assert verifier.cache.hits == hits + 1
    # a tag must be resolved, and an unreachable registry never passes
    results, patched = run(rule, pod(f"{reg.host}/app:v1"), verifier)
    assert [r.status for r in results] == ["error"] and patched is None
    assert f"{reg.host}/app:v1" in results[0].message and f"registry {reg.host} is unreachable" in results[0].message
    assert Outcome(results=results).allowed is False


def test_bearer_token_challenge(tmp_path: Path, key: CosignKey):
    tokens = TokenIssuer(tmp_path)
    reg = Registry(tmp_path, tokens).start()
    try:
        digest = reg.push_image("team/app", "v1", b"behind auth")
        sign_legacy(reg, "team/app", digest, key)
        attach_bundle(reg, "team/app", digest, cosign_bundle(digest, key))
        verifier = ImageVerifier(frozenset({reg.host}), timeout=10.0)
        tokens.scopes.clear()

        results, patched = run(key_rule(reg, key.public_pem), pod(f"{reg.host}/team/app:v1"), verifier)

        assert [r.status for r in results] == ["pass"], results[0].message
        assert patched is not None
        assert tokens.scopes == ["repository:team/app:pull"]  # one anonymous pull token, reused
    finally:
        reg.stop()
        tokens.stop()


def test_registry_never_there_fails_closed(key: CosignKey):
    host = f"127.0.0.1:{free_port()}"
    verifier = ImageVerifier(frozenset({host}), timeout=2.0)
    rule = [{"imageReferences": ["*"], "attestors": [{"entries": [{"keys": {"publicKeys": key.public_pem}}]}]}]

    results, _ = run(rule, pod(f"{host}/app:v1"), verifier)

    assert [r.status for r in results] == ["error"]
    assert f"cannot verify image {host}/app:v1: registry {host} is unreachable" in results[0].message


def test_verify_digest_without_mutate_digest_requires_a_digest(
    registry: Registry, key: CosignKey, verifier: ImageVerifier
):
    digest = registry.push_image("shop/pinned", "v1", b"pinned")
    sign_legacy(registry, "shop/pinned", digest, key)
    rule = key_rule(registry, key.public_pem, mutateDigest=False)
    image = f"{registry.host}/shop/pinned:v1"

    results, patched = run(rule, pod(image), verifier)
    assert [r.status for r in results] == ["fail"] and patched is None
    assert f"missing digest for image {image}" in results[0].message

    results, _ = run(rule, pod(f"{image}@{digest}"), verifier)
    assert [r.status for r in results] == ["pass"]
    results, _ = run(key_rule(registry, key.public_pem, mutateDigest=False, verifyDigest=False), pod(image), verifier)
    assert [r.status for r in results] == ["pass"]


def test_attestor_count_required_and_audit(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    digest = registry.push_image("shop/count", "v1", b"count")
    sign_legacy(registry, "shop/count", digest, key)
    stranger = CosignKey().public_pem
    image = f"{registry.host}/shop/count:v1"

    both = key_rule(registry, key.public_pem, stranger)
    assert [r.status for r in run(both, pod(image), verifier)[0]] == ["fail"]
    both[0]["attestors"][0]["count"] = 1
    assert [r.status for r in run(both, pod(image), verifier)[0]] == ["pass"]
    # several PEM keys in one publicKeys field are one entry each
    joined = key_rule(registry, key.public_pem + stranger)
    assert "2 of 2 attestors needed, 1 passed" in run(joined, pod(image), verifier)[0][0].message

    not_required = key_rule(registry, stranger, required=False)
    results, _ = run(not_required, pod(image), verifier)
    assert [r.status for r in results] == ["warn"] and Outcome(results=results).allowed
    audit = key_rule(registry, stranger, failureAction="Audit")
    results, _ = run(audit, pod(image), verifier)
    assert [(r.status, r.enforce) for r in results] == [("fail", False)] and Outcome(results=results).allowed


def test_entry_failure_action_wins_over_the_policy_default(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    """Regression: an entry's `failureAction: Enforce` blocks even though the policy sets no
    (deprecated) spec.validationFailureAction; entries without one follow the policy's."""
    image = f"{registry.host}/shop/never-signed:v1"
    registry.push_image("shop/never-signed", "v1", b"never signed")

    def outcome(entry: dict[str, Any], **spec: Any) -> Outcome:
        rule = {"name": "verify", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]}, "verifyImages": [entry]}
        doc = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "signed"}}
        policy = compile_policy({**doc, "spec": {"rules": [rule], **spec}})
        return policy.validate(Request("CREATE", pod(image)), verifier=verifier)

    enforced = outcome(key_rule(registry, key.public_pem, failureAction="Enforce")[0])
    assert [r.status for r in enforced.results] == ["fail"] and not enforced.allowed
    assert "shop/never-signed" in enforced.results[0].message
    assert outcome(key_rule(registry, key.public_pem)[0]).allowed  # no action anywhere: Audit
    overrides = [{"action": "Enforce", "namespaces": ["shop"]}]
    assert not outcome(key_rule(registry, key.public_pem)[0], validationFailureActionOverrides=overrides).allowed


def test_image_references_select_images_in_every_workload_shape(
    registry: Registry, key: CosignKey, verifier: ImageVerifier
):
    digest = registry.push_image("shop/api", "v1", b"api")
    sign_legacy(registry, "shop/api", digest, key)
    image = f"{registry.host}/shop/api:v1"
    rule = [
        {
            "imageReferences": [f"{registry.host}/shop/*"],
            "skipImageReferences": [f"{registry.host}/shop/skipped*"],
            "attestors": [{"entries": [{"keys": {"publicKeys": key.public_pem}}]}],
        }
    ]
    template = {"spec": {"initContainers": [{"name": "i", "image": "busybox:1.36"}], "containers": []}}
    template["spec"]["containers"] = [{"name": "a", "image": image}, {"name": "s", "image": f"{image[:-7]}skipped:v1"}]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"}}
    deployment["spec"] = {"template": template}
    results, patched = run(rule, deployment, verifier)
    assert [(r.status, r.resource) for r in results] == [("pass", "Deployment/shop/api")]
    assert patched["spec"]["template"]["spec"]["containers"][0]["image"] == f"{image}@{digest}"
    assert patched["spec"]["template"]["spec"]["initContainers"][0]["image"] == "busybox:1.36"

    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"}}
    cronjob["spec"] = {"jobTemplate": {"spec": {"template": template}}}
    results, patched = run(rule, cronjob, verifier)
    assert [r.status for r in results] == ["pass"]
    assert patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith(digest)

    assert run(rule, pod("nginx:1.27"), verifier) == ([], None)
    assert run(rule, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, verifier) == ([], None)


def test_unsupported_fields_are_errors_not_passes(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    image = f"{registry.host}/shop/web:v1"
    rule = key_rule(registry, key.public_pem, attestations=[{"type": "https://slsa.dev/provenance/v1"}])
    results, _ = run(rule, pod(image), verifier)
    assert [(r.status, r.message) for r in results] == [
        ("error", "verifyImages[0].attestations: attestation checks are not supported")
    ]
    kms = [{"imageReferences": ["*"], "attestors": [{"entries": [{"keys": {"kms": "awskms:///x"}}]}]}]
    assert (
        run(kms, pod(image), verifier)[0][0].message
        == "verifyImages[0].attestors[0].entries[0].keys.kms: not supported, give publicKeys"
    )


def cip(registry: Registry, *authorities: dict[str, Any], mode: str = "enforce") -> dict[str, Any]:
    return {
        "apiVersion": "policy.sigstore.dev/v1beta1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": "signed-shop"},
        "spec": {"images": [{"glob": f"{registry.host}/shop/**"}], "authorities": list(authorities), "mode": mode},
    }


def test_cluster_image_policy(registry: Registry, key: CosignKey, verifier: ImageVerifier):
    legacy = registry.push_image("shop/cip", "v1", b"cip legacy")
    sign_legacy(registry, "shop/cip", legacy, key)
    bundled = registry.push_image("shop/cip", "v2", b"cip bundle")
    attach_bundle(registry, "shop/cip", bundled, cosign_bundle(bundled, key))
    registry.push_image("shop/cip", "v3", b"cip unsigned")
    policy = compile_cluster_image_policy(
        cip(
            registry,
            {"name": "stranger", "key": {"data": CosignKey().public_pem}},
            {"name": "ours", "key": {"data": key.public_pem}},
        ),
        verifier,
    )
    image = f"{registry.host}/shop/cip"
    request = Request("CREATE", pod(f"{image}:v1", f"{image}:v2", f"{image}:v3", "nginx:1.27"))

    outcome = policy.validate(request, None)
    assert [(r.policy, r.status, r.policy_kind) for r in outcome.results] == [
        ("signed-shop", "pass", "ClusterImagePolicy"),
        ("signed-shop", "pass", "ClusterImagePolicy"),
        ("signed-shop", "fail", "ClusterImagePolicy"),
    ]
    assert "authority ours" in outcome.results[0].message
    assert "authority stranger" in outcome.results[2].message and "no signatures found" in outcome.results[2].message
    assert not outcome.allowed

    mutated = policy.mutate(request, None).patched
    assert mutated is not None
    assert [c["image"] for c in mutated["spec"]["containers"]][:2] == [f"{image}:v1@{legacy}", f"{image}:v2@{bundled}"]
    assert mutated["spec"]["containers"][3]["image"] == "nginx:1.27"

    warn = compile_cluster_image_policy(cip(registry, {"key": {"data": CosignKey().public_pem}}, mode="warn"), verifier)
    outcome = warn.validate(Request("CREATE", pod(f"{image}:v1")), None)
    assert [(r.status, r.enforce) for r in outcome.results] == [("fail", False)] and outcome.allowed


def test_cluster_image_policy_compile_errors_name_the_field(registry: Registry, verifier: ImageVerifier):
    with pytest.raises(ImagePolicyError, match=r"ClusterImagePolicy signed-shop: spec.authorities\[0\].key.data"):
        compile_cluster_image_policy(cip(registry, {"key": {}}), verifier)
    with pytest.raises(ImagePolicyError, match=r"spec.authorities\[0\].key.data: invalid public key PEM"):
        compile_cluster_image_policy(cip(registry, {"key": {"data": "not a key"}}), verifier)
    with pytest.raises(ImagePolicyError, match=r"spec.authorities\[0\].keyless.identities"):
        compile_cluster_image_policy(cip(registry, {"keyless": {"url": "https://fulcio.sigstore.dev"}}), verifier)
    doc = cip(registry, {"static": {"action": "pass"}})
    doc["spec"]["images"] = []
    with pytest.raises(ImagePolicyError, match="spec.images: at least one glob"):
        compile_cluster_image_policy(doc, verifier)
    static = compile_cluster_image_policy(cip(registry, {"static": {"action": "pass"}}), verifier)
    assert [r.status for r in static.validate(Request("CREATE", pod(f"{registry.host}/shop/x:v1")), None).results] == [
        "pass"
    ]
