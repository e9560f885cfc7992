"""`validate.podSecurity`: the Pod Security Standards (baseline and restricted, latest
version) checked on a Pod or the pod template of a controller, with Kyverno's
`exclude` entries (a control, optionally only for some container images).

Each check reports violations tagged with the control name and, for container fields,
the container's image, so an exclusion can waive exactly what it names: an exclusion
without `images` waives the pod-level fields of that control, one with `images` the
fields of matching containers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policies.kyverno.context import pod_spec
from policies.kyverno.values import wildcard_match
from policies.types import Obj

_BASELINE_CAPS = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


@dataclass(frozen=True, slots=True)
class Violation:
    control: str
    field: str
    image: str | None  # None for pod-level fields


Container = tuple[str, Obj, Obj]  # path, container, its securityContext


def _containers(spec: Obj) -> list[Container]:
    """Every container of the pod spec, listed once per check run rather than per check."""
    out = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(spec.get(field) or []):
            if isinstance(c, dict):
                out.append((f"spec.{field}[{i}]", c, _sc(c)))
    return out


def _sc(obj: Obj) -> Obj:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _image(c: Obj) -> str:
    return str(c.get("image", ""))


def _host_process(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    if (_sc(spec).get("windowsOptions") or {}).get("hostProcess") is True:
        out.append(Violation("HostProcess", "spec.securityContext.windowsOptions.hostProcess", None))
    for path, c, sc in containers:
        if (sc.get("windowsOptions") or {}).get("hostProcess") is True:
            out.append(Violation("HostProcess", f"{path}.securityContext.windowsOptions.hostProcess", _image(c)))


def _host_namespaces(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            out.append(Violation("Host Namespaces", f"spec.{field}", None))


def _privileged(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for path, c, sc in containers:
        if sc.get("privileged") is True:
            out.append(Violation("Privileged Containers", f"{path}.securityContext.privileged", _image(c)))


def _capabilities_baseline(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for path, c, sc in containers:
        for cap in (sc.get("capabilities") or {}).get("add") or []:
            if cap not in _BASELINE_CAPS:
                out.append(Violation("Capabilities", f"{path}.securityContext.capabilities.add", _image(c)))
                break


def _host_path(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for i, v in enumerate(spec.get("volumes") or []):
        if isinstance(v, dict) and v.get("hostPath") is not None:
            out.append(Violation("HostPath Volumes", f"spec.volumes[{i}].hostPath", None))


def _host_ports(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for path, c, _ in containers:
        for j, port in enumerate(c.get("ports") or []):
            if isinstance(port, dict) and port.get("hostPort") not in (None, 0):
                out.append(Violation("Host Ports", f"{path}.ports[{j}].hostPort", _image(c)))


def _app_armor(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(_APPARMOR_PREFIX) and not (value == "runtime/default" or str(value).startswith("localhost/")):
            out.append(Violation("AppArmor", f"metadata.annotations[{key}]", None))
    profile = _sc(spec).get("appArmorProfile") or {}
    if profile.get("type") not in (None, "RuntimeDefault", "Localhost"):
        out.append(Violation("AppArmor", "spec.securityContext.appArmorProfile.type", None))
    for path, c, sc in containers:
        profile = sc.get("appArmorProfile") or {}
        if profile.get("type") not in (None, "RuntimeDefault", "Localhost"):
            out.append(Violation("AppArmor", f"{path}.securityContext.appArmorProfile.type", _image(c)))


def _selinux(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    def bad(opts: Any) -> bool:
        if not isinstance(opts, dict):
            return False
        return str(opts.get("type") or "") not in _SELINUX_TYPES or bool(opts.get("user")) or bool(opts.get("role"))

    if bad(_sc(spec).get("seLinuxOptions")):
        out.append(Violation("SELinux", "spec.securityContext.seLinuxOptions", None))
    for path, c, sc in containers:
        if bad(sc.get("seLinuxOptions")):
            out.append(Violation("SELinux", f"{path}.securityContext.seLinuxOptions", _image(c)))


def _proc_mount(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for path, c, sc in containers:
        if sc.get("procMount") not in (None, "Default"):
            out.append(Violation("/proc Mount Type", f"{path}.securityContext.procMount", _image(c)))


def _seccomp_baseline(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    if (_sc(spec).get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append(Violation("Seccomp", "spec.securityContext.seccompProfile.type", None))
    for path, c, sc in containers:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(Violation("Seccomp", f"{path}.securityContext.seccompProfile.type", _image(c)))


def _sysctls(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for i, s in enumerate(_sc(spec).get("sysctls") or []):
        if isinstance(s, dict) and s.get("name") not in _SAFE_SYSCTLS:
            out.append(Violation("Sysctls", f"spec.securityContext.sysctls[{i}].name", None))


def _volume_types(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    for i, v in enumerate(spec.get("volumes") or []):
        if isinstance(v, dict) and any(k not in _RESTRICTED_VOLUMES and k != "name" for k in v):
            out.append(Violation("Volume Types", f"spec.volumes[{i}]", None))


def _windows(spec: Obj) -> bool:
    return ((spec.get("os") or {}).get("name")) == "windows"


def _privilege_escalation(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    if _windows(spec):
        return
    for path, c, sc in containers:
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(Violation("Privilege Escalation", f"{path}.securityContext.allowPrivilegeEscalation", _image(c)))


def _run_as_non_root(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    pod_level = _sc(spec).get("runAsNonRoot")
    if pod_level is False:
        out.append(Violation("Running as Non-root", "spec.securityContext.runAsNonRoot", None))
    for path, c, sc in containers:
        value = sc.get("runAsNonRoot")
        if value is False or (value is None and pod_level is not True):
            out.append(Violation("Running as Non-root", f"{path}.securityContext.runAsNonRoot", _image(c)))


def _run_as_user(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    if _sc(spec).get("runAsUser") == 0:
        out.append(Violation("Running as Non-root user", "spec.securityContext.runAsUser", None))
    for path, c, sc in containers:
        if sc.get("runAsUser") == 0:
            out.append(Violation("Running as Non-root user", f"{path}.securityContext.runAsUser", _image(c)))


def _seccomp_restricted(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    if _windows(spec):
        return
    allowed = ("RuntimeDefault", "Localhost")
    pod_type = (_sc(spec).get("seccompProfile") or {}).get("type")
    if pod_type is not None and pod_type not in allowed:
        out.append(Violation("Seccomp", "spec.securityContext.seccompProfile.type", None))
    for path, c, sc in containers:
        ctype = (sc.get("seccompProfile") or {}).get("type")
        if (ctype is not None and ctype not in allowed) or (ctype is None and pod_type not in allowed):
            out.append(Violation("Seccomp", f"{path}.securityContext.seccompProfile.type", _image(c)))


def _capabilities_restricted(meta: Obj, spec: Obj, containers: list[Container], out: list[Violation]) -> None:
    if _windows(spec):
        return
    for path, c, sc in containers:
        caps = sc.get("capabilities") or {}
        drops = [str(d) for d in caps.get("drop") or []]
        adds = [str(a) for a in caps.get("add") or []]
        if "ALL" not in drops or any(a != "NET_BIND_SERVICE" for a in adds):
            out.append(Violation("Capabilities", f"{path}.securityContext.capabilities", _image(c)))


Check = Callable[[Obj, Obj, list[Container], list[Violation]], None]  # appends what it finds
BASELINE: tuple[Check, ...] = (
    _host_process,
    _host_namespaces,
    _privileged,
    _capabilities_baseline,
    _host_path,
    _host_ports,
    _app_armor,
    _selinux,
    _proc_mount,
    _seccomp_baseline,
    _sysctls,
)
RESTRICTED: tuple[Check, ...] = (
    *(c for c in BASELINE if c not in (_capabilities_baseline, _seccomp_baseline)),
    _volume_types,
    _privilege_escalation,
    _run_as_non_root,
    _run_as_user,
    _seccomp_restricted,
    _capabilities_restricted,
)


class PodSecurity:
    """A compiled `validate.podSecurity` block."""

    def __init__(self, spec: Obj, where: str) -> None:
        level = str(spec.get("level", "")).lower()
        if level not in ("baseline", "restricted", "privileged"):
            raise ValueError(f"{where}.level: must be baseline, restricted or privileged, not {level!r}")
        self.level = level
        self.checks: tuple[Check, ...] = {"baseline": BASELINE, "restricted": RESTRICTED}.get(level, ())
        self.exclusions: list[tuple[str, list[str] | None]] = []
        for entry in spec.get("exclude") or []:
            images = entry.get("images")
            self.exclusions.append((str(entry.get("controlName", "")), [str(i) for i in images] if images else None))

    def _waived(self, v: Violation) -> bool:
        for control, images in self.exclusions:
            if control != v.control:
                continue
            if images is None and v.image is None:
                return True
            if images is not None and v.image is not None and any(wildcard_match(p, v.image) for p in images):
                return True
        return False

    def violations(self, resource: Obj, found_by: dict[Check, list[Violation]] | None = None) -> list[Violation]:
        """What the resource violates, exclusions applied. `found_by` keeps each check's
        findings for this resource: the rules of one request share it, so a control the
        baseline and restricted rules both check is checked once."""
        spec = pod_spec(resource)
        if spec is None:
            return []
        kind = resource.get("kind")
        if kind == "Pod":
            meta = resource.get("metadata") or {}
        elif kind == "CronJob":
            meta = (
                (((resource.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
            ).get("metadata") or {}
        else:
            meta = ((resource.get("spec") or {}).get("template") or {}).get("metadata") or {}
        if found_by is None:
            found_by = {}
        containers: list[Container] | None = None
        found: list[Violation] = []
        for check in self.checks:
            known = found_by.get(check)
            if known is None:
                if containers is None:
                    containers = _containers(spec)
                known = found_by[check] = []
                check(meta, spec, containers, known)
            found.extend(known)
        return [v for v in found if not self._waived(v)] if self.exclusions else found

    def message(self, violations: list[Violation]) -> str:
        controls: dict[str, list[str]] = {}
        for v in violations:
            controls.setdefault(v.control, []).append(v.field)
        parts = [f"{control} ({', '.join(fields)})" for control, fields in controls.items()]
        return f"Validation rule failed: pod does not meet the {self.level} pod security standard: " + "; ".join(parts)
