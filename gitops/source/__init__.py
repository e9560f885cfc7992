"""Where desired state comes from: git repositories, and the manifests rendered from them."""

from gitops.source.git import (
    CommitInfo,
    Credentials,
    CredentialsProvider,
    GitError,
    RepoCache,
    credentials_by_prefix,
    env_credentials,
    normalize_url,
)
from gitops.source.render import Renderer, RenderError

__all__ = [
    "CommitInfo",
    "Credentials",
    "CredentialsProvider",
    "GitError",
    "RenderError",
    "Renderer",
    "RepoCache",
    "credentials_by_prefix",
    "env_credentials",
    "normalize_url",
]
