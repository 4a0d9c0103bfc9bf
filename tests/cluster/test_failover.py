"""Node loss and failover on the replicated stack, under a steady stream of events.

Each scenario streams events into the stack's API (`STACK_TOPOLOGY=cluster scripts/stack up`,
see conftest.py) while one of the stack's own drills breaks the cluster, then judges from
PostgreSQL, as the chaos scenarios do (tests/chaos/harness.py), that every accepted event was
processed exactly once: each user's score equals the sum of its events' changes. The stack's
processes are never restarted: the API, its relay, the workers and the scaler must find the
surviving brokers and the new primary by themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from conversation_events.messaging.policy import ManagementApi
from tests.chaos import harness
from tests.chaos.harness import (
    DRAIN_TIMEOUT_S,
    RecoveryClock,
    Stream,
    api_metric,
    assert_exactly_once,
    finish,
    make_events,
)
from tests.cluster.conftest import QUEUE, ROOT, ClusterStack
from tests.support.services import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

#: 1,200 events at 40/s: a 30 s stream per scenario, four scenarios within the suite's budget.
EVENTS = int(os.environ.get("CLUSTER_EVENTS", "1200"))
RATE = float(os.environ.get("CLUSTER_RATE", "40"))
USERS = 100
GIVE_UP = 240.0  # seconds for a stream to finish, faults included


@dataclasses.dataclass
class Run:
    stream: Stream
    recovery_s: float | None
    during: dict[str, int]  # what the stream got while the fault lasted
    drill: dict[str, object]


def under_stream(
    stack: ClusterStack,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    *,
    seed: int,
    fault: Callable[[], dict[str, object]],
    events: int = EVENTS,
    fault_after: float = 0.25,
) -> tuple[Run, harness.Verdict]:
    """Stream `events`; once `fault_after` of them are accepted run `fault` (it returns when the
    fault is over); then clock the recovery, drain and judge."""
    assert stack.whole(), f"the cluster is not whole before the scenario: {stack.topology()}"
    monkeypatch.setattr(harness, "MANAGEMENT_URL", stack.management_url())
    redelivered_before = harness.broker_redeliveries(QUEUE)
    bodies = make_events(events, USERS, seed=seed)
    stream = Stream(stack.base_url, stack.api_key, bodies, rate=RATE).start()
    deadline = time.monotonic() + 60
    while stream.accepted_count() < events * fault_after:
        assert time.monotonic() < deadline, f"stream not under way: {dict(stream.statuses)}"
        time.sleep(0.1)
    accepted, answered_503 = stream.accepted_count(), stream.statuses.get("503", 0)
    drill = fault()
    during = {
        "accepted": stream.accepted_count() - accepted,
        "answered_503": stream.statuses.get("503", 0) - answered_503,
    }
    clock = RecoveryClock(engine, stream, DRAIN_TIMEOUT_S).start()
    stream.join(GIVE_UP)
    recovery = clock.result()
    monkeypatch.setattr(harness, "MANAGEMENT_URL", stack.management_url())
    verdict = harness.wait_and_judge(
        engine, bodies, stream.accepted_ids(), DRAIN_TIMEOUT_S, queue=QUEUE
    )
    # The broker's count restarts when the queue's leader moves: never below zero.
    redelivered = max(0, verdict.redelivered - redelivered_before)
    verdict = dataclasses.replace(verdict, redelivered=redelivered)
    return Run(stream, recovery, during, drill), verdict


#: `under_stream` on the module's stack and its database: `stream(seed=..., fault=...)`.
StreamThrough = Callable[..., tuple[Run, harness.Verdict]]


@pytest.fixture
def stream(
    cluster_stack: ClusterStack, cluster_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> StreamThrough:
    return functools.partial(under_stream, cluster_stack, cluster_engine, monkeypatch)


def heal(stack: ClusterStack) -> None:
    """Start any node that is down, so the next scenario begins with the whole cluster."""
    for node in stack.topology()["rabbitmq"]["nodes"]:
        if not node["running"]:
            stack.drill("start-broker-node", str(node["node"]))
    wait_for(stack.whole, timeout=90, interval=0.5, what="the whole cluster again")


def judge(
    name: str,
    meaning: str,
    run: Run,
    verdict: harness.Verdict,
    stack: ClusterStack,
    **extra: object,
) -> None:
    report = finish(
        name, [run.stream], verdict, run.recovery_s, meaning, **{**run.during, **run.drill, **extra}
    )
    assert_exactly_once(report, [run.stream], verdict)
    assert stack.api_key not in stack.logs(), "the API key appears in a process log"


def test_quorum_leader_node_killed(cluster_stack: ClusterStack, stream: StreamThrough) -> None:
    try:
        run, verdict = stream(seed=101, fault=lambda: cluster_stack.drill("kill-broker-leader"))
    finally:
        heal(cluster_stack)
    judge(
        "cluster 1. leader node SIGKILL",
        "kill → every event accepted by then PROCESSED",
        run,
        verdict,
        cluster_stack,
    )
    assert run.drill["new_leader"] != run.drill["killed"]


def test_follower_stopped_and_restarted(cluster_stack: ClusterStack, stream: StreamThrough) -> None:
    _, followers = cluster_stack.node_indices()
    try:
        run, verdict = stream(
            seed=102, fault=lambda: cluster_stack.drill("restart-broker-node", str(followers[0]))
        )
    finally:
        heal(cluster_stack)
    judge(
        "cluster 2. follower restarted",
        "node back → every event accepted by then PROCESSED",
        run,
        verdict,
        cluster_stack,
    )


def at_once(stack: ClusterStack, command: str, nodes: list[int]) -> dict[str, object]:
    """Run a node drill on several nodes at once (a node starting waits for its peers)."""
    procs = [
        subprocess.Popen(
            [str(ROOT / "scripts" / "stack"), command, str(n)],
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in nodes
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{command} failed:\n{out}\n{err}"
    return {command: nodes}


def test_two_of_three_nodes_down(cluster_stack: ClusterStack, stream: StreamThrough) -> None:
    """No majority for the queue: the API must answer 202 (into the outbox) or 503, never
    another 5xx, and everything accepted is processed once the nodes are back."""
    leader, followers = cluster_stack.node_indices()
    down = [leader, followers[0]]

    def outage() -> dict[str, object]:
        at_once(cluster_stack, "stop-broker-node", down)
        threading.Event().wait(10.0)  # the outage itself: one node of three left
        return at_once(cluster_stack, "start-broker-node", down)

    def republished() -> float:
        return api_metric(cluster_stack.base_url, "conversation_events_relay_republished_total")

    before = republished()
    try:
        # Early and longer than the others: two clean stops, the outage and two starts take
        # 30-50 s here, and events must keep arriving throughout.
        run, verdict = stream(
            seed=103,
            fault=outage,
            events=int(EVENTS * 5 / 3),
            fault_after=0.05,
        )
    finally:
        heal(cluster_stack)
    relay_republished = int(republished() - before)
    run.drill["relay_republished"] = relay_republished
    judge(
        "cluster 3. two of three nodes down",
        "nodes back → every event accepted by then PROCESSED",
        run,
        verdict,
        cluster_stack,
        stopped=down,
    )
    assert run.during["accepted"] > 0, "the API must keep accepting into the outbox"
    assert relay_republished > 0, "the outage kept no event in the outbox"


def test_postgresql_primary_killed_and_standby_promoted(
    cluster_stack: ClusterStack, stream: StreamThrough
) -> None:
    before = cluster_stack.topology()["postgresql"]["primary"]
    run, verdict = stream(seed=104, fault=lambda: cluster_stack.drill("failover-database"))
    judge(
        "cluster 4. PostgreSQL failover",
        "standby streaming again → every event accepted by then PROCESSED",
        run,
        verdict,
        cluster_stack,
    )
    after = cluster_stack.topology()["postgresql"]
    assert after["primary"] != before
    assert cluster_stack.whole(), after


def test_the_management_api_of_a_dead_node_is_passed_over(cluster_stack: ClusterStack) -> None:
    """The scaler and the queue policy have every node's management API: with the first node
    (the one they read before any fault) down, both go through another."""
    status_file = cluster_stack.state / "scaler-status.json"
    nodes = sorted(cluster_stack.topology()["rabbitmq"]["nodes"], key=lambda n: n["node"])
    urls = [f"http://127.0.0.1:{n['management_port']}" for n in nodes]
    try:
        cluster_stack.drill("stop-broker-node", "1")
        stopped = time.time()

        def fresh_read() -> dict[str, Any] | None:
            status = json.loads(status_file.read_text())
            read_at = datetime.fromisoformat(status["updated_at"]).timestamp()
            return status if read_at > stopped and status["queue"]["ok"] else None

        status: dict[str, Any] = wait_for(
            fresh_read, timeout=60, interval=0.5, what="a scaler read after the stop"
        )
        assert status["queue"]["consecutive_failures"] == 0
        # What the API and the workers do with CE_MANAGEMENT_URL, read-only here.
        api = ManagementApi.for_broker(",".join(urls), "amqp://guest:guest@127.0.0.1/%2F")
        assert api.request("GET", "queues", api.vhost, QUEUE).json()["name"] == QUEUE
        assert api.base_url != urls[0]
    finally:
        heal(cluster_stack)
