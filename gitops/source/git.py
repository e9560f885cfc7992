"""A shared cache of bare git clones: resolve revisions, read files at a commit.

One bare clone per repository (keyed by the normalized URL) serves every app
that deploys from it. Apps never share a work tree: files are read straight
from the object database at a commit, or exported into a private directory
when a tool (kustomize, helm) needs real files.

Network access happens only in ``fetch``: concurrent callers on one URL share
a single fetch. Credentials reach git through ``GIT_ASKPASS`` (passwords) or
``GIT_SSH_COMMAND`` with a private key file (SSH), never on the command line or
in the URL, and every message leaving this module is scrubbed of them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import shlex
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Generic, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import git

__all__ = [
    "CommitInfo",
    "Credentials",
    "CredentialsProvider",
    "GitError",
    "GitRequest",
    "RepoCache",
    "SingleFlight",
    "TreeEntry",
    "clean_path",
    "credentials_by_prefix",
    "env_credentials",
    "normalize_url",
    "scrub",
]

log = logging.getLogger(__name__)

_LINK_MODE = "120000"
_TREE_MODE = "040000"
_MAX_LINK_HOPS = 40
_TREE_CACHE = 4096  # parsed trees kept per repository
_SHA = re.compile(r"[0-9a-f]{4,40}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_BAD_REVISION = re.compile(r"[\s~^:?*\[\\\x00-\x1f\x7f]|\.\.|@\{")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SCP_LIKE = re.compile(r"(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!//).*)")
_ASKPASS = """#!/bin/sh
# Answers git's credential prompts from the environment of the one git command that runs it.
case "$1" in
  Username*) printf '%s\\n' "$GITOPS_GIT_ASKPASS_USERNAME" ;;
  *) printf '%s\\n' "$GITOPS_GIT_ASKPASS_PASSWORD" ;;
esac
"""


class GitError(Exception):
    """A git operation failed; the message names the repository and never holds a secret."""


@dataclass(frozen=True)
class Credentials:
    """What it takes to read one repository: a username and password/token, or an SSH key."""

    username: str = ""
    password: str = ""
    ssh_private_key: str = ""
    insecure_ignore_host_key: bool = False

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.ssh_private_key) if s)

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"Credentials(username={self.username!r}, password={'***' if self.password else ''!r})"


CredentialsProvider = Callable[[str], Credentials | None]
"""Returns the credentials for a repository URL, or None for anonymous access."""


class TreeEntry(NamedTuple):
    """One entry of a git tree: its repo-relative path, mode ("100644", "120000"...), type and object id."""

    path: str
    mode: str
    type: str
    sha: str


@dataclass(frozen=True)
class CommitInfo:
    """What a person wants to see about a commit."""

    sha: str
    subject: str
    message: str
    author: str
    date: str


class GitRequest(NamedTuple):
    """One network operation, for metrics (gitops_git_request_seconds)."""

    url: str
    operation: str
    seconds: float
    ok: bool


T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs one call per key at a time; callers arriving meanwhile wait and share its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Future[T]] = {}

    def do(self, key: str, fn: Callable[[], T]) -> T:
        with self._lock:
            future = self._running.get(key)
            leader = future is None
            if future is None:
                future = self._running[key] = Future()
        if not leader:
            return future.result()
        try:
            result = fn()
        except BaseException as err:
            future.set_exception(err)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._running[key]


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """The text without URL userinfo (``https://user:pw@host`` → ``https://***@host``) or known secrets."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _is_local(url: str) -> bool:
    return "://" not in url and (url.startswith(("/", ".")) or _SCP_LIKE.fullmatch(url) is None)


def normalize_url(url: str) -> str:
    """One spelling per repository: lower-case scheme and host, no userinfo, no trailing ``/`` or ``.git``.

    ``git@host:org/repo.git`` and ``ssh://git@host/org/repo`` normalize alike;
    local paths become absolute ``file://`` URLs.
    """
    url = url.strip()
    if _is_local(url):
        return "file://" + os.path.abspath(url).rstrip("/").removesuffix(".git")
    scp = _SCP_LIKE.fullmatch(url) if "://" not in url else None
    if scp is not None:
        scheme, host, path = "ssh", scp["host"].lower(), "/" + scp["path"].lstrip("/")
    else:
        parts = urlsplit(url)
        scheme, host, path = parts.scheme.lower(), (parts.hostname or "").lower(), parts.path
        if parts.port is not None:
            host += f":{parts.port}"
        if scheme == "file":
            path = os.path.abspath(path)
    return f"{scheme}://{host}{path.rstrip('/').removesuffix('.git')}"


def env_credentials(environ: Mapping[str, str] | None = None) -> CredentialsProvider:
    """Credentials from the environment, per host first, then global.

    ``GITOPS_GIT_<HOST>_USERNAME`` / ``_PASSWORD`` / ``_SSH_PRIVATE_KEY`` /
    ``_SSH_PRIVATE_KEY_FILE`` (host upper-cased, other characters as ``_``,
    e.g. ``GITOPS_GIT_GITLAB_EXAMPLE_COM_PASSWORD``), then the same names
    without a host (``GITOPS_GIT_PASSWORD``...). A token is a password.
    """
    env = os.environ if environ is None else environ

    def lookup(url: str) -> Credentials | None:
        hostname = "" if _is_local(url) else urlsplit(normalize_url(url)).hostname or ""
        host = re.sub(r"[^A-Z0-9]", "_", hostname.upper())
        for prefix in ([f"GITOPS_GIT_{host}_"] if host else []) + ["GITOPS_GIT_"]:
            key = env.get(prefix + "SSH_PRIVATE_KEY", "")
            key_file = env.get(prefix + "SSH_PRIVATE_KEY_FILE")
            if key_file and not key:
                key = Path(key_file).read_text()
            creds = Credentials(env.get(prefix + "USERNAME", ""), env.get(prefix + "PASSWORD", ""), key)
            if creds.password or creds.ssh_private_key:
                return creds
        return None

    return lookup


def credentials_by_prefix(entries: Mapping[str, Credentials]) -> CredentialsProvider:
    """Argo CD's matching of repository secrets: the exact repository first, else the longest URL prefix
    (a ``repo-creds`` template such as ``https://github.com/my-org``)."""
    normalized = {normalize_url(url): creds for url, creds in entries.items()}

    def lookup(url: str) -> Credentials | None:
        target = normalize_url(url)
        if target in normalized:
            return normalized[target]
        prefixes = [p for p in normalized if target.startswith(p.rstrip("/") + "/")]
        return normalized[max(prefixes, key=len)] if prefixes else None

    return lookup


def _split_userinfo(url: str) -> tuple[str, Credentials | None]:
    """Secrets written into a URL move to Credentials, so they never reach git's argv or a message.

    That is a password anywhere, and any HTTP(S) userinfo (``https://<token>@host`` is a common
    way to pass a token); an SSH user name alone (``ssh://git@host``) is not a secret and stays.
    """
    parts = urlsplit(url) if "://" in url else None
    if parts is None or parts.username is None or (parts.password is None and parts.scheme not in ("http", "https")):
        return url, None
    clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return clean, Credentials(unquote(parts.username), unquote(parts.password or ""))


def _validate_revision(revision: str) -> None:
    if revision.startswith("-") or _BAD_REVISION.search(revision):
        raise GitError(f"invalid revision {revision!r}")


def clean_path(path: str) -> str:
    """A repo-relative path without ``.`` parts; ``..`` and absolute paths are refused."""
    parts = [p for p in path.strip().split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        raise GitError(f"path {path!r} must be relative to the repository root and stay inside it")
    return "/".join(parts)


def _link_target(link: str, target: str) -> str:
    """The repo-relative path a symlink at ``link`` points to; refused when it leaves the repository."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
    if target.startswith("/") or joined == ".." or joined.startswith("../"):
        raise GitError(f"symlink {link} -> {target} points outside the repository")
    return "" if joined == "." else joined


def _stderr_summary(err: git.GitCommandError) -> str:
    """git's own words for a failure: its first paragraph, without "fatal:" prefixes or advice."""
    raw = err.stderr if isinstance(err.stderr, str) else str(err.stderr or "")
    text = raw.strip().removeprefix("stderr: ").strip("'").strip()
    paragraph = text.split("\n\n", 1)[0]
    lines = [re.sub(r"^(fatal|error|remote):\s*", "", ln.strip()) for ln in paragraph.splitlines() if ln.strip()]
    return "; ".join(lines) or f"git exited with status {err.status}"


class _Repo:
    """One cached bare clone and what is known about it."""

    def __init__(self, url: str, path: Path, url_credentials: Credentials | None) -> None:
        self.url = url
        self.url_credentials = url_credentials
        self.path = path
        self.repo = git.Repo(path)
        self.lock = threading.Lock()  # guards refs and the git.Repo's persistent cat-file processes
        self.refs: dict[str, str] | None = None
        self.commits: set[str] = set()  # SHAs known to name commits here (objects never disappear)
        # Parsed trees by object id, and commits' root trees: objects are immutable, so a
        # monorepo's `apps/` tree is read once for its 1,000 apps, not once per file read.
        self.trees: OrderedDict[str, dict[str, TreeEntry]] = OrderedDict()
        self.roots: dict[str, str] = {}
        self.infos: OrderedDict[str, CommitInfo] = OrderedDict()  # the 1,000 apps of one commit ask once


class RepoCache:
    """Bare clones of every repository the engine reads, under ``root``, shared by all apps.

    ``on_request`` is called after each network operation (for a latency
    histogram); ``fetches``/``fetch_failures`` count them.
    """

    def __init__(
        self,
        root: Path,
        credentials: CredentialsProvider | None = None,
        timeout: float = 120.0,
        on_request: Callable[[GitRequest], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.credentials = credentials
        self.timeout = timeout
        self.on_request = on_request
        self.fetches = 0
        self.fetch_failures = 0
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._fetching: SingleFlight[None] = SingleFlight()
        self.root.mkdir(parents=True, exist_ok=True)
        self._askpass = self.root / ".askpass.sh"
        if not self._askpass.exists():
            tmp = self.root / f".askpass.{uuid.uuid4().hex}"
            tmp.write_text(_ASKPASS)
            tmp.chmod(0o700)
            os.replace(tmp, self._askpass)

    # ------------------------------------------------------------------ revisions
    def resolve(self, url: str, revision: str = "HEAD", refresh: bool = False) -> str:
        """The commit SHA of a branch, tag (peeled), full or short SHA, or ``HEAD``/"" (the default branch).

        Fetches when ``refresh`` is set or the revision is not known locally;
        otherwise answers from the cache without touching the network.
        """
        revision = revision.strip() or "HEAD"
        _validate_revision(revision)
        repo = self._repo(url)
        if not refresh:
            sha = self._lookup(repo, revision)
            if sha is not None:
                return sha
        self.fetch(url)
        sha = self._lookup(repo, revision)
        if sha is None and (revision.startswith("refs/") or _FULL_SHA.fullmatch(revision)):
            sha = self._fetch_one(repo, revision)
        if sha is None:
            raise GitError(f"revision {revision!r} not found in {scrub(repo.url)}")
        return sha

    def fetch(self, url: str) -> None:
        """Bring the cache up to date with the remote; concurrent callers share one fetch."""
        repo = self._repo(url)
        self._fetching.do(repo.path.name, lambda: self._fetch_all(repo))

    def _fetch_all(self, repo: _Repo) -> None:
        refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", "+HEAD:refs/gitops/HEAD"]
        self._fetch(repo, "--prune", "--", repo.url, *refspecs)
        with repo.lock:
            repo.refs = None

    def _fetch_one(self, repo: _Repo, revision: str) -> str | None:
        """Fetch a ref or commit the remote does not advertise among branches and tags (e.g. refs/pull/1/head)."""
        local = "refs/gitops/extra/" + revision.removeprefix("refs/")
        try:
            self._fetch(repo, "--", repo.url, f"+{revision}:{local}")
        except GitError:
            return None
        with repo.lock:
            repo.refs = None
        return self._lookup(repo, local)

    def _lookup(self, repo: _Repo, revision: str) -> str | None:
        """Resolve from the local clone only: branches, then tags, then full refs, then SHAs."""
        refs = self._refs(repo)
        if revision == "HEAD":
            return refs.get("refs/gitops/HEAD")
        extra = "refs/gitops/extra/" + revision.removeprefix("refs/")
        for name in (f"refs/heads/{revision}", f"refs/tags/{revision}", revision, extra):
            if name in refs:
                return refs[name]
        if not _SHA.fullmatch(revision.lower()):
            return None
        try:
            with repo.lock:
                return str(repo.repo.git.rev_parse("--verify", "--quiet", f"{revision}^{{commit}}"))
        except git.GitCommandError:
            return None

    def _refs(self, repo: _Repo) -> dict[str, str]:
        """Every ref of the clone mapped to its commit (annotated tags peeled)."""
        with repo.lock:
            if repo.refs is None:
                out = repo.repo.git.for_each_ref("--format=%(refname) %(objecttype) %(objectname) %(*objectname)")
                refs = {}
                for line in out.splitlines():
                    name, kind, sha, peeled = (line.split(" ") + [""])[:4]
                    if kind == "commit" or (kind == "tag" and peeled):
                        refs[name] = peeled or sha
                repo.refs = refs
            return repo.refs

    # ------------------------------------------------------------------ reading
    def ls_tree(self, url: str, sha: str, path: str = "", recursive: bool = False) -> list[TreeEntry]:
        """The entries under directory ``path`` at commit ``sha`` (all files below it when ``recursive``),
        in git's order, as ``git ls-tree`` lists them."""
        repo = self._repo(url)
        rel = clean_path(path)
        commit = self._commit(repo, sha)
        with repo.lock:
            node = self._entry(repo, commit, rel)
            if node is None or node.type != "tree":
                problem = "is not a directory" if node else "does not exist"
                raise GitError(f"path {rel!r} {problem} at {sha[:12]} in {scrub(repo.url)}")
            return list(self._walk(repo, node.sha, rel, recursive))

    def tree_id(self, url: str, sha: str, path: str = "") -> str | None:
        """The object id of directory ``path`` at commit ``sha`` (None when it is not a directory):
        it changes exactly when something below the path does, so it keys renders of the path."""
        repo = self._repo(url)
        commit = self._commit(repo, sha)
        with repo.lock:
            node = self._entry(repo, commit, clean_path(path))
        return node.sha if node is not None and node.type == "tree" else None

    def read_file(self, url: str, sha: str, path: str) -> bytes:
        """The content of a file at a commit, following symlinks that stay inside the repository."""
        repo = self._repo(url)
        commit = self._commit(repo, sha)
        with repo.lock:
            node = self._resolve_path(repo, commit, clean_path(path))
            if node.type != "blob":
                raise GitError(f"{path} is a directory at {sha[:12]} in {scrub(repo.url)}")
            return self._object(repo, node.sha)

    def _resolve_path(self, repo: _Repo, commit: str, rel: str) -> TreeEntry:
        """The entry at ``rel``, following symlinks at every component; caller holds ``repo.lock``."""
        root = TreeEntry("", _TREE_MODE, "tree", self._root_tree(repo, commit))
        pending = rel.split("/") if rel else []
        done: list[str] = []
        hops = 0
        node = root
        while pending:
            name = pending.pop(0)
            current = "/".join([*done, name])
            entry = self._tree(repo, node.sha).get(name) if node.type == "tree" else None
            if entry is None:
                raise GitError(f"{rel} does not exist at {commit[:12]} in {scrub(repo.url)}")
            if entry.mode == _LINK_MODE:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise GitError(f"{rel}: too many levels of symbolic links")
                target = _link_target(current, self._object(repo, entry.sha).decode())
                pending = (target.split("/") if target else []) + pending
                done, node = [], root
            else:
                done.append(name)
                node = entry
        return node

    def _entry(self, repo: _Repo, commit: str, rel: str) -> TreeEntry | None:
        """The entry at ``rel`` without following symlinks (as ``git rev-parse commit:rel``), or
        None; caller holds ``repo.lock``."""
        node: TreeEntry | None = TreeEntry("", _TREE_MODE, "tree", self._root_tree(repo, commit))
        for name in rel.split("/") if rel else []:
            if node is None or node.type != "tree":
                return None
            node = self._tree(repo, node.sha).get(name)
        return node

    def _walk(self, repo: _Repo, tree: str, prefix: str, recursive: bool) -> Iterator[TreeEntry]:
        for name, entry in self._tree(repo, tree).items():
            full = f"{prefix}/{name}" if prefix else name
            if recursive and entry.type == "tree":
                yield from self._walk(repo, entry.sha, full, recursive)
            else:
                yield entry._replace(path=full)

    def _root_tree(self, repo: _Repo, commit: str) -> str:
        tree = repo.roots.get(commit)
        if tree is None:
            header = self._object(repo, commit).split(b"\n", 1)[0]
            if not header.startswith(b"tree "):
                raise GitError(f"commit {commit} in {scrub(repo.url)} has no tree")
            tree = repo.roots[commit] = header[5:].decode()
        return tree

    def _tree(self, repo: _Repo, sha: str) -> dict[str, TreeEntry]:
        """The entries of a tree object by name (``path`` is the name), parsed once."""
        entries = repo.trees.get(sha)
        if entries is not None:
            repo.trees.move_to_end(sha)
            return entries
        data = self._object(repo, sha)
        entries = {}
        i = 0
        while i < len(data):
            space = data.index(b" ", i)
            nul = data.index(b"\0", space)
            mode = data[i:space].decode().zfill(6)
            name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
            kind = "tree" if mode == _TREE_MODE else "commit" if mode == "160000" else "blob"
            entries[name] = TreeEntry(name, mode, kind, data[nul + 1 : nul + 21].hex())
            i = nul + 21
        repo.trees[sha] = entries
        if len(repo.trees) > _TREE_CACHE:
            repo.trees.popitem(last=False)
        return entries

    def _object(self, repo: _Repo, sha: str) -> bytes:
        """An object's raw content from git's persistent ``cat-file --batch``; caller holds ``repo.lock``."""
        try:
            return bytes(repo.repo.git.get_object_data(sha)[3])
        except (ValueError, git.GitCommandError) as err:
            raise GitError(f"cannot read object {sha} in {scrub(repo.url)}: {err}") from None

    def export(self, url: str, sha: str, path: str, dest: Path) -> Path:
        """Write the files under ``path`` at ``sha`` into ``dest``, keeping the repository layout.

        Returns ``dest / path``. Symlinks are written only if they resolve inside
        the repository; anything else is refused with an error naming the link.
        """
        repo = self._repo(url)
        rel = clean_path(path)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.root) as archive:
            self._local(
                repo, "archive", "--format=tar", self._commit(repo, sha), "--", *([rel] if rel else []), stream=archive
            )
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:") as tar:
                for member in tar:
                    _extract(tar, member, dest)
        return dest / rel if rel else dest

    def changed_files(self, url: str, old_sha: str, new_sha: str) -> list[str]:
        """Paths that differ between two commits (a rename lists both names)."""
        repo = self._repo(url)
        out = self._local(
            repo, "diff", "--name-only", "--no-renames", "-z", self._commit(repo, old_sha), self._commit(repo, new_sha)
        )
        return [p for p in out.split("\0") if p]

    def commit_info(self, url: str, sha: str) -> CommitInfo:
        repo = self._repo(url)
        commit_sha = self._commit(repo, sha)
        with repo.lock:
            info = repo.infos.get(commit_sha)
            if info is None:
                commit = repo.repo.commit(commit_sha)
                message = commit.message if isinstance(commit.message, str) else commit.message.decode()
                info = repo.infos[commit_sha] = CommitInfo(
                    sha=commit.hexsha,
                    subject=message.strip().split("\n", 1)[0],
                    message=message.strip(),
                    author=f"{commit.author.name} <{commit.author.email}>",
                    date=commit.authored_datetime.isoformat(),
                )
                if len(repo.infos) > _TREE_CACHE:
                    repo.infos.popitem(last=False)
            return info

    def _commit(self, repo: _Repo, sha: str) -> str:
        """A SHA checked to name a commit in the clone (refusing anything that could pass as an option)."""
        if sha in repo.commits:
            return sha
        if not _SHA.fullmatch(sha):
            raise GitError(f"{sha!r} is not a commit SHA")
        if self._object_type(repo, sha) != "commit":
            raise GitError(f"commit {sha} is not in the cache of {scrub(repo.url)}")
        repo.commits.add(sha)
        return sha

    def _object_type(self, repo: _Repo, sha: str) -> str:
        try:
            return self._local(repo, "cat_file", "-t", sha)
        except GitError:
            return ""

    # ------------------------------------------------------------------ plumbing
    def _repo(self, url: str) -> _Repo:
        """The cached clone for a URL, created (empty) on first use."""
        if not url or url.startswith("-"):
            raise GitError(f"invalid repository URL {scrub(url)!r}")
        key = normalize_url(url)
        with self._lock:
            repo = self._repos.get(key)
            if repo is None:
                fetch_url, url_credentials = _split_userinfo(os.path.abspath(url) if _is_local(url) else url)
                slug = re.sub(r"[^a-zA-Z0-9_.-]", "_", key.rsplit("/", 1)[-1])[:40]
                path = self.root / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.git"
                if not (path / "HEAD").exists():
                    self._init_bare(path)
                repo = self._repos[key] = _Repo(fetch_url, path, url_credentials)
            return repo

    def _init_bare(self, path: Path) -> None:
        """Create a bare clone atomically, so an interrupted start never leaves half a repository."""
        tmp = self.root / f".init-{uuid.uuid4().hex}"
        git.Repo.init(tmp, bare=True)
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp)
            if not (path / "HEAD").exists():
                raise

    def _local(self, repo: _Repo, command: str, *args: str, stream: IO[bytes] | None = None) -> str:
        """Run a git command that only reads the local clone."""
        try:
            if stream is not None:
                getattr(repo.repo.git, command)(*args, output_stream=stream, kill_after_timeout=self.timeout)
                return ""
            return str(getattr(repo.repo.git, command)(*args, kill_after_timeout=self.timeout))
        except git.GitCommandNotFound as err:
            raise GitError("git is not installed") from err
        except git.GitCommandError as err:
            raise GitError(
                f"git {command.replace('_', '-')} failed in {scrub(repo.url)}: {_stderr_summary(err)}"
            ) from None

    def _fetch(self, repo: _Repo, *args: str) -> None:
        """Run ``git fetch`` (the only command that talks to a remote) with credentials, a timeout and metrics."""
        creds = repo.url_credentials or (self.credentials(repo.url) if self.credentials is not None else None)
        secrets = creds.secrets() if creds is not None else ()
        start = time.monotonic()
        ok = False
        try:
            with self._git_env(creds) as env:
                repo.repo.git.fetch("--no-write-fetch-head", *args, env=env, kill_after_timeout=self.timeout)
            ok = True
        except git.GitCommandNotFound as err:
            raise GitError("git is not installed") from err
        except git.GitCommandError as err:
            reason = _stderr_summary(err)
            if err.status == -9 and "did not complete" in reason:  # gitpython's kill_after_timeout
                reason = f"timed out after {self.timeout:g}s"
            message = scrub(f"cannot fetch {repo.url}: {reason}", secrets)
            log.warning("%s", message)
            raise GitError(message) from None
        finally:
            seconds = time.monotonic() - start
            with self._lock:
                self.fetches += 1
                self.fetch_failures += 0 if ok else 1
            log.debug("git fetch %s took %.2fs (ok=%s)", scrub(repo.url, secrets), seconds, ok)
            if self.on_request is not None:
                self.on_request(GitRequest(scrub(repo.url, secrets), "fetch", seconds, ok))

    @contextmanager
    def _git_env(self, creds: Credentials | None) -> Iterator[dict[str, str]]:
        """The environment of one network git command: no prompts, no stored credentials, safe protocols."""
        config = {
            "credential.helper": "",  # never store or look up credentials elsewhere
            "gc.auto": "0",  # no repacking under readers' feet
            "maintenance.auto": "false",
            "http.lowSpeedLimit": "1000",
            "http.lowSpeedTime": str(int(self.timeout)),
        }
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": str(self._askpass),
            "SSH_ASKPASS": str(self._askpass),
            "GIT_ALLOW_PROTOCOL": "http:https:ssh:git:file",
            "GIT_CONFIG_COUNT": str(len(config)),
            "GITOPS_GIT_ASKPASS_USERNAME": creds.username if creds else "",
            "GITOPS_GIT_ASKPASS_PASSWORD": creds.password if creds else "",
        }
        for i, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        if creds is None or not creds.ssh_private_key:
            env["GIT_SSH_COMMAND"] = self._ssh_command(None, creds)
            yield env
            return
        fd, key_file = tempfile.mkstemp(prefix=".ssh-key-", dir=self.root)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(creds.ssh_private_key.rstrip("\n") + "\n")
            env["GIT_SSH_COMMAND"] = self._ssh_command(key_file, creds)
            yield env
        finally:
            os.unlink(key_file)

    def _ssh_command(self, key_file: str | None, creds: Credentials | None) -> str:
        """ssh that never prompts, trusts a host key on first use (or never checks it when insecure)."""
        insecure = creds is not None and creds.insecure_ignore_host_key
        known_hosts = "/dev/null" if insecure else str(self.root / "known_hosts")
        options = [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(min(self.timeout, 30))}",
            "-o", f"StrictHostKeyChecking={'no' if insecure else 'accept-new'}",
            "-o", f"UserKnownHostsFile={known_hosts}",
        ]  # fmt: skip
        if key_file is not None:
            options += ["-i", key_file, "-o", "IdentitiesOnly=yes"]
        return " ".join(shlex.quote(o) for o in options)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """Write one archive member under ``dest``, refusing paths or links that leave the repository."""
    rel = clean_path(member.name)
    if not rel:
        return
    target = dest / rel
    root = os.path.realpath(dest)
    if os.path.commonpath([root, os.path.realpath(target.parent)]) != root:
        raise GitError(f"{rel} would be written outside the export directory")
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
    elif member.issym():
        _link_target(rel, member.linkname)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(member.linkname, target)
    elif member.isfile():
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        assert source is not None
        with source, open(target, "wb") as out:
            out.write(source.read())
        target.chmod(0o755 if member.mode & 0o100 else 0o644)
