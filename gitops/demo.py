"""`gitops up --demo`: the example repository (examples/demo) in a local git repository,
the example policies (examples/policies) and the example Applications (examples/apps), so
the README's run command shows the whole git-to-pod path on a laptop, a blocked sync
included."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from gitops.policygate import load_policies
from gitops.resources import Obj
from gitops.yamlload import load_manifests

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_SOURCE = EXAMPLES / "demo"
# The repoURL examples/apps/*.yaml use: where `gitops up --demo` puts the repository with
# the default --data-dir. The demo points them at the actual repository.
DEMO_REPO_URL = ".gitops/demo.git"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "gitops demo",
    "GIT_AUTHOR_EMAIL": "demo@gitops.local",
    "GIT_COMMITTER_NAME": "gitops demo",
    "GIT_COMMITTER_EMAIL": "demo@gitops.local",
}


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"demo repository: git {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def ensure_demo_repo(data_dir: Path, source: Path = DEMO_SOURCE) -> Path:
    """A bare repository at DATA_DIR/demo.git holding the example repository (created
    once; a repository the user has pushed to is left as it is)."""
    bare = (data_dir / "demo.git").resolve()  # absolute: git runs in other directories
    if bare.exists():
        return bare
    bare.parent.mkdir(parents=True, exist_ok=True)
    _git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=bare.parent)
    with tempfile.TemporaryDirectory(prefix="gitops-demo-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(source, work)
        _git("init", "--quiet", "--initial-branch=main", cwd=work)
        _git("add", "-A", cwd=work)
        _git("commit", "--quiet", "-m", "Example shop: app, kustomize overlays, helm chart", cwd=work)
        _git("push", "--quiet", str(bare), "main", cwd=work)
    return bare


def demo_applications(repo: Path, apps_dir: Path = EXAMPLES / "apps") -> list[Obj]:
    """The example Applications, their sources pointed at REPO."""
    out: list[Obj] = []
    for path in sorted(apps_dir.glob("*.yaml")):
        for app in load_manifests(path.read_text(), str(path)):
            source = (app.get("spec") or {}).get("source") or {}
            if source.get("repoURL") == DEMO_REPO_URL:
                source["repoURL"] = repo.resolve().as_uri()
            out.append(app)
    return out


def demo_objects(repo: Path) -> list[Obj]:
    """What `gitops up --demo` applies, in order: the example policies first (as
    `--policies examples/policies` would), so that the apps' first syncs meet them, then
    the Applications, `demo` first."""
    found = demo_applications(repo)
    ordered = sorted(found, key=lambda a: (a["metadata"]["name"] != "demo", a["metadata"]["name"]))
    return [*load_policies(str(EXAMPLES / "policies")), *ordered]
