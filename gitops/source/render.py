"""Render an Application source at a commit into Kubernetes objects, as Argo CD's repo-server does.

The source type is the one the spec names (``helm:``, ``kustomize:`` or
``directory:``), else what the path holds: ``Chart.yaml`` is Helm, a
kustomization file is Kustomize, anything else a directory of YAML/JSON files.

A render is a pure function of (repository, commit, source options, app name,
destination namespace), so results are cached by those inputs, in memory and as
JSON on disk: an unchanged commit is never rendered twice, even across restarts.
A directory source without symlinks depends only on the tree of its path, so it is
also cached by that tree's id: a commit elsewhere in a monorepo re-renders no app.
Any error fails the whole render; a partial result is never returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson

from gitops.source.git import GitError, RepoCache, SingleFlight, clean_path, normalize_url
from gitops.yamlload import ManifestError, load_manifests, load_yaml

__all__ = ["RenderError", "Renderer"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]

HELM, KUSTOMIZE, DIRECTORY = "Helm", "Kustomize", "Directory"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MANIFEST_FILE = re.compile(r".*\.(yaml|yml|json)")
_HELM_LOCATION = re.compile(r"(?P<file>[\w.\-/]+\.(?:yaml|yml|tpl|txt|json)):(?P<line>\d+)")
_TYPE_FIELDS = (("helm", HELM), ("kustomize", KUSTOMIZE), ("directory", DIRECTORY))
_FORMAT = 1  # part of every cache key: bump it when rendering changes meaning


class RenderError(Exception):
    """A source that cannot be rendered; names the file and line when one is to blame."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.line = line


class Renderer:
    """Renders Application sources from a RepoCache, caching results by commit.

    ``renders`` counts real renders and ``cache_hits`` answers from the cache.
    """

    def __init__(
        self,
        repos: RepoCache,
        cache_dir: Path,
        memory_entries: int = 256,
        kubectl: str = "kubectl",
        timeout: float = 120.0,
    ) -> None:
        self.repos = repos
        self.cache_dir = Path(cache_dir).resolve()  # absolute: kustomize runs in another cwd
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.memory_entries = memory_entries
        self.kubectl = kubectl
        self.timeout = timeout
        self.renders = 0
        self.cache_hits = 0
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering: SingleFlight[bytes] = SingleFlight()

    def render(self, repo_url: str, commit: str, source: Obj, app_name: str, namespace: str) -> list[Obj]:
        """The objects of ``source`` (an Application's ``spec.source``) at ``commit``, in a fresh list."""
        key = _cache_key(repo_url, {"commit": commit}, source, app_name, namespace)
        data = self._cached(key) or self._rendering.do(
            key, lambda: self._render_once(key, repo_url, commit, source, app_name, namespace)
        )
        objects: list[Obj] = orjson.loads(data)
        return objects

    def _tree_key(self, repo_url: str, commit: str, source: Obj, app_name: str, namespace: str) -> str | None:
        """The key of a directory source by its path's tree (None for other sources)."""
        try:
            if self.source_type(repo_url, commit, source) != DIRECTORY:
                return None
            tree = self.repos.tree_id(repo_url, commit, _app_path(source))
        except GitError as err:
            raise RenderError(str(err)) from None
        return _cache_key(repo_url, {"tree": tree}, source, app_name, namespace) if tree else None

    def source_type(self, repo_url: str, commit: str, source: Obj) -> str:
        """Helm, Kustomize or Directory: what Argo CD reports as ``status.sourceType``."""
        return _explicit_type(source) or self._detect(repo_url, commit, _app_path(source))

    # ------------------------------------------------------------------ cache
    def _cached(self, key: str) -> bytes | None:
        with self._lock:
            data = self._memory.get(key)
            if data is not None:
                self._memory.move_to_end(key)
                self.cache_hits += 1
                return data
        try:
            data = self._disk_path(key).read_bytes()
            orjson.loads(data)  # a torn or corrupt file is a miss, not an error
        except (OSError, orjson.JSONDecodeError):
            return None
        self._remember(key, data)
        with self._lock:
            self.cache_hits += 1
        return data

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            self._memory[key] = data
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_entries:
                self._memory.popitem(last=False)

    def _disk_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _render_once(self, key: str, repo_url: str, commit: str, source: Obj, app_name: str, namespace: str) -> bytes:
        """Render and store, unless a render that finished meanwhile (or one of the same tree
        at another commit) already stored the result. A render found by its tree is also
        remembered by the commit, in memory: the next pass at this commit asks git nothing."""
        tree_key = self._tree_key(repo_url, commit, source, app_name, namespace)
        cached = self._cached(key) or (self._cached(tree_key) if tree_key else None)
        if cached is not None:
            self._remember(key, cached)
            return cached
        objects, tree_only = self._render(repo_url, commit, source, app_name, namespace)
        data = orjson.dumps(objects)
        self._store(tree_key if tree_key and tree_only else key, data)
        self._remember(key, data)
        with self._lock:
            self.renders += 1
        return data

    def _store(self, key: str, data: bytes) -> None:
        path = self._disk_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self._remember(key, data)

    # ------------------------------------------------------------------ rendering
    def _render(self, repo_url: str, commit: str, source: Obj, app_name: str, namespace: str) -> tuple[list[Obj], bool]:
        """The objects, and whether they depend on nothing but the tree at the app's path."""
        path = _app_path(source)
        try:
            kind = self.source_type(repo_url, commit, source)
            log.debug("rendering %s %s at %s as %s", path or ".", normalize_url(repo_url), commit[:12], kind)
            if kind == DIRECTORY:
                return self._directory(repo_url, commit, path, source.get("directory") or {})
            with tempfile.TemporaryDirectory(prefix=".render-", dir=self.cache_dir) as tmp:
                root = Path(tmp)
                self.repos.export(repo_url, commit, "", root)
                if not (root / path).is_dir():
                    raise RenderError(f"{path}: app path does not exist")
                if kind == KUSTOMIZE:  # may read ../bases, and Helm value files from anywhere
                    return self._kustomize(root, path, source.get("kustomize") or {}), False
                return self._helm(root, path, source.get("helm") or {}, app_name, namespace), False
        except GitError as err:
            raise RenderError(str(err)) from None
        except ManifestError as err:
            raise RenderError(str(err), err.source, err.line) from None

    def _detect(self, repo_url: str, commit: str, path: str) -> str:
        try:
            names = {entry.path.rsplit("/", 1)[-1] for entry in self.repos.ls_tree(repo_url, commit, path)}
        except GitError as err:
            raise RenderError(str(err)) from None
        if "Chart.yaml" in names:
            return HELM
        if names.intersection(KUSTOMIZATION_FILES):
            return KUSTOMIZE
        return DIRECTORY

    def _directory(self, repo_url: str, commit: str, path: str, options: Obj) -> tuple[list[Obj], bool]:
        """Every YAML/JSON file of the directory (and below it with ``recurse``), filtered by
        include/exclude; and whether no symlink (to files elsewhere in the repo) was read."""
        include, exclude = _glob(options.get("include")), _glob(options.get("exclude"))
        prefix = f"{path}/" if path else ""
        files = []
        links = False
        for entry in self.repos.ls_tree(repo_url, commit, path, recursive=bool(options.get("recurse"))):
            rel = entry.path[len(prefix) :]
            if entry.type != "blob" or not _MANIFEST_FILE.fullmatch(rel.rsplit("/", 1)[-1]):
                continue
            if (exclude and exclude.fullmatch(rel)) or (include and not include.fullmatch(rel)):
                continue
            files.append(entry.path)
            links = links or entry.mode == "120000"
        objects: list[Obj] = []
        for file in sorted(files, key=lambda p: p.split("/")):
            text = _decode(self.repos.read_file(repo_url, commit, file), file)
            try:
                objects.extend(load_manifests(text, file))
            except ManifestError:
                if file.endswith(".json") or _looks_like_resource(text):
                    raise
                log.debug("skipping %s: YAML that is not Kubernetes manifests", file)
        return objects, not links

    def _kustomize(self, root: Path, path: str, options: Obj) -> list[Obj]:
        """``kubectl kustomize`` on the exported tree, after the edits ``kustomize edit`` would make."""
        app_dir = root / path
        if options:
            _edit_kustomization(app_dir, path, options)
        kubectl = shutil.which(self.kubectl)
        if kubectl is None:
            raise RenderError(f"{path or '.'}: Kustomize sources need kubectl (`kubectl kustomize`), not found on PATH")
        try:
            proc = subprocess.run(
                [kubectl, "kustomize", str(app_dir)], capture_output=True, text=True, timeout=self.timeout, cwd=root
            )
        except subprocess.TimeoutExpired:
            raise RenderError(f"{path or '.'}: kustomize build timed out after {self.timeout:g}s") from None
        if proc.returncode != 0:
            detail = proc.stderr.strip().removeprefix("error: ").replace(f"{root}/", "").replace(str(root), ".")
            raise RenderError(f"{path or '.'}: kustomize build failed: {detail}")
        return load_manifests(proc.stdout, f"{path or '.'} (kustomize output)")

    def _helm(self, root: Path, path: str, options: Obj, app_name: str, namespace: str) -> list[Obj]:
        """``helm template`` with Argo CD's value precedence: files, then values, then parameters."""
        import helm_python  # loading the native Helm library costs ~0.3 s: only Helm apps pay it

        values = _helm_values(root, path, options)
        try:
            values = _merge(values, _helm_parameters(helm_python, root, path, options))
            with helm_python.Chart.load(root / path) as chart:
                rendered = chart.render(
                    values, name=options.get("releaseName") or app_name, namespace=namespace, is_install=True
                )
                crds = [] if options.get("skipCrds") else chart.crds
        except helm_python.HelmError as err:
            raise _helm_error(err, root, path) from None
        objects: list[Obj] = []
        for crd in crds:
            objects.extend(load_manifests(crd["data"], _chart_file(path, crd["filename"])))
        for template, text in sorted(rendered.items()):
            if not template.endswith("NOTES.txt") and text.strip():
                objects.extend(load_manifests(text, _chart_file(path, template)))
        return objects


def _cache_key(repo_url: str, content: dict[str, str], source: Obj, app_name: str, namespace: str) -> str:
    """Everything a render depends on, the content named by ``{"commit": sha}`` or ``{"tree":
    id}``; the target revision is left out (the content says it all)."""
    options = {k: v for k, v in source.items() if k not in ("repoURL", "targetRevision")}
    blob = orjson.dumps(
        {"v": _FORMAT, "repo": normalize_url(repo_url), **content, "source": options, "app": app_name,
         "namespace": namespace},
        option=orjson.OPT_SORT_KEYS,
    )  # fmt: skip
    return hashlib.sha256(blob).hexdigest()


def _app_path(source: Obj) -> str:
    try:
        return clean_path(str(source.get("path") or ""))
    except GitError as err:
        raise RenderError(str(err)) from None


def _explicit_type(source: Obj) -> str | None:
    """The type a spec names (Argo CD refuses more than one)."""
    if source.get("chart"):
        raise RenderError("Helm repository charts (spec.source.chart) are not supported: use a chart in git")
    if source.get("plugin"):
        raise RenderError("config management plugins (spec.source.plugin) are not supported")
    named = [kind for key, kind in _TYPE_FIELDS if source.get(key)]
    if len(named) > 1:
        raise RenderError(f"multiple application sources defined: {', '.join(named)}")
    return named[0] if named else None


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RenderError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})", file) from None


def _looks_like_resource(text: str) -> bool:
    """Argo CD's test for a broken YAML file that must fail the render rather than be skipped."""
    return all(word in text for word in ("apiVersion:", "kind:", "metadata:"))


def _glob(pattern: str | None) -> re.Pattern[str] | None:
    """Argo CD's include/exclude glob (gobwas/glob without separators) as a regex.

    ``*`` matches any text including ``/``, ``?`` one character, ``[a-z]`` and
    ``[!a-z]`` classes, ``{a,b}`` alternatives (which may nest), ``\\`` escapes.
    """
    if not pattern:
        return None
    out, depth, i = [], 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise RenderError(f"invalid glob {pattern!r}: unclosed [")
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + "".join(c if c == "-" else re.escape(c) for c in body) + "]")
            i = end
        elif ch == "{":
            depth += 1
            out.append("(?:")
        elif ch == "}" and depth:
            depth -= 1
            out.append(")")
        elif ch == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(ch))
        i += 1
    if depth:
        raise RenderError(f"invalid glob {pattern!r}: unclosed {{")
    return re.compile("".join(out), re.DOTALL)


def _edit_kustomization(app_dir: Path, path: str, options: Obj) -> None:
    """What Argo CD's ``kustomize edit set nameprefix/namesuffix/namespace/image`` and
    ``kustomize edit add label/annotation --force`` do, applied to the exported copy."""
    file = next((app_dir / name for name in KUSTOMIZATION_FILES if (app_dir / name).is_file()), None)
    if file is None:
        raise RenderError(f"{path or '.'}: no kustomization file to apply the kustomize options to")
    source = f"{path}/{file.name}" if path else file.name
    kustomization = load_yaml(file.read_text(), source) or {}
    if not isinstance(kustomization, dict):
        raise RenderError(f"{source}: a kustomization must be a mapping", source)
    for field in ("namePrefix", "nameSuffix", "namespace"):
        if options.get(field):
            kustomization[field] = str(options[field])
    for field in ("commonLabels", "commonAnnotations"):
        if options.get(field):
            kustomization[field] = {**(kustomization.get(field) or {}), **_string_map(options[field], field)}
    for image in options.get("images") or []:
        entry = _kustomize_image(str(image))
        others = [i for i in kustomization.get("images") or [] if i.get("name") != entry["name"]]
        kustomization["images"] = [*others, entry]
    file.write_text(json.dumps(kustomization))  # JSON is YAML, and keeps every value's type as loaded


def _string_map(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise RenderError(f"kustomize.{field} must be a map of strings")
    return {str(k): str(v) for k, v in value.items()}


def _kustomize_image(spec: str) -> dict[str, str]:
    """An image override as ``kustomize edit set image`` reads it: ``[name=]newName[:tag|@digest]``."""
    name, sep, new = spec.partition("=")
    if not sep:
        name, new = "", spec
    new_name, tag, digest = new, "", ""
    if "@" in new:
        new_name, digest = new.split("@", 1)
    elif new.rfind(":") > new.rfind("/"):
        new_name, tag = new.rsplit(":", 1)
    entry = {"name": name or new_name}
    if new_name != entry["name"]:
        entry["newName"] = new_name
    if tag:
        entry["newTag"] = tag
    if digest:
        entry["digest"] = digest
    return entry


def _repo_file(root: Path, chart_dir: Path, name: str, what: str) -> tuple[Path, str]:
    """A file named relative to the chart (or to the repository root when absolute), refused outside the repo."""
    if "://" in name:
        raise RenderError(f"{what} {name!r}: only files from the repository are supported")
    candidate = root / name.lstrip("/") if name.startswith("/") else chart_dir / name
    real_root, real = os.path.realpath(root), os.path.realpath(candidate)
    if os.path.commonpath([real_root, real]) != real_root:
        raise RenderError(f"{what} {name!r} resolves outside the repository")
    return Path(real), os.path.relpath(real, real_root)


def _helm_values(root: Path, path: str, options: Obj) -> Obj:
    """valueFiles in order, then ``valuesObject`` (or else the ``values`` string), merged as ``-f`` merges."""
    values: Obj = {}
    for name in options.get("valueFiles") or []:
        file, rel = _repo_file(root, root / path, str(name), "value file")
        if not file.is_file():
            if options.get("ignoreMissingValueFiles"):
                continue
            raise RenderError(f"value file {name!r} does not exist ({rel})", rel)
        values = _merge(values, _values_mapping(load_yaml(file.read_text(), rel), rel))
    inline = options.get("valuesObject")
    if inline is None and options.get("values"):
        inline = load_yaml(str(options["values"]), f"{path or '.'} (helm.values)")
    return _merge(values, _values_mapping(inline, "helm.valuesObject" if "valuesObject" in options else "helm.values"))


def _values_mapping(doc: Any, source: str) -> Obj:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise RenderError(f"{source}: Helm values must be a mapping, not {type(doc).__name__}", source)
    return doc


def _helm_parameters(helm: Any, root: Path, path: str, options: Obj) -> Obj:
    """``--set``, then ``--set-string`` (forceString), then ``--set-file`` values, as Helm orders them."""
    plain: list[str] = []
    forced: list[str] = []
    for param in options.get("parameters") or []:
        value = str(param.get("value", ""))
        if not (value.startswith("{") and value.endswith("}")):
            value = re.sub(r"(?<!\\),", r"\\,", value)  # Argo CD escapes commas unless it is a {list}
        (forced if param.get("forceString") else plain).append(f"{param['name']}={value}")
    values: Obj = {}
    if plain:
        values = _merge(values, helm.parse_set_string(",".join(plain)))
    if forced:
        values = _merge(values, helm.parse_set_string_values(",".join(forced)))
    for param in options.get("fileParameters") or []:
        file, rel = _repo_file(root, root / path, str(param.get("path", "")), "file parameter")
        if not file.is_file():
            raise RenderError(f"file parameter {param.get('name')}: {rel} does not exist", rel)
        values = _merge(values, helm.parse_set_literal(f"{param['name']}={file.read_text()}"))
    return values


def _merge(base: Obj, override: Obj) -> Obj:
    """Helm's merge of values: maps merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _chart_file(path: str, chart_relative: str) -> str:
    """``mychart/templates/x.yaml`` (Helm names files under the chart's name) as a repository path."""
    inner = chart_relative.split("/", 1)[-1]
    return f"{path}/{inner}" if path else inner


def _helm_error(err: Exception, root: Path, path: str) -> RenderError:
    """A RenderError naming the template file and line Helm blamed, with temp paths made repo-relative."""
    message = str(err).replace(f"{root}/", "").replace(str(root), ".")
    match = _HELM_LOCATION.search(message)
    if match is None:
        return RenderError(f"{path or '.'}: helm: {message}")
    source = _chart_file(path, match["file"])
    return RenderError(f"{source}:{match['line']}: helm: {message}", source, int(match["line"]))
