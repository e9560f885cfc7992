"""The simulated kubelet as users see it: `kubectl get pods` STATUS and READY going through
ContainerCreating, Init:0/1, Running, ErrImagePull/ImagePullBackOff, CrashLoopBackOff,
Completed and Terminating; pod IPs, readiness delays, events, graceful deletion; and the
rule file's parsing errors."""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers import errors
from controllers.cluster import EmbeddedCluster
from controllers.kubelet_rules import KubeletRules, KubeletRulesError
from controllers.manager import ClusterConfig
from controllers.tables import pod_status
from controllers.workloads.common import parse_time
from tests.conftest import Kubectl, eventually

RULES = """
backOff: {initialSeconds: 1, maxSeconds: 4}
rules:
- match: {image: "*:broken"}
  pull: {fail: true}
- match: {image: "crashy/*"}
  run: {crashAfterSeconds: 0.2, exitCode: 1}
- match: {podLabels: {simulate: slow-start}}
  start: {seconds: 1.5}
- match: {podLabels: {simulate: slow-init}, container: "setup"}
  run: {completeAfterSeconds: 1.5}
- match: {podLabels: {simulate: finish}}
  run: {completeAfterSeconds: 0.3}
- match: {podLabels: {simulate: fail}}
  run: {completeAfterSeconds: 0.3, exitCode: 3}
- match: {podLabels: {simulate: slow-stop}}
  stop: {seconds: 2}
- match: {podLabels: {simulate: unready}}
  readiness: {fail: true}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    rules = tmp_path_factory.mktemp("rules") / "kubelet-rules.yaml"
    rules.write_text(RULES)
    config = ClusterConfig.default(2)
    config.kubelet_rules = rules
    config.heartbeat_seconds = 0.5
    c = EmbeddedCluster(None, api_port=0, config=config, controllers=["nodes", "kubelet"]).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def kubectl(cluster: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("kubectl")
    return Kubectl(cluster.write_kubeconfig(tmp / "kubeconfig"), tmp)


def make_pod(name: str, image: str = "nginx:1.27", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"nodeName": "node-1", "containers": [{"name": "app", "image": image}], **spec}
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def get_pod(cluster: EmbeddedCluster, name: str) -> dict[str, Any] | None:
    try:
        return cluster.client.get("v1", "Pod", name, "default")
    except errors.NotFound:
        return None


def row(kubectl: Kubectl, name: str) -> dict[str, str]:
    """NAME READY STATUS RESTARTS of `kubectl get pod NAME -o wide`, plus IP and NODE."""
    out = kubectl("get", "pod", name, "-o", "wide", "--no-headers", check=False).split()
    if not out:
        return {}
    # RESTARTS may read "2 (3s ago)": IP and NODE are counted from the end.
    return {"ready": out[1], "status": out[2], "restarts": out[3], "ip": out[-4], "node": out[-3]}


def first_container(pod: dict[str, Any]) -> dict[str, Any]:
    """The first container's status ({} before the kubelet wrote any)."""
    return (pod.get("status", {}).get("containerStatuses") or [{}])[0]


class History:
    """Every STATUS (as kubectl computes it) a pod's status went through, from a watch."""

    def __init__(self, cluster: EmbeddedCluster, name: str) -> None:
        self.statuses: list[str] = []
        self.pods: list[dict[str, Any]] = []
        self._watch = cluster.client.watch("v1", "Pod", "default", field_selector=f"metadata.name={name}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for ev in self._watch:
            self.pods.append(ev.object)
            status = pod_status(ev.object)
            if not self.statuses or self.statuses[-1] != status:
                self.statuses.append(status)

    def stop(self) -> None:
        self._watch.stop()


@pytest.fixture
def history(cluster: EmbeddedCluster) -> Iterator[Callable[[str], History]]:
    started: list[History] = []

    def start(name: str) -> History:
        h = History(cluster, name)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def test_pod_goes_from_container_creating_to_running_with_an_ip_of_its_node(
    cluster: EmbeddedCluster, kubectl: Kubectl, history: Callable[[str], History]
) -> None:
    h = history("web")
    cluster.client.create(make_pod("web", labels={"simulate": "slow-start"}))
    running = eventually(lambda: (r := row(kubectl, "web")) and r["status"] == "Running" and r)
    assert h.statuses[-2:] == ["ContainerCreating", "Running"]
    assert running["ready"] == "1/1" and running["node"] == "node-1"
    cidr = cluster.client.get("v1", "Node", "node-1")["spec"]["podCIDR"]
    assert ipaddress.ip_address(running["ip"]) in ipaddress.ip_network(cidr)

    pod = get_pod(cluster, "web")
    assert pod is not None
    status = pod["status"]
    assert status["podIPs"] == [{"ip": running["ip"]}] and status["hostIP"] and status["startTime"]
    (cs,) = status["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("containerd://") and cs["imageID"] and cs["image"] == "nginx:1.27"
    assert "startedAt" in cs["state"]["running"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == dict.fromkeys(
        ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"], "True"
    )

    def reasons() -> set[str]:
        out = kubectl("get", "events", "--field-selector", "involvedObject.name=web", "-o", "yaml")
        return {e["reason"] for e in yaml.safe_load(out)["items"] if e["source"].get("host") == "node-1"}

    eventually(lambda: {"Pulling", "Pulled", "Created", "Started"} <= reasons())


def test_readiness_waits_for_the_probe_initial_delay(
    cluster: EmbeddedCluster, kubectl: Kubectl, history: Callable[[str], History]
) -> None:
    h = history("probed")
    probe = {"httpGet": {"path": "/", "port": 80}, "initialDelaySeconds": 2}
    pod = make_pod("probed")
    pod["spec"]["containers"][0]["readinessProbe"] = probe
    cluster.client.create(pod)
    eventually(lambda: row(kubectl, "probed").get("ready") == "1/1")
    running = [p for p in h.pods if pod_status(p) == "Running"]
    assert not first_container(running[0])["ready"]  # Running, 0/1 READY first
    status = (get_pod(cluster, "probed") or {})["status"]
    started = parse_time(status["containerStatuses"][0]["state"]["running"]["startedAt"])
    ready = parse_time(next(c for c in status["conditions"] if c["type"] == "Ready")["lastTransitionTime"])
    assert started and ready and (ready - started).total_seconds() >= 1  # 2 s, at 1 s resolution


def test_a_failing_readiness_probe_keeps_the_pod_unready(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    pod = make_pod("unready", labels={"simulate": "unready"})
    pod["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}
    cluster.client.create(pod)
    eventually(lambda: "Readiness probe failed" in kubectl("get", "events", "--field-selector", "reason=Unhealthy"))
    assert (row(kubectl, "unready")["status"], row(kubectl, "unready")["ready"]) == ("Running", "0/1")


def test_init_containers_run_first(
    cluster: EmbeddedCluster, kubectl: Kubectl, history: Callable[[str], History]
) -> None:
    h = history("with-init")
    pod = make_pod("with-init", labels={"simulate": "slow-init"})
    pod["spec"]["initContainers"] = [{"name": "setup", "image": "busybox:1.36"}]
    cluster.client.create(pod)
    eventually(lambda: row(kubectl, "with-init").get("status") == "Running")
    assert h.statuses[-3:] == ["Init:0/1", "PodInitializing", "Running"]
    status = (get_pod(cluster, "with-init") or {})["status"]
    init = status["initContainerStatuses"][0]["state"]["terminated"]
    app = status["containerStatuses"][0]["state"]["running"]
    assert init["exitCode"] == 0 and init["reason"] == "Completed"
    assert init["finishedAt"] <= app["startedAt"]


def test_failing_pull_shows_err_image_pull_then_image_pull_back_off(
    cluster: EmbeddedCluster, kubectl: Kubectl, history: Callable[[str], History]
) -> None:
    h = history("broken")
    cluster.client.create(make_pod("broken", image="nginx:broken"))
    eventually(lambda: row(kubectl, "broken").get("status") in ("ErrImagePull", "ImagePullBackOff"))
    eventually(lambda: h.statuses.count("ErrImagePull") >= 2 and "ImagePullBackOff" in h.statuses)
    first_error = h.statuses.index("ErrImagePull")
    assert "ImagePullBackOff" in h.statuses[first_error:]
    pod = get_pod(cluster, "broken")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert row(kubectl, "broken")["ready"] == "0/1"
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=broken")
    assert "Failed to pull image" in events and "Back-off pulling image" in events


def test_crashing_container_goes_into_crash_loop_back_off(
    cluster: EmbeddedCluster, kubectl: Kubectl, history: Callable[[str], History]
) -> None:
    h = history("crashy")
    cluster.client.create(make_pod("crashy", image="crashy/app"))  # untagged: pulled at every start
    eventually(lambda: row(kubectl, "crashy").get("status") == "CrashLoopBackOff")
    eventually(lambda: int(row(kubectl, "crashy")["restarts"]) >= 2, timeout=30)

    def waiting_messages() -> list[str]:
        out = []
        for p in h.pods:
            waiting = first_container(p).get("state", {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                out.append(waiting["message"].split(" restarting")[0])
        return out

    # The back-off doubles: 1s, then 2s (initialSeconds 1 in the rules).
    eventually(lambda: {"back-off 1s", "back-off 2s"} <= set(waiting_messages()))
    restarts = [first_container(p).get("restartCount", 0) for p in h.pods]
    assert restarts == sorted(restarts)
    last = (get_pod(cluster, "crashy") or {})["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (1, "Error")
    assert "Back-off restarting failed container app" in kubectl(
        "get", "events", "--field-selector", "involvedObject.name=crashy,reason=BackOff"
    )


def test_run_to_completion_ends_completed_or_error(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    cluster.client.create(make_pod("done", labels={"simulate": "finish"}, restartPolicy="Never"))
    cluster.client.create(make_pod("failed", labels={"simulate": "fail"}, restartPolicy="Never"))
    job_pod = make_pod("job-pod", restartPolicy="OnFailure")  # no rule: the built-in Job rule
    job_pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "1234", "controller": True}
    ]
    cluster.client.create(job_pod)
    eventually(lambda: row(kubectl, "done").get("status") == "Completed")
    eventually(lambda: row(kubectl, "failed").get("status") == "Error")
    eventually(lambda: row(kubectl, "job-pod").get("status") == "Completed")
    assert row(kubectl, "done")["ready"] == "0/1"
    assert (get_pod(cluster, "done") or {})["status"]["phase"] == "Succeeded"
    failed = (get_pod(cluster, "failed") or {})["status"]
    assert failed["phase"] == "Failed"
    assert failed["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_an_always_restarting_pod_restarts_after_completing(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    cluster.client.create(make_pod("again", labels={"simulate": "finish"}))  # restartPolicy Always
    eventually(lambda: int(row(kubectl, "again").get("restarts", "0").split()[0]) >= 1)
    assert (get_pod(cluster, "again") or {})["status"]["phase"] == "Running"


def test_kubectl_delete_waits_for_graceful_termination(cluster: EmbeddedCluster, kubectl: Kubectl) -> None:
    cluster.client.create(make_pod("slow-stop", labels={"simulate": "slow-stop"}))
    eventually(lambda: row(kubectl, "slow-stop").get("status") == "Running")
    started = time.monotonic()
    cmd = [kubectl.binary, "--kubeconfig", str(kubectl.kubeconfig), "delete", "pod", "slow-stop"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        eventually(lambda: (p := get_pod(cluster, "slow-stop")) and pod_status(p) == "Terminating")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert 'pod "slow-stop" deleted' in out
    assert time.monotonic() - started >= 1.5  # the rule's 2 s stop time
    assert get_pod(cluster, "slow-stop") is None
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=slow-stop,reason=Killing")
    assert "Stopping container app" in events


def test_grace_period_caps_the_stop_time(cluster: EmbeddedCluster) -> None:
    pod = make_pod("impatient", labels={"simulate": "slow-stop"}, terminationGracePeriodSeconds=1)
    pod["metadata"]["finalizers"] = ["example.com/keep"]  # keeps the finished pod around to look at
    cluster.client.create(pod)
    eventually(lambda: pod_status(get_pod(cluster, "impatient") or {}) == "Running")
    cluster.client.delete("v1", "Pod", "impatient", "default")
    # The rule's container needs 2 s to stop, the grace period is 1 s: it is killed.
    done = eventually(lambda: (p := get_pod(cluster, "impatient")) and p["status"]["phase"] == "Failed" and p)
    terminated = first_container(done)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "Error")
    assert not any(c["type"] == "Ready" and c["status"] == "True" for c in done["status"]["conditions"])
    cluster.client.patch("v1", "Pod", "impatient", {"metadata": {"finalizers": None}}, "default")
    eventually(lambda: get_pod(cluster, "impatient") is None)


def test_a_pod_being_created_is_deleted_at_once(cluster: EmbeddedCluster) -> None:
    cluster.client.create(make_pod("short-lived", image="nginx:broken"))
    eventually(lambda: pod_status(get_pod(cluster, "short-lived") or {}) == "ErrImagePull")
    cluster.client.delete("v1", "Pod", "short-lived", "default")
    eventually(lambda: get_pod(cluster, "short-lived") is None, timeout=10)


def test_pod_ips_are_unique_and_released(cluster: EmbeddedCluster) -> None:
    names = [f"ip-{i}" for i in range(5)]
    for name in names:
        cluster.client.create(make_pod(name, nodeName="node-2"))
    pods = [eventually(lambda n=n: (p := get_pod(cluster, n)) and pod_status(p) == "Running" and p) for n in names]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 5
    for name in names:
        cluster.client.delete("v1", "Pod", name, "default", grace_period_seconds=0)
    # Addresses go round the range, so a freed one is not reused at once...
    cluster.client.create(make_pod("ip-new", nodeName="node-2"))
    new = eventually(lambda: (p := get_pod(cluster, "ip-new")) and p["status"].get("podIP"))
    assert new not in ips


def test_host_network_pods_use_the_node_address(cluster: EmbeddedCluster) -> None:
    cluster.client.create(make_pod("host-net", hostNetwork=True))
    pod = eventually(lambda: (p := get_pod(cluster, "host-net")) and pod_status(p) == "Running" and p)
    assert pod["status"]["podIP"] == pod["status"]["hostIP"]


# ---------------------------------------------------------------------- rule files
def test_example_rule_file_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "kubelet-rules.yaml"
    rules = KubeletRules.load(example)
    assert rules.rules and rules.back_off.initial_seconds == 10


def test_first_matching_rule_wins_and_builtin_rules_follow() -> None:
    rules = KubeletRules.parse(yaml.safe_load(RULES))
    crashy = make_pod("x", image="crashy/app:1", labels={"simulate": "finish"})
    assert rules.behaviour(crashy, crashy["spec"]["containers"][0]).run.crash_after_seconds == 0.2
    job = make_pod("y")
    job["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "j", "uid": "u", "controller": True}]
    assert rules.behaviour(job, job["spec"]["containers"][0]).run.complete_after_seconds == 1.0
    plain = make_pod("z")
    assert rules.behaviour(plain, plain["spec"]["containers"][0]).run.exit_after(init=False) is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rules:\n- match: {image: a}\n- run: {crashAfterSeconds: soon}\n", "rules[1].run.crashAfterSeconds"),
        ("rules:\n- match: {imge: a}\n", "rules[0].match.imge: unknown field"),
        ("rules:\n- run: {crashAfterSeconds: 1, completeAfterSeconds: 2}\n", "rules[0].run: give"),
        ("backOff: {initialSeconds: 0}\n", "backOff.initialSeconds"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_rule_file_errors_name_the_file_and_field(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad-rules.yaml"
    path.write_text(text)
    with pytest.raises(KubeletRulesError) as info:
        KubeletRules.load(path)
    assert str(info.value).startswith(f"{path}: ") and error in str(info.value)


def test_a_restarted_kubelet_adopts_running_pods(tmp_path: Path) -> None:
    config = ClusterConfig.default(1)
    first = EmbeddedCluster(tmp_path, api_port=0, config=config, controllers=["nodes", "kubelet"]).start()
    try:
        first.client.create(make_pod("survivor"))
        before = eventually(lambda: (p := get_pod(first, "survivor")) and pod_status(p) == "Running" and p)
    finally:
        first.stop()
    second = EmbeddedCluster(tmp_path, api_port=0, config=config, controllers=["nodes", "kubelet"]).start()
    try:
        second.client.create(make_pod("newcomer"))
        newcomer = eventually(lambda: (p := get_pod(second, "newcomer")) and pod_status(p) == "Running" and p)
        after = get_pod(second, "survivor")
        assert after is not None and after["status"] == before["status"]  # same IP, same container, no restart
        assert newcomer["status"]["podIP"] != before["status"]["podIP"]
    finally:
        second.stop()
