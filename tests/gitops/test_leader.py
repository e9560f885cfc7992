"""Leader election on a Lease, over HTTP against the embedded API (the RemoteClient path a
real cluster uses), observed with the real kubectl."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from controllers.client import RemoteClient
from controllers.cluster import EmbeddedCluster
from controllers.nodes import micro_time
from gitops.leader import LeaderElector, LeaseConfig
from tests.conftest import Kubectl, eventually

NS = "default"


class Candidate:
    """An elector with its callbacks recorded."""

    def __init__(self, client: RemoteClient, identity: str, lease: str = "engine", **timings: float) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.leaders: list[str] = []
        cfg = LeaseConfig(lease, NS, identity, **timings)
        self.elector = LeaderElector(client, cfg, self.started.set, self.stopped.set, self.leaders.append)

    def start(self) -> Candidate:
        self.elector.start()
        return self


FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.4}


@pytest.fixture
def remote(kubeconfig: Path) -> RemoteClient:
    return RemoteClient.from_kubeconfig(str(kubeconfig))


@pytest.fixture
def candidates() -> Iterator[list[Candidate]]:
    made: list[Candidate] = []
    yield made
    for c in made:
        c.elector.stop()


def lease(kubectl: Kubectl, name: str = "engine") -> dict:
    return orjson.loads(kubectl("get", "lease", name, "-n", NS, "-o", "json"))


def parse(micro: str) -> dt.datetime:
    return dt.datetime.strptime(micro, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_first_candidate_takes_the_lease_and_renews_it(
    remote: RemoteClient, kubectl: Kubectl, candidates: list[Candidate]
) -> None:
    a = Candidate(remote, "a", **FAST).start()
    candidates.append(a)
    assert a.started.wait(20)
    assert a.elector.is_leader
    first = lease(kubectl)["spec"]
    assert first["holderIdentity"] == "a"
    assert first["leaseDurationSeconds"] == 3
    assert first["leaseTransitions"] == 0
    assert parse(first["acquireTime"]) <= parse(first["renewTime"])
    later = eventually(lambda: (s := lease(kubectl)["spec"])["renewTime"] != first["renewTime"] and s, 20)
    assert parse(later["renewTime"]) > parse(first["renewTime"])
    assert later["acquireTime"] == first["acquireTime"]  # a renewal is not a new term
    assert later["leaseTransitions"] == 0
    events = ["get", "events", "-n", NS, "--field-selector", "involvedObject.kind=Lease"]
    eventually(lambda: "a became leader" in kubectl(*events), 20, "the LeaderElection event")


def test_only_one_of_several_racing_candidates_leads(remote: RemoteClient, candidates: list[Candidate]) -> None:
    racers = [Candidate(remote, f"r{i}", **FAST) for i in range(4)]
    candidates.extend(racers)
    for c in racers:
        c.start()
    eventually(lambda: any(c.started.is_set() for c in racers), 20, "a leader")
    time.sleep(2 * FAST["lease_duration"])  # several renewals and retries later
    leading = [c for c in racers if c.started.is_set()]
    assert len(leading) == 1, [c.elector.config.identity for c in leading]
    assert not leading[0].stopped.is_set()
    assert all(c.leaders[-1] == leading[0].elector.config.identity for c in racers)


def test_clean_stop_releases_and_a_successor_takes_over_at_once(
    remote: RemoteClient, kubectl: Kubectl, candidates: list[Candidate]
) -> None:
    slow = {"lease_duration": 30.0, "renew_deadline": 20.0, "retry_period": 0.5}
    a = Candidate(remote, "a", **slow).start()
    candidates.append(a)
    assert a.started.wait(20)
    b = Candidate(remote, "b", **slow).start()
    candidates.append(b)
    time.sleep(1.5)
    assert not b.started.is_set()
    t0 = time.monotonic()
    a.elector.stop()
    assert a.stopped.is_set()
    assert b.started.wait(20)
    assert time.monotonic() - t0 < 10  # far less than the 30 s lease: it was released
    spec = lease(kubectl)["spec"]
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert spec["leaseDurationSeconds"] == 30


def test_a_dead_holder_is_replaced_after_the_lease_duration(
    remote: RemoteClient, kubectl: Kubectl, candidates: list[Candidate]
) -> None:
    """A process killed while leading leaves its Lease behind, never renewed again."""
    now = micro_time()
    kubectl.run(
        "apply",
        "-f",
        "-",
        input=orjson.dumps(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "engine", "namespace": NS},
                "spec": {
                    "holderIdentity": "dead",
                    "leaseDurationSeconds": 4,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 3,
                },
            }
        ).decode(),
    )
    t0 = time.monotonic()
    b = Candidate(remote, "b", **FAST).start()
    candidates.append(b)
    assert b.started.wait(30)
    waited = time.monotonic() - t0
    assert waited >= 4, waited  # the holder's lease duration, as observed by b
    assert b.leaders[0] == "dead"
    spec = lease(kubectl)["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 4)
    assert parse(spec["acquireTime"]) > parse(now)


def test_a_leader_that_sees_another_holder_stops_leading(
    remote: RemoteClient, kubectl: Kubectl, candidates: list[Candidate]
) -> None:
    a = Candidate(remote, "a", **FAST).start()
    candidates.append(a)
    assert a.started.wait(20)
    kubectl("patch", "lease", "engine", "-n", NS, "--type", "merge", "-p", '{"spec":{"holderIdentity":"usurper"}}')
    assert a.stopped.wait(FAST["renew_deadline"] + 10)
    assert not a.elector.is_leader
    assert lease(kubectl)["spec"]["holderIdentity"] == "usurper"  # a leader that lost does not release


def test_a_leader_cut_off_from_the_api_stops_within_the_renew_deadline(
    cluster: EmbeddedCluster, remote: RemoteClient, candidates: list[Candidate]
) -> None:
    a = Candidate(remote, "a", **FAST).start()
    candidates.append(a)
    assert a.started.wait(20)
    cluster.http.stop()
    t0 = time.monotonic()
    assert a.stopped.wait(FAST["lease_duration"] + 10)
    assert time.monotonic() - t0 < FAST["lease_duration"] + 1  # gone before anyone may take over


@pytest.mark.parametrize(
    ("timings", "message"),
    [
        ({"lease_duration": 10, "renew_deadline": 10}, "must be greater than the renew deadline"),
        ({"renew_deadline": 2, "retry_period": 2}, "must be greater than 1.2 x retry period"),
        ({"lease_duration": 0.5, "renew_deadline": 0.2, "retry_period": 0.1}, "at least 1s"),
    ],
)
def test_inconsistent_timings_are_refused(timings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LeaseConfig("engine", NS, "a", **timings)
