"""Image reference parsing and the two glob dialects policies use to pick images."""

from __future__ import annotations

import pytest

from policies.images.reference import ReferenceError, cip_glob_match, kyverno_match, parse


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", "docker.io/nginx:latest"),
        ("library/nginx:1.27", "docker.io/nginx:1.27"),
        ("index.docker.io/org/app:v1", "docker.io/org/app:v1"),
        ("127.0.0.1:5000/shop/web:v1", "127.0.0.1:5000/shop/web:v1"),
        ("localhost/app@sha256:" + "a" * 64, "localhost/app@sha256:" + "a" * 64),
        ("ghcr.io/org/app:v1@sha256:" + "b" * 64, "ghcr.io/org/app:v1@sha256:" + "b" * 64),
    ],
)
def test_parse_normalises(image: str, expected: str):
    assert str(parse(image)) == expected


@pytest.mark.parametrize("image", ["UPPER/case", "app@sha256:short", "app:bad tag", ""])
def test_parse_rejects(image: str):
    with pytest.raises(ReferenceError):
        parse(image)


def test_kyverno_wildcards_cross_slashes_and_see_normalised_names():
    assert kyverno_match("ghcr.io/org/*", "ghcr.io/org/team/app:v1")
    assert kyverno_match("docker.io/nginx:*", "nginx")
    assert kyverno_match("*", "anything/at:all")
    assert not kyverno_match("ghcr.io/org/*", "ghcr.io/other/app:v1")
    assert kyverno_match("ghcr.io/org/app:v?", "ghcr.io/org/app:v1")


def test_cluster_image_policy_globs():
    assert cip_glob_match("ghcr.io/org/*", "ghcr.io/org/app:v1")
    assert not cip_glob_match("ghcr.io/org/*", "ghcr.io/org/team/app:v1")
    assert cip_glob_match("ghcr.io/org/**", "ghcr.io/org/team/app@sha256:" + "c" * 64)
    assert cip_glob_match("nginx", "index.docker.io/library/nginx:1.27")
    assert cip_glob_match("index.docker.io/library/*", "nginx")
    assert cip_glob_match("**", "quay.io/x/y:z")
