"""The namespace controller: deleting a Namespace deletes everything in it.

The API server marks a deleted Namespace Terminating and keeps it while its
`spec.finalizers` holds `kubernetes` (and refuses new content meanwhile). This
controller deletes every namespaced object in it, of every served kind (CRD kinds too),
reports progress in the Namespace's status conditions as Kubernetes does
(`NamespaceContentRemaining: Some resources are remaining: pods. has 2 resource
instances`), waits until the content is gone, then clears its finalizer so that the API
server removes the Namespace."""

from __future__ import annotations

import logging
from typing import Any

from controllers import errors
from controllers.gc import KindWatcher, group_of
from controllers.manager import ControllerContext
from controllers.runtime import Controller, Result
from controllers.workloads.common import set_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]

KUBERNETES_FINALIZER = "kubernetes"
FIELD_MANAGER = "namespace-controller"
CONTENT_RETRY_SECONDS = 2.0  # content events wake us sooner; this is the safety net
BATCH_SECONDS = 0.1  # a burst of content deletions costs one pass


class NamespaceController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.namespaces = ctx.informers.informer("v1", "Namespace")
        self.controller = Controller("namespace-controller", self.reconcile, workers=2)
        self.controller.watch(self.namespaces)
        self.kinds = KindWatcher(
            ctx, "namespace-controller", lambda info: info.namespaced, lambda _info, inf: inf.add_handler(self._content)
        )

    def start(self) -> NamespaceController:
        self.kinds.start()
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        self.kinds.stop()

    def _content(self, _etype: str, obj: Obj, _old: Obj | None) -> None:
        """Content of a terminating namespace changed: look at the namespace again."""
        name = obj.get("metadata", {}).get("namespace", "")
        ns = self.namespaces.cache.get(name) if name else None
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self.controller.queue.add_after(name, BATCH_SECONDS)

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, name: str) -> Result | None:
        ns = self.namespaces.cache.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        if KUBERNETES_FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return None
        if not self.kinds.synced():
            return Result(requeue_after=0.2)
        remaining, finalizers, failures = self._delete_content(name)
        self._report(ns, remaining, finalizers, failures)
        if remaining:
            return Result(requeue_after=CONTENT_RETRY_SECONDS)
        if self._content_left(name):
            return Result(requeue_after=0.2)
        spec = ns.get("spec") or {}
        finalized = [f for f in spec.get("finalizers") or [] if f != KUBERNETES_FINALIZER]
        # Over HTTP this is namespaces/NAME/finalize; the embedded API takes a plain update.
        try:
            self.client.update({**ns, "spec": {**spec, "finalizers": finalized}}, field_manager=FIELD_MANAGER)
        except errors.NotFound:
            pass  # finalized by an earlier pass the cache has not caught up with
        return None

    def _delete_content(self, namespace: str) -> tuple[dict[str, int], dict[str, int], list[str]]:
        """Delete what the caches show in the namespace; count what is still there (by
        `resource.group`) and the finalizers holding it."""
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        failures: list[str] = []
        for info, inf in self.kinds.tracked():
            objs = inf.cache.list(namespace)
            if not objs:
                continue
            resource = f"{info.plural}.{group_of(info.api_version)}"
            remaining[resource] = len(objs)
            for obj in objs:
                meta = obj["metadata"]
                for f in meta.get("finalizers") or []:
                    finalizers[f] = finalizers.get(f, 0) + 1
                if meta.get("deletionTimestamp"):
                    continue
                try:
                    self.client.delete(
                        info.api_version,
                        info.kind,
                        meta["name"],
                        namespace,
                        propagation_policy="Background",
                        precondition_uid=meta.get("uid"),
                    )
                except (errors.NotFound, errors.Conflict):
                    pass  # gone already, or replaced (the replacement is seen next pass)
                except errors.APIError as exc:
                    failures.append(f"{resource} {meta['name']}: {exc.message}")
        return remaining, finalizers, failures

    def _content_left(self, namespace: str) -> bool:
        """The caches say the namespace is empty; before its removal, which cannot be
        undone, ask the API once per kind (a cache may not have seen a late create, and a
        kind may have appeared since the last discovery)."""
        self.kinds.refresh()
        for info, inf in self.kinds.tracked():
            if not inf.has_synced():
                return True
            try:
                page = self.client.list(info.api_version, info.kind, namespace, limit=1)
            except errors.NotFound:
                continue  # the kind stopped being served
            if page.get("items"):
                return True
        return False

    def _report(self, ns: Obj, remaining: dict[str, int], finalizers: dict[str, int], failures: list[str]) -> None:
        status = ns.get("status") or {}
        old = status.get("conditions") or []
        conditions = list(old)
        for cond in deletion_conditions(remaining, finalizers, failures):
            conditions = set_condition(conditions, cond)
        if conditions == old:
            return
        try:
            self.client.update_status(
                {**ns, "status": {**status, "conditions": conditions}}, field_manager=FIELD_MANAGER
            )
        except errors.NotFound:
            pass


def deletion_conditions(remaining: dict[str, int], finalizers: dict[str, int], failures: list[str]) -> list[Obj]:
    """The conditions Kubernetes' namespace controller reports on a terminating namespace
    (discovery and group-version parsing cannot fail here: they are constant)."""

    def cond(ctype: str, true: bool, reason: str, message: str) -> Obj:
        return {"type": ctype, "status": "True" if true else "False", "reason": reason, "message": message}

    def counted(items: dict[str, int], fmt: str) -> str:
        return ", ".join(fmt.format(k, n) for k, n in sorted(items.items()))

    return [
        cond(
            "NamespaceDeletionDiscoveryFailure", False, "ResourcesDiscovered", "All resources successfully discovered"
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            False,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        cond(
            "NamespaceDeletionContentFailure",
            True,
            "ContentDeletionFailed",
            f"Failed to delete all resource types, {len(failures)} remaining: {'; '.join(failures)}",
        )
        if failures
        else cond(
            "NamespaceDeletionContentFailure",
            False,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        cond(
            "NamespaceContentRemaining",
            True,
            "SomeResourcesRemain",
            "Some resources are remaining: " + counted(remaining, "{} has {} resource instances"),
        )
        if remaining
        else cond("NamespaceContentRemaining", False, "ContentRemoved", "All content successfully removed"),
        cond(
            "NamespaceFinalizersRemaining",
            True,
            "SomeFinalizersRemain",
            "Some content in the namespace has finalizers remaining: "
            + counted(finalizers, "{} in {} resource instances"),
        )
        if finalizers
        else cond(
            "NamespaceFinalizersRemaining",
            False,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    ]


def new(ctx: ControllerContext) -> NamespaceController:
    return NamespaceController(ctx)
