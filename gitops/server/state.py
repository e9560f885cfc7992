"""The web server's read side: Applications and the live objects of their resource trees,
from shared informers (so it reads the embedded cluster and a real one alike, and never
lists the cluster per request), plus the change feed that drives live updates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controllers.runtime import Informer, InformerFactory, object_key
from gitops import apps
from gitops.health import resource_health
from gitops.resources import tracked_app

Obj = dict[str, Any]

# Kinds whose objects make up the tree under an app's resources (owners and owned).
TREE_KINDS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
    ("v1", "Pod"),
)
CHILD_KINDS = (("apps/v1", "ReplicaSet"), ("batch/v1", "Job"), ("v1", "Pod"))
SORT_FIELDS = ("name", "namespace", "project", "repo", "sync", "health", "lastSync", "revision")
MAX_PER_PAGE = 500


@dataclass(frozen=True)
class Row:
    """One app as the list shows it (and the API's list returns it)."""

    namespace: str
    name: str
    api_version: str
    project: str
    repo: str
    path: str
    target: str
    revision: str
    message: str
    sync: str
    health: str
    last_sync: str
    last_result: str
    operation: str
    auto: bool
    labels: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def as_json(self) -> Obj:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "project": self.project,
            "repoURL": self.repo,
            "path": self.path,
            "targetRevision": self.target,
            "revision": self.revision,
            "shortRevision": self.revision[:7],
            "commitMessage": self.message,
            "syncStatus": self.sync,
            "healthStatus": self.health,
            "lastSyncAt": self.last_sync,
            "lastSyncResult": self.last_result,
            "operationMessage": self.operation,
            "autoSync": self.auto,
            "labels": self.labels,
        }


def row_of(app: Obj) -> Row:
    meta, spec, st = app.get("metadata") or {}, app.get("spec") or {}, app.get("status") or {}
    src = spec.get("source") or (spec.get("sources") or [{}])[0]
    op = st.get("operationState") or {}
    history = st.get("history") or []
    last = history[-1] if history else {}
    message = str((st.get("summary") or {}).get("commitMessage") or "").strip().splitlines()
    return Row(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        api_version=str(app.get("apiVersion", apps.API_VERSION)),
        project=str(spec.get("project") or "default"),
        repo=str(src.get("repoURL", "")),
        path=str(src.get("path", "")),
        target=str(src.get("targetRevision") or "HEAD"),
        revision=str((st.get("sync") or {}).get("revision") or ""),
        message=message[0] if message else "",
        sync=str((st.get("sync") or {}).get("status") or "Unknown"),
        health=str((st.get("health") or {}).get("status") or "Unknown"),
        last_sync=str(op.get("finishedAt") or op.get("startedAt") or last.get("deployedAt") or ""),
        last_result=str(op.get("phase") or ""),
        operation=str(op.get("message") or ""),
        auto=(spec.get("syncPolicy") or {}).get("automated") is not None,
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
    )


@dataclass
class Query:
    """Filters, search, sort and page of the list (the dashboard's and the API's)."""

    search: str = ""
    sync: str = ""
    health: str = ""
    repo: str = ""
    namespace: str = ""
    label: str = ""  # key=value or key (present), comma-separated terms all hold
    sort: str = "name"
    desc: bool = False
    page: int = 1
    per_page: int = 50

    @classmethod
    def parse(cls, args: Any) -> Query:
        """From request arguments; bad numbers fall back to the defaults, sizes are bounded."""

        def num(name: str, default: int) -> int:
            try:
                return int(args.get(name) or default)
            except ValueError:
                return default

        sort = str(args.get("sort") or "name")
        return cls(
            search=str(args.get("search") or "").strip(),
            sync=str(args.get("sync") or ""),
            health=str(args.get("health") or ""),
            repo=str(args.get("repo") or ""),
            namespace=str(args.get("namespace") or ""),
            label=str(args.get("label") or "").strip(),
            sort=sort if sort in SORT_FIELDS else "name",
            desc=str(args.get("order") or "asc") == "desc",
            page=max(1, num("page", 1)),
            per_page=min(MAX_PER_PAGE, max(1, num("perPage", 50))),
        )

    def matches(self, row: Row) -> bool:
        if self.sync and row.sync != self.sync:
            return False
        if self.health and row.health != self.health:
            return False
        if self.repo and row.repo != self.repo:
            return False
        if self.namespace and row.namespace != self.namespace:
            return False
        for term in filter(None, (t.strip() for t in self.label.split(","))):
            k, eq, v = term.partition("=")
            if k.strip() not in row.labels or (eq and row.labels[k.strip()] != v.strip()):
                return False
        if self.search:
            needle = self.search.lower()
            hay = f"{row.name}\n{row.namespace}\n{row.repo}\n{row.path}\n{row.message}\n{row.revision}".lower()
            if needle not in hay:
                return False
        return True

    def sort_key(self) -> Callable[[Row], tuple[str, ...]]:
        attr = {"lastSync": "last_sync"}.get(self.sort, self.sort)
        return lambda r: (str(getattr(r, attr)).lower(), r.namespace, r.name)


@dataclass
class Page:
    rows: list[Row]
    total: int
    query: Query
    facets: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


@dataclass
class TreeNode:
    group: str
    kind: str
    namespace: str
    name: str
    status: str = ""  # sync status (managed resources only)
    health: str = ""
    message: str = ""
    phase: str = ""  # pods
    restarts: int = 0
    ready: str = ""
    requires_pruning: bool = False
    children: list[TreeNode] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return anchor(self.group, self.kind, self.namespace, self.name)

    def as_json(self) -> Obj:
        out: Obj = {
            "group": self.group,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "health": self.health,
            "children": [c.as_json() for c in self.children],
        }
        for name, value in (("status", self.status), ("message", self.message), ("ready", self.ready)):
            if value:
                out[name] = value
        if self.kind == "Pod":
            out["phase"] = self.phase
            out["restarts"] = self.restarts
        if self.requires_pruning:
            out["requiresPruning"] = True
        return out


class Changes:
    """A change feed: a version counter and, per app key, the version of its last change
    (of the app itself, or of an object in its tree). Readers wait for versions after
    the one they saw; nothing is queued per reader, so a slow reader costs nothing."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.version = 0
        self._app: dict[str, int] = {}
        self._tree: dict[str, int] = {}

    def publish(self, key: str, tree: bool = False) -> None:
        with self._cond:
            self.version += 1
            (self._tree if tree else self._app)[key] = self.version
            self._cond.notify_all()

    def wait(self, since: int, timeout: float) -> int:
        """The current version, once it is past `since` or `timeout` seconds passed."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > since, timeout)
            return self.version

    def apps_since(self, since: int) -> list[str]:
        with self._cond:
            return [k for k, v in self._app.items() if v > since]

    def changed(self, key: str, since: int) -> bool:
        with self._cond:
            return self._app.get(key, 0) > since or self._tree.get(key, 0) > since


class AppState:
    """Applications (ours and Argo CD's group) and the tree kinds, cached by informers of
    the engine's factory; rows are memoized per resourceVersion so a list of 1,000 apps
    is a filter and a sort over ready-made rows."""

    def __init__(self, informers: InformerFactory, namespace: str = "") -> None:
        """`namespace`: the one whose Applications are served ("" for all), as the engine's."""
        self.changes = Changes()
        self._apps: dict[str, Informer] = {}
        self._rows: dict[str, tuple[str, Row]] = {}
        self._rows_lock = threading.Lock()
        for api_version in apps.APP_API_VERSIONS:
            inf = informers.informer(api_version, apps.KIND, namespace)
            inf.add_handler(self._on_app)
            self._apps[api_version] = inf
        self._tree: dict[tuple[str, str], Informer] = {}
        for api_version, kind in TREE_KINDS:
            inf = informers.informer(api_version, kind)
            inf.cache.add_index("uid", _uid_index)
            inf.add_handler(self._on_tree_object)
            self._tree[(api_version.rpartition("/")[0], kind)] = inf
        self._events = informers.informer("v1", "Event")
        self._events.cache.add_index("involved", _involved_index)
        self._events.add_handler(self._on_event)
        informers.start()

    def synced(self) -> bool:
        return all(inf.has_synced() for inf in self._apps.values())

    # ------------------------------------------------------------------ change feed
    def _on_app(self, _etype: str, obj: Obj, _old: Obj | None) -> None:
        self.changes.publish(object_key(obj))

    def _on_tree_object(self, _etype: str, obj: Obj, _old: Obj | None) -> None:
        owner = self._owning_app(obj)
        if owner:
            self.changes.publish(owner, tree=True)

    def _on_event(self, _etype: str, obj: Obj, _old: Obj | None) -> None:
        involved = obj.get("involvedObject") or {}
        if involved.get("kind") == apps.KIND:
            self.changes.publish(f"{involved.get('namespace', '')}/{involved.get('name', '')}", tree=True)

    def _owning_app(self, obj: Obj) -> str | None:
        """The app whose tracked resource this object is, or descends from by ownerReferences."""
        for _ in range(4):
            owner = tracked_app(obj)
            if owner:
                return owner
            refs = (obj.get("metadata") or {}).get("ownerReferences") or []
            parent = self._by_uid(refs[0].get("uid", "")) if refs else None
            if parent is None:
                return None
            obj = parent
        return None

    def _by_uid(self, uid: str) -> Obj | None:
        for inf in self._tree.values():
            found = inf.cache.by_index("uid", uid)
            if found:
                return found[0]
        return None

    # ------------------------------------------------------------------ apps
    def all_apps(self) -> list[Obj]:
        return [o for inf in self._apps.values() for o in inf.cache.list()]

    def get(self, namespace: str, name: str) -> Obj | None:
        for inf in self._apps.values():
            found = inf.cache.get(f"{namespace}/{name}")
            if found is not None:
                return found
        return None

    def row(self, app: Obj) -> Row:
        key = f"{app.get('apiVersion')}|{object_key(app)}"
        rv = str((app.get("metadata") or {}).get("resourceVersion", ""))
        hit = self._rows.get(key)
        if hit is not None and hit[0] == rv:
            return hit[1]
        row = row_of(app)
        with self._rows_lock:
            self._rows[key] = (rv, row)
        return row

    def rows(self) -> list[Row]:
        return [self.row(a) for a in self.all_apps()]

    def query(self, q: Query) -> Page:
        rows = self.rows()
        facets = {
            "namespace": sorted({r.namespace for r in rows}),
            "repo": sorted({r.repo for r in rows}),
        }
        matched = sorted((r for r in rows if q.matches(r)), key=q.sort_key(), reverse=q.desc)
        start = (q.page - 1) * q.per_page
        return Page(matched[start : start + q.per_page], len(matched), q, facets)

    # ------------------------------------------------------------------ tree and events
    def tree(self, app: Obj) -> list[TreeNode]:
        """The app's resources (from its status) with their live descendants."""
        nodes = []
        for r in (app.get("status") or {}).get("resources") or []:
            group, kind = str(r.get("group") or ""), str(r.get("kind", ""))
            ns, name = str(r.get("namespace") or ""), str(r.get("name", ""))
            health = r.get("health") or {}
            node = TreeNode(
                group,
                kind,
                ns,
                name,
                status=str(r.get("status", "")),
                health=str(health.get("status", "")),
                message=str(health.get("message", "")),
                requires_pruning=bool(r.get("requiresPruning")),
            )
            inf = self._tree.get((group, kind))
            live = inf.cache.get(f"{ns}/{name}" if ns else name) if inf is not None else None
            if live is not None:
                node.children = self._children(live, 0)
            nodes.append(node)
        return nodes

    def _children(self, obj: Obj, depth: int) -> list[TreeNode]:
        uid = (obj.get("metadata") or {}).get("uid")
        if not uid or depth > 3:
            return []
        out = []
        for api_version, kind in CHILD_KINDS:
            inf = self._tree[(api_version.rpartition("/")[0], kind)]
            for child in sorted(inf.cache.by_index("owner", uid), key=object_key):
                out.append(self._node(child, depth))
        return out

    def _node(self, obj: Obj, depth: int) -> TreeNode:
        meta, st = obj.get("metadata") or {}, obj.get("status") or {}
        h = resource_health(obj)
        node = TreeNode(
            str(obj.get("apiVersion", "")).rpartition("/")[0],
            str(obj.get("kind", "")),
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            health=h.status,
            message=h.message,
        )
        if node.kind == "Pod":
            statuses = st.get("containerStatuses") or []
            node.phase = str(st.get("phase") or "Pending")
            waiting = [
                (c.get("state") or {}).get("waiting", {}).get("reason")
                for c in statuses
                if (c.get("state") or {}).get("waiting")
            ]
            if meta.get("deletionTimestamp"):
                node.phase = "Terminating"
            elif waiting and waiting[0]:
                node.phase = str(waiting[0])
            node.restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
            containers = (obj.get("spec") or {}).get("containers") or []
            node.ready = f"{sum(1 for c in statuses if c.get('ready'))}/{len(containers)}"
        elif node.kind == "ReplicaSet":
            node.ready = f"{int(st.get('readyReplicas') or 0)}/{int((obj.get('spec') or {}).get('replicas') or 0)}"
        node.children = self._children(obj, depth + 1)
        return node

    def events(self, app: Obj, limit: int = 20) -> list[Obj]:
        """Recent events about the app and every object of its tree, newest first."""
        uids = {str((app.get("metadata") or {}).get("uid", ""))}
        stack = list(self.tree(app))
        while stack:
            n = stack.pop()
            stack.extend(n.children)
            inf = self._tree.get((n.group, n.kind))
            live = inf.cache.get(f"{n.namespace}/{n.name}" if n.namespace else n.name) if inf else None
            if live is not None:
                uids.add(str(live["metadata"].get("uid", "")))
        found = [e for uid in uids if uid for e in self._events.cache.by_index("involved", uid)]
        found.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
        return found[:limit]


def anchor(group: str, kind: str, namespace: str, name: str) -> str:
    """The HTML id of a resource's section on the diff page."""
    return f"{group or 'core'}-{kind}-{namespace}-{name}".replace("/", "-").replace(".", "-")


def _uid_index(obj: Obj) -> list[str]:
    uid = (obj.get("metadata") or {}).get("uid")
    return [uid] if uid else []


def _involved_index(obj: Obj) -> list[str]:
    uid = (obj.get("involvedObject") or {}).get("uid")
    return [uid] if uid else []
