"""The broker's topology changed under a live pipeline: a binding, a queue, the queue policy.

The faults are made on the scenario's own exchange and queue, through a channel of the test's
or by restarting the processes with other settings; the rest is the `Scenario`'s.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import httpx
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from conversation_events.messaging.topology import Topology
from conversation_events_worker.broker import declare_topology
from tests.chaos.harness import MANAGEMENT_URL, SHORT_EVENTS, Fault, Fleet, Scenario, api_metric
from tests.support.services import AMQP_URL, delivery_limit_in_force, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]

#: Messages that vanish with a queue are found again by the relay's re-drive by age.
REDRIVE_SOON = {"CE_RELAY_REDRIVE_AFTER_S": "5"}


@contextlib.contextmanager
def broker_channel() -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        yield connection.channel()
    finally:
        connection.close()


def topology_of(scenario: Scenario) -> Topology:
    return Topology(scenario.env["CE_EXCHANGE_NAME"], scenario.queue, 1)


def resubscribed(fleet: Fleet, reason: str) -> int:
    """How often the running workers consumed again: `cancelled` by the broker, or `idle`."""
    return int(
        fleet.worker_metric(f'conversation_events_consumer_resubscribed_total{{reason="{reason}"}}')
    )


def consumers_moved(fleet: Fleet) -> dict[str, int]:
    """The report's figures of a deleted queue: the workers' two kinds of re-subscription, and
    the events the relay re-drove."""
    return {
        "resubscribed_cancelled": resubscribed(fleet, "cancelled"),
        "resubscribed_idle": resubscribed(fleet, "idle"),
        "relay_republished": fleet.relay_republished(),
    }


# --- 5. the queue unbound while posting ---------------------------------------------------------


def test_queue_unbound_while_posting_then_rebound(scenario: Scenario) -> None:
    """Publishes are returned as unroutable meanwhile: failures the relay republishes."""
    topology = topology_of(scenario)

    def unbind() -> None:
        with broker_channel() as channel:
            channel.queue_unbind(topology.queue, topology.exchange, topology.routing_key)

    def rebind() -> None:
        with broker_channel() as channel:
            channel.queue_bind(topology.queue, topology.exchange, topology.routing_key)

    fleet = scenario.fleet()
    run = scenario.run(fleet, [Fault(unbind, rebind, seconds=4.0)], seed=5)
    returned = api_metric(fleet.base, "conversation_events_publish_failures_total")
    report = run.report(
        "5. queue unbound 4 s",
        "rebound → every event accepted by then PROCESSED",
        accepted_while_unbound=run.during,
        publish_failures=int(returned),
        relay_republished=fleet.relay_republished(),
    )
    assert returned > 0, "publishes while the queue was unbound must count as failures"
    scenario.assert_exactly_once(run, report)


# --- 6 and 7. the queue deleted (and re-declared) under the workers ------------------------------


def delete_queue(topology: Topology, *, redeclare: bool) -> Callable[[], None]:
    def fault() -> None:
        with broker_channel() as channel:
            channel.queue_delete(topology.queue)
            if redeclare:  # at once, as a publisher re-declaring its topology would
                declare_topology(channel, topology)

    return fault


def test_queue_deleted_during_the_stream(scenario: Scenario) -> None:
    """The workers re-declare and resume; events whose messages vanished are re-driven."""
    topology = topology_of(scenario)
    fleet = scenario.fleet(scenario.env | REDRIVE_SOON)
    run = scenario.run(fleet, [Fault(delete_queue(topology, redeclare=False))], seed=6)
    moved = resubscribed(fleet, "cancelled") + resubscribed(fleet, "idle")
    report = run.report(
        "6. queue deleted",
        "deletion → every event accepted by then PROCESSED",
        **consumers_moved(fleet),
    )
    # RabbitMQ cancels the consumers, or, when the API's publisher re-declares the queue at
    # once (its robust channel restores its topology after the broker closed its connection
    # with INTERNAL_ERROR for publishing into the deleted queue), leaves them starved until
    # they move to a fresh channel after CE_WORKER_IDLE_RESUBSCRIBE_S (15 s).
    assert moved >= 1, "the deletion must have made a worker consume again"
    scenario.assert_exactly_once(run, report)


def test_queue_deleted_and_redeclared_under_a_live_worker(scenario: Scenario) -> None:
    """RabbitMQ 3.10 may leave the consumer registered but starved: the worker must notice."""
    topology = topology_of(scenario)
    # The worker moves to a fresh channel after this long without a delivery (default 15 s).
    fleet = scenario.fleet(scenario.env | REDRIVE_SOON | {"CE_WORKER_IDLE_RESUBSCRIBE_S": "3"})
    run = scenario.run(fleet, [Fault(delete_queue(topology, redeclare=True))], seed=7)
    report = run.report(
        "7. queue deleted and re-declared",
        "re-declaration → every event accepted by then PROCESSED",
        # Idle moves also happen routinely once the stream has drained.
        **consumers_moved(fleet),
    )
    scenario.assert_exactly_once(run, report)


# --- 8. the delivery limit changed between restarts, and back -----------------------------------


class ApiConnections:
    """Samples how many AMQP connections the scenario's API processes hold (management API).

    The API names its connection `conversation-events-api <host>[<pid>] <queue>`.
    """

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="amqp-connections", daemon=True)

    def count(self) -> int:
        response = httpx.get(
            f"{MANAGEMENT_URL}/api/connections",
            params={"columns": "name,client_properties"},
            auth=("guest", "guest"),
            timeout=5,
        )
        response.raise_for_status()
        return sum(
            1
            for connection in response.json()
            if str((connection.get("client_properties") or {}).get("connection_name", "")).endswith(
                f" {self.queue}"
            )
        )

    def _sample(self) -> None:
        while not self._stop.wait(0.5):  # a sampling period, not a synchronisation
            self.most = max(self.most, self.count())

    def __enter__(self) -> ApiConnections:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_delivery_limit_changed_between_restarts_and_back(scenario: Scenario) -> None:
    """A new CE_DELIVERY_LIMIT is a new policy: no PRECONDITION_FAILED, no leaked connection.

    Workers are replaced rolling (new ones ready before the old ones drain); the API is stopped
    and started on the same port, so producers meet refused connections and retry them.
    """
    env, queue = scenario.env, scenario.queue
    fleet = scenario.fleet(env | {"CE_DELIVERY_LIMIT": "50"})
    wait_for(lambda: delivery_limit_in_force(queue) == 50, timeout=30, what="the first policy")
    seen: list[int | None] = []

    def switch_to(limit: int) -> Callable[[], None]:
        def restart() -> None:
            changed = env | {"CE_DELIVERY_LIMIT": str(limit)}
            fleet.replace_workers(changed)
            fleet.restart_api(changed)
            seen.append(
                wait_for(
                    lambda: delivery_limit_in_force(queue) == limit and limit,
                    timeout=30,
                    what=f"delivery limit {limit} in force",
                )
            )

        return restart

    with ApiConnections(queue) as connections:
        run = scenario.run(
            fleet,
            [Fault(switch_to(7), seconds=3.0), Fault(switch_to(50))],
            seed=8,
            events=SHORT_EVENTS * 2,
        )
        wait_for(lambda: connections.count() == 1, timeout=30, what="one API connection")
    refused = ("PRECONDITION_FAILED", "PRECONDITION-FAILED", "inequivalent arg")
    report = run.report(
        "8. delivery limit 50 → 7 → 50 (restarts)",
        "last restart → every event accepted by then PROCESSED",
        limits_in_force=seen,
        most_api_amqp_connections=connections.most,
        posts_retried_after_connection_errors=run.stream.connection_errors(),
    )
    logs = fleet.logs()
    assert not [word for word in refused if word in logs], "a declaration was refused"
    assert seen == [7, 50]
    # One API process at a time; the stopping one's connection may linger a moment.
    assert connections.most <= 2, f"API AMQP connections rose to {connections.most}"
    scenario.assert_exactly_once(run, report, connection_errors_expected=True)
