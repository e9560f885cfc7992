"""`gitops hook install`: a post-receive hook that tells the engine about every push to a
local or self-hosted bare repository, so a plain `git push` refreshes the affected apps at
once with no git provider involved.

The hook posts to the generic receiver of POST /api/webhook (webhooks/git/generic.py),
signed with the webhook secret. The secret lives in a file beside the hook readable only
by its owner, never in the script or on a command line. A failed notification never
fails the push: the hook prints a warning and the engine's poll catches up."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import click

MARKER = "# installed by `gitops hook install`"
CONFIG_NAME = "gitops-hook.json"

HOOK = f"""#!/usr/bin/env python3
{MARKER}: tells the GitOps engine which refs moved.
import hashlib
import hmac
import json
import os
import sys
import urllib.request

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "{CONFIG_NAME}")) as f:
    config = json.load(f)
changes = []
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 3:
        changes.append({{"before": parts[0], "after": parts[1], "ref": parts[2]}})
if changes:
    body = json.dumps({{"repositories": config["repositories"], "changes": changes}}, sort_keys=True).encode()
    headers = {{
        "Content-Type": "application/json",
        "X-Gitops-Event": "push",
        "Idempotency-Key": hashlib.sha256(body).hexdigest(),
    }}
    if config.get("secret"):
        digest = hmac.new(config["secret"].encode(), body, hashlib.sha256).hexdigest()
        headers["X-Gitops-Signature"] = "sha256=" + digest
    try:
        request = urllib.request.Request(config["url"], data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    except Exception as exc:
        print("gitops: could not notify " + config["url"] + ": " + str(exc), file=sys.stderr)
"""


def hooks_dir(repo: Path) -> Path:
    """Where git runs this repository's hooks (honours core.hooksPath)."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--path-format=absolute", "--git-path", "hooks"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise click.UsageError(f"{repo} is not a git repository: {proc.stderr.strip()}")
    return Path(proc.stdout.strip())


def install_hook(repo: Path, url: str, secret: str, repo_urls: tuple[str, ...], force: bool = False) -> Path:
    """Write hooks/post-receive and its config; returns the hook's path."""
    hooks = hooks_dir(repo)
    hook = hooks / "post-receive"
    if hook.exists() and MARKER not in hook.read_text(errors="replace") and not force:
        raise click.UsageError(f"{hook} exists and was not written by gitops: move it away or use --force")
    hooks.mkdir(parents=True, exist_ok=True)
    repositories = [*repo_urls, str(repo.resolve())]
    config = hooks / CONFIG_NAME
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "secret": secret, "repositories": repositories}, f)
    config.chmod(0o600)
    hook.write_text(HOOK)
    hook.chmod(0o755)
    return hook


@click.group()
def hook() -> None:
    """Git hooks that notify the engine of pushes."""


@hook.command()
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--url",
    default="http://127.0.0.1:8080/api/webhook",
    show_default=True,
    help="The engine's webhook endpoint.",
)
@click.option(
    "--secret",
    envvar="GITOPS_WEBHOOK_SECRET",
    default="",
    help="The webhook secret of `gitops up` (default: $GITOPS_WEBHOOK_SECRET).",
)
@click.option(
    "--repo-url",
    "repo_urls",
    multiple=True,
    help="A URL apps use for this repository (repeatable); its path is always included.",
)
@click.option("--force", is_flag=True, help="Replace a post-receive hook not written by gitops.")
def install(repo: Path, url: str, secret: str, repo_urls: tuple[str, ...], force: bool) -> None:
    """Install a post-receive hook in the bare repository REPO."""
    path = install_hook(repo, url, secret, repo_urls, force)
    click.echo(f"post-receive hook installed: {path} -> {url}{'' if secret else ' (unsigned: no secret)'}")
