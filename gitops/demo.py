"""`gitops up --demo`: the example app in a local git repository and an Application that
syncs it, so the README's run command shows the whole git-to-pod path on a laptop."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from gitops import apps
from gitops.resources import Obj

DEMO_SOURCE = Path(__file__).resolve().parents[1] / "examples" / "demo"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "gitops demo",
    "GIT_AUTHOR_EMAIL": "demo@gitops.local",
    "GIT_COMMITTER_NAME": "gitops demo",
    "GIT_COMMITTER_EMAIL": "demo@gitops.local",
}


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **_GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def ensure_demo_repo(data_dir: Path, source: Path = DEMO_SOURCE) -> Path:
    """A bare repository at DATA_DIR/demo.git holding the example app (created once; a
    repository the user has pushed to is left as it is)."""
    bare = data_dir / "demo.git"
    if bare.exists():
        return bare
    bare.parent.mkdir(parents=True, exist_ok=True)
    _git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=data_dir)
    with tempfile.TemporaryDirectory(prefix="gitops-demo-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(source, work)
        _git("init", "--quiet", "--initial-branch=main", cwd=work)
        _git("add", "-A", cwd=work)
        _git("commit", "--quiet", "-m", "Demo app: frontend and backend", cwd=work)
        _git("push", "--quiet", str(bare.resolve()), "main", cwd=work)
    return bare


def demo_application(repo: Path) -> Obj:
    return {
        "apiVersion": apps.API_VERSION,
        "kind": apps.KIND,
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo.resolve().as_uri(), "path": ".", "targetRevision": "main"},
            "destination": {"server": apps.IN_CLUSTER, "namespace": "demo"},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"]},
        },
    }
