"""The broker's topology changed under a live pipeline: a binding, a queue, the queue policy.

Each scenario runs its own API and workers on its own queue through the shared sequence
(`through_faults`), and ends with the exactly-once verdict and its row of the report table.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import httpx
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine

from conversation_events.messaging.topology import Topology
from conversation_events_worker.broker import declare_topology
from tests.chaos.harness import (
    MANAGEMENT_URL,
    SHORT_EVENTS,
    SHORT_RATE,
    USERS,
    Fault,
    Fleet,
    api_metric,
    assert_exactly_once,
    assert_key_never_logged,
    finish,
    make_events,
    through_faults,
)
from tests.support.processes import Service
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


def topology_of(env: dict[str, str]) -> Topology:
    return Topology(env["CE_EXCHANGE_NAME"], env["CE_QUEUE_NAME"], 1)


def resubscribed(fleet: Fleet, reason: str) -> int:
    """How often the running workers consumed again: `cancelled` by the broker, or `idle`."""
    return int(
        fleet.worker_metric(f'conversation_events_consumer_resubscribed_total{{reason="{reason}"}}')
    )


# --- 5. the queue unbound while posting ---------------------------------------------------------


def test_queue_unbound_while_posting_then_rebound(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    """Publishes are returned as unroutable meanwhile: failures the relay republishes."""
    topology = topology_of(env)

    def unbind() -> None:
        with broker_channel() as channel:
            channel.queue_unbind(topology.queue, topology.exchange, topology.routing_key)

    def rebind() -> None:
        with broker_channel() as channel:
            channel.queue_bind(topology.queue, topology.exchange, topology.routing_key)

    fleet = Fleet.start(services, env)
    run = through_faults(
        fleet,
        engine,
        make_events(SHORT_EVENTS, USERS, seed=5),
        [Fault(unbind, rebind, seconds=4.0)],
        queue=topology.queue,
        rate=SHORT_RATE,
    )
    returned = api_metric(fleet.base, "conversation_events_publish_failures_total")
    report = finish(
        "5. queue unbound 4 s",
        [run.stream],
        run.verdict,
        run.recovery_s,
        "rebound → every event accepted by then PROCESSED",
        accepted_while_unbound=run.during,
        publish_failures=int(returned),
        relay_republished=int(
            api_metric(fleet.base, "conversation_events_relay_republished_total")
        ),
    )
    assert returned > 0, "publishes while the queue was unbound must count as failures"
    assert_exactly_once(report, [run.stream], run.verdict)
    assert_key_never_logged(services)


# --- 6 and 7. the queue deleted (and re-declared) under the workers ------------------------------


def delete_queue(topology: Topology, *, redeclare: bool) -> Callable[[], None]:
    def fault() -> None:
        with broker_channel() as channel:
            channel.queue_delete(topology.queue)
            if redeclare:  # at once, as a publisher re-declaring its topology would
                declare_topology(channel, topology)

    return fault


def test_queue_deleted_during_the_stream(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    """The workers re-declare and resume; events whose messages vanished are re-driven."""
    topology = topology_of(env)
    fleet = Fleet.start(services, env | REDRIVE_SOON)
    run = through_faults(
        fleet,
        engine,
        make_events(SHORT_EVENTS, USERS, seed=6),
        [Fault(delete_queue(topology, redeclare=False))],
        queue=topology.queue,
        rate=SHORT_RATE,
    )
    moved = resubscribed(fleet, "cancelled") + resubscribed(fleet, "idle")
    report = finish(
        "6. queue deleted",
        [run.stream],
        run.verdict,
        run.recovery_s,
        "deletion → every event accepted by then PROCESSED",
        resubscribed_cancelled=resubscribed(fleet, "cancelled"),
        resubscribed_idle=resubscribed(fleet, "idle"),
        relay_republished=int(
            api_metric(fleet.base, "conversation_events_relay_republished_total")
        ),
    )
    # RabbitMQ cancels the consumers, or, when the API's publisher re-declares the queue at
    # once (its robust channel restores its topology after the broker closed its connection
    # with INTERNAL_ERROR for publishing into the deleted queue), leaves them starved until
    # they move to a fresh channel after CE_WORKER_IDLE_RESUBSCRIBE_S (15 s).
    assert moved >= 1, "the deletion must have made a worker consume again"
    assert_exactly_once(report, [run.stream], run.verdict)
    assert_key_never_logged(services)


def test_queue_deleted_and_redeclared_under_a_live_worker(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    """RabbitMQ 3.10 may leave the consumer registered but starved: the worker must notice."""
    topology = topology_of(env)
    # The worker moves to a fresh channel after this long without a delivery (default 15 s).
    fleet = Fleet.start(services, env | REDRIVE_SOON | {"CE_WORKER_IDLE_RESUBSCRIBE_S": "3"})
    run = through_faults(
        fleet,
        engine,
        make_events(SHORT_EVENTS, USERS, seed=7),
        [Fault(delete_queue(topology, redeclare=True))],
        queue=topology.queue,
        rate=SHORT_RATE,
    )
    report = finish(
        "7. queue deleted and re-declared",
        [run.stream],
        run.verdict,
        run.recovery_s,
        "re-declaration → every event accepted by then PROCESSED",
        # Idle moves also happen routinely once the stream has drained.
        resubscribed_cancelled=resubscribed(fleet, "cancelled"),
        resubscribed_idle=resubscribed(fleet, "idle"),
        relay_republished=int(
            api_metric(fleet.base, "conversation_events_relay_republished_total")
        ),
    )
    assert_exactly_once(report, [run.stream], run.verdict)
    assert_key_never_logged(services)


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


def test_delivery_limit_changed_between_restarts_and_back(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    """A new CE_DELIVERY_LIMIT is a new policy: no PRECONDITION_FAILED, no leaked connection.

    Workers are replaced rolling (new ones ready before the old ones drain); the API is stopped
    and started on the same port, so producers meet refused connections and retry them.
    """
    queue = env["CE_QUEUE_NAME"]
    before = env | {"CE_DELIVERY_LIMIT": "50"}
    fleet = Fleet.start(services, before)
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
        run = through_faults(
            fleet,
            engine,
            make_events(SHORT_EVENTS * 2, USERS, seed=8),
            [Fault(switch_to(7), seconds=3.0), Fault(switch_to(50))],
            queue=queue,
            rate=SHORT_RATE,
        )
        wait_for(lambda: connections.count() == 1, timeout=30, what="one API connection")
    refused = ("PRECONDITION_FAILED", "PRECONDITION-FAILED", "inequivalent arg")
    report = finish(
        "8. delivery limit 50 → 7 → 50 (restarts)",
        [run.stream],
        run.verdict,
        run.recovery_s,
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
    assert_exactly_once(report, [run.stream], run.verdict, connection_errors_expected=True)
    assert_key_never_logged(services)
