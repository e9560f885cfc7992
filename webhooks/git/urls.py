"""One key per repository however its URL is spelled, for matching a pushed repository to
the apps that deploy from it.

`https://user@Git.Example.com:8443/Org/Repo.git/`, `ssh://git@git.example.com:2222/org/repo`
and `git@git.example.com:org/repo.git` are all `git.example.com/org/repo`: scheme, user,
port, `.git`, a trailing slash and case do not matter (hosting services treat paths
case-insensitively), and Bitbucket Server's `/scm/` prefix of HTTP clone URLs is dropped
so they meet its SSH URLs. Local paths and file:// URLs become `file:` + the absolute path."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

_SCP = re.compile(r"(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!//).+)")


def repo_key(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        scp = _SCP.fullmatch(url) if not url.startswith(("/", ".")) else None
        if scp is None:
            return "file:" + _clean(os.path.abspath(url))
        host, path = scp["host"], scp["path"]
    else:
        parts = urlsplit(url)
        if parts.scheme.lower() == "file":
            return "file:" + _clean(os.path.abspath(unquote(parts.path)))
        host, path = parts.hostname or "", unquote(parts.path)
    path = _clean(path).lower().lstrip("/")
    if path.startswith("scm/"):
        path = path[4:]
    return f"{host.lower()}/{path}"


def _clean(path: str) -> str:
    return path.rstrip("/").removesuffix(".git").rstrip("/")
