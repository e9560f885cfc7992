"""Real git servers on loopback for the GitOps tests: HTTP (git http-backend) and git daemon.

    def test_x(git_server):
        repo = git_server.repo("apps")
        sha = repo.commit({"web/deploy.yaml": "...", "old.yaml": None}, "add web")
        url = repo.url()            # http://127.0.0.1:PORT/apps.git ("git", "file", "path" also)
        git_server.stop()           # the server is down: fetches fail
        git_server.start()          # back on the same ports

``git_server_auth`` requires HTTP basic auth (``GitServer.USERNAME``/``PASSWORD``).
Also the one way the tests run the engine (``running_engine``, fixture ``engine``), write an
Application (``application``, ``app_status``) and run ``gitops up`` (``running_up``, ``up_exits``).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from controllers.client import Client, LocalClient
from controllers.cluster import EmbeddedCluster
from gitops import apps
from gitops.controller import EngineSettings, PolicyGate
from gitops.engine import Engine
from gitops.source.git import RepoCache

_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git for the test fixtures (isolated from the user's git configuration)."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env={**os.environ, **_GIT_ENV}
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


@dataclass(frozen=True)
class Symlink:
    """A file value for ``GitRepo.commit`` that makes a symbolic link to ``target``."""

    target: str


FileValue = str | bytes | Symlink | None


class GitRepo:
    """A bare repository served by a GitServer, with a work tree to commit from."""

    def __init__(self, server: GitServer, name: str) -> None:
        self.server = server
        self.name = name
        self.bare = server.root / "repos" / f"{name}.git"
        self.work = server.root / "work" / name
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def url(self, protocol: str = "http") -> str:
        return self.server.url(self.name, protocol)

    def commit(self, files: dict[str, FileValue], message: str = "update", branch: str = "main") -> str:
        """Write (str/bytes), link (Symlink) or delete (None) files, commit on ``branch`` and push; the new SHA."""
        self._switch(branch)
        for rel, value in files.items():
            path = self.work / rel
            if path.is_symlink() or path.is_file():
                path.unlink()
            if value is None:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(value, Symlink):
                os.symlink(value.target, path)
            elif isinstance(value, bytes):
                path.write_bytes(value)
            else:
                path.write_text(value)
        return self._commit_and_push(message, branch)

    def add_tree(self, source: Path, prefix: str, message: str = "add tree", branch: str = "main") -> str:
        """Copy a directory into the repository under ``prefix`` and commit it."""
        self._switch(branch)
        shutil.copytree(source, self.work / prefix, symlinks=True, dirs_exist_ok=True)
        return self._commit_and_push(message, branch)

    def tag(self, name: str, ref: str = "main", message: str | None = None) -> None:
        """A lightweight tag, or an annotated one when ``message`` is given."""
        git("tag", *(["-a", "-m", message] if message else []), name, ref, cwd=self.work)
        git("push", "-q", "origin", f"refs/tags/{name}", cwd=self.work)

    def push_ref(self, ref: str, commit: str = "HEAD") -> None:
        """Publish a commit under an arbitrary ref (e.g. ``refs/pull/1/head``)."""
        git("push", "-q", "origin", f"{commit}:{ref}", cwd=self.work)

    def _switch(self, branch: str) -> None:
        if git("symbolic-ref", "--short", "HEAD", cwd=self.work) == branch:
            return
        exists = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"refs/heads/{branch}"], cwd=self.work, capture_output=True
        )
        git("checkout", "-q", *([] if exists.returncode == 0 else ["-b"]), branch, cwd=self.work)

    def _commit_and_push(self, message: str, branch: str) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, git_server: GitServer) -> None:
        self.git_server = git_server
        super().__init__(("127.0.0.1", port), _GitHTTPHandler)


class _GitHTTPHandler(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` as a CGI program for each request (smart HTTP, protocol v2)."""

    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read ``GitServer.requests`` instead."""

    def _serve(self) -> None:
        git_server = self.server.git_server
        user = self._user()
        path, _, query = self.path.partition("?")
        git_server.requests.append((self.command, path, query, user))
        if git_server.auth is not None and user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if git_server.delay:
            time.sleep(git_server.delay)
        body = self._body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(git_server.root / "repos"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": user or "",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        separator = b"\r\n\r\n" if b"\r\n\r\n" in proc.stdout else b"\n\n"
        head, _, payload = proc.stdout.partition(separator)
        status, headers = 200, []
        for line in head.decode().splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _user(self) -> str | None:
        """The authenticated user, or None when auth is required and the request lacks valid credentials."""
        auth = self.server.git_server.auth
        if auth is None:
            return None
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if (user, password) == auth else None

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)


class GitServer:
    """Serves every repository under ``root/repos`` over HTTP and the git protocol on loopback."""

    USERNAME = "alice"
    PASSWORD = "s3cret-Pa55word"

    def __init__(self, root: Path, auth: tuple[str, str] | None = None) -> None:
        self.root = root
        self.auth = auth
        self.delay = 0.0  # seconds each HTTP request waits, to widen race windows
        self.requests: list[tuple[str, str, str, str | None]] = []  # method, path, query, user
        self.http_port = free_port()
        self.daemon_port = free_port()
        self._repos: dict[str, GitRepo] = {}
        self._http: _HTTPServer | None = None
        self._daemon: subprocess.Popen[bytes] | None = None
        (root / "repos").mkdir(parents=True, exist_ok=True)

    def repo(self, name: str) -> GitRepo:
        """The repository ``name``, created empty on first use."""
        if name not in self._repos:
            self._repos[name] = GitRepo(self, name)
        return self._repos[name]

    def url(self, name: str, protocol: str = "http") -> str:
        """How a client reaches ``name``: over "http", "git" (daemon), a "file" URL or a plain "path"."""
        bare = self.root / "repos" / f"{name}.git"
        return {
            "http": f"http://127.0.0.1:{self.http_port}/{name}.git",
            "git": f"git://127.0.0.1:{self.daemon_port}/{name}.git",
            "file": bare.as_uri(),
            "path": str(bare),
        }[protocol]

    def fetch_sessions(self, name: str) -> int:
        """How many times a client started talking to ``name`` over HTTP (one per fetch)."""
        refs = f"/{name}.git/info/refs"
        return sum(1 for method, path, _, _ in self.requests if method == "GET" and path == refs)

    def start(self) -> GitServer:
        self._http = _HTTPServer(self.http_port, self)
        threading.Thread(target=self._http.serve_forever, name="git-http", daemon=True).start()
        self._daemon = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--informative-errors", "--listen=127.0.0.1",
             f"--port={self.daemon_port}", f"--base-path={self.root / 'repos'}", str(self.root / "repos")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.http_port)
        wait_for_port(self.daemon_port)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._daemon is not None:
            self._daemon.terminate()
            self._daemon.wait(timeout=20)
            self._daemon = None


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    """An anonymous git server on loopback (HTTP and git daemon)."""
    server = GitServer(tmp_path / "git-server").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def git_server_auth(tmp_path: Path) -> Iterator[GitServer]:
    """A git server whose HTTP side requires basic auth with GitServer.USERNAME/PASSWORD."""
    server = GitServer(tmp_path / "git-server-auth", auth=(GitServer.USERNAME, GitServer.PASSWORD)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def repo_cache(tmp_path: Path) -> RepoCache:
    """An empty RepoCache with a short network timeout."""
    return RepoCache(tmp_path / "repo-cache", timeout=30)


@contextmanager
def running_engine(
    cluster: EmbeddedCluster, data_dir: Path, workers: int = 4, gate: PolicyGate | None = None
) -> Iterator[Engine]:
    """The engine on `cluster` with git polling off (tests refresh or push), stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(LocalClient(cluster.api), data_dir, EngineSettings(poll_seconds=3600, workers=workers), gate=gate)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def engine(kube: EmbeddedCluster, tmp_path: Path) -> Iterator[Engine]:
    """The engine on the `kube` cluster, its data in tmp_path/engine."""
    with running_engine(kube, tmp_path / "engine") as e:
        yield e


def application(
    name: str,
    repo_url: str,
    path: str,
    namespace: str = "default",
    destination: dict[str, str] | None = None,
    automated: bool = True,
    prune: bool = True,
    self_heal: bool = True,
    labels: dict[str, str] | None = None,
    **source: Any,
) -> dict[str, Any]:
    """An Application in "default" deploying to `namespace` in-cluster (or to `destination`),
    creating the namespace; extra keyword arguments go into its source."""
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": repo_url, "path": path, "targetRevision": "main", **source},
        "destination": destination or {"server": apps.IN_CLUSTER, "namespace": namespace},
        "syncPolicy": {"syncOptions": ["CreateNamespace=true"]},
    }
    if automated:
        spec["syncPolicy"]["automated"] = {"prune": prune, "selfHeal": self_heal}
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels or {}}
    return {"apiVersion": apps.API_VERSION, "kind": "Application", "metadata": meta, "spec": spec}


def app_status(client: Client, name: str) -> tuple[str, str, str]:
    """(sync status, health status, synced revision) of Application `name`, as users read them."""
    st = client.get(apps.API_VERSION, "Application", name, "default").get("status") or {}
    return (
        (st.get("sync") or {}).get("status", ""),
        (st.get("health") or {}).get("status", ""),
        (st.get("sync") or {}).get("revision", ""),
    )


class OnEngine:
    """An engine on a cluster, with the one way the tests make and read Applications."""

    def __init__(self, cluster: EmbeddedCluster, engine: Engine) -> None:
        self.cluster, self.engine, self.client = cluster, engine, cluster.client

    def create_app(
        self,
        name: str,
        repo: GitRepo,
        path: str,
        automated: bool = True,
        prune: bool = True,
        self_heal: bool = True,
        namespace: str = "default",
        labels: dict[str, str] | None = None,
        **source: Any,
    ) -> None:
        app = application(
            name,
            repo.url(),
            path,
            namespace,
            automated=automated,
            prune=prune,
            self_heal=self_heal,
            labels=labels,
            **source,
        )
        self.client.create(app)

    def app(self, name: str) -> dict[str, Any]:
        return self.client.get(apps.API_VERSION, "Application", name, "default")

    def status(self, name: str) -> tuple[str, str, str]:
        return app_status(self.client, name)


UP = [sys.executable, "-m", "gitops.cli", "up"]


@dataclass
class Up:
    """A running `gitops up` and what it printed up to "Press Ctrl-C"."""

    proc: subprocess.Popen[str]
    lines: list[str]

    @property
    def out(self) -> str:
        return "".join(self.lines)


@contextmanager
def running_up(data: Path, *args: str) -> Iterator[Up]:
    """`gitops up` on free ports, read until it is ready (120s); on exit SIGTERM must stop it cleanly."""
    proc = subprocess.Popen(
        [*UP, *args, "--data-dir", str(data), "--api-port", "0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = Up(proc, [])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            up.lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        yield up
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def up_exits(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`gitops up` expected to exit at once (bad options): its exit code and output."""
    return subprocess.run([*UP, "--data-dir", str(data), *args], capture_output=True, text=True, timeout=60)
