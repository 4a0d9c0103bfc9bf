"""What the API's publisher does when the broker returns messages or refuses the topology."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pika
import pytest
from sqlalchemy import Engine
from tests.integration.api.test_accept import assert_relayed, stored_row
from tests.support.payloads import conversation
from tests.support.services import AMQP_URL, wait_for

MANAGEMENT_URL = "http://127.0.0.1:15672"


def metric(client: httpx.Client, sample: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def set_binding(names: tuple[str, str], bound: bool) -> None:
    exchange, queue = names
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        if bound:
            channel.queue_bind(queue, exchange, routing_key=queue)
        else:
            channel.queue_unbind(queue, exchange, routing_key=queue)
    finally:
        connection.close()


def test_returned_publishes_are_failures_logged_once_and_republished_once_routed(
    make_client: Callable[..., httpx.Client],
    engine: Engine,
    names: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    set_binding(names, bound=False)  # the exchange now routes our messages to no queue
    returned = 'conversation_events_publish_failures_total{reason="returned"}'
    before = metric(client, returned)
    caplog.set_level(logging.WARNING, logger="conversation_events_api.publisher")

    bodies = [conversation() for _ in range(5)]
    for body in bodies:
        assert client.post("/v1/conversations/end", json=body).status_code == 202
    # The relay (every 0.2 s, after 1 s) keeps trying them: more returns, still no record.
    wait_for(
        lambda: metric(client, returned) >= before + 2 * len(bodies),
        timeout=15,
        what="the publisher's and then the relay's publishes to be returned",
    )
    assert all(stored_row(engine, b["conversation_id"])["published_at"] is None for b in bodies)
    lines = [r for r in caplog.records if getattr(r, "cause", None) == "returned"]
    assert len(lines) == 1, [r.__dict__ for r in lines]

    set_binding(names, bound=True)
    assert_relayed(
        engine,
        bodies,
        names[1],
        timeout=15,
        what="republish the returned events once the queue is bound again",
    )


def api_connections(queue: str) -> list[dict]:
    """The broker's connections named after this test's API (see `create_app`)."""
    response = httpx.get(f"{MANAGEMENT_URL}/api/connections", auth=("guest", "guest"), timeout=5)
    response.raise_for_status()
    return [
        c
        for c in response.json()
        if (c.get("client_properties") or {}).get("connection_name", "").endswith(f" {queue}")
    ]


def max_count_while(count: Callable[[], int], seconds: float) -> int:
    """The largest value `count` returns when sampled for `seconds` (an observation window)."""
    deadline = time.monotonic() + seconds
    largest = 0
    while time.monotonic() < deadline:
        largest = max(largest, count())
        time.sleep(0.5)
    return largest


def test_a_refused_declaration_closes_its_connection_and_names_the_mismatch(
    make_client: Callable[..., httpx.Client],
    names: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = names[1]
    try:
        api_connections(queue)
    except httpx.HTTPError as exc:
        pytest.skip(f"RabbitMQ management API not reachable: {exc}")
    # A queue left with an argument the product does not declare: every declare is refused.
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_declare(
            queue, durable=True, arguments={"x-queue-type": "quorum", "x-max-length": 10}
        )
    finally:
        connection.close()
    caplog.set_level(logging.ERROR, logger="conversation_events_api.publisher")

    client = make_client(require_broker=False)

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "refused the topology" in r.getMessage()]

    # Retries back off 0.5, 1, 2, 4 s: four refused declarations within about 8 s.
    wait_for(lambda: len(refusals()) >= 4, timeout=20, what="four refused declarations")
    error = refusals()[-1].__dict__["error"]
    # Names the argument in dispute (which one depends on the arguments the product sends).
    assert "PRECONDITION_FAILED - inequivalent arg 'x-" in error and queue in error
    # Without the close each retry left one more connection open (one per refusal). The
    # management API lists a connection only once its statistics arrive (every few seconds),
    # so watch the count through two more retries (4 and 8 s) instead of reading it once.
    seen = max_count_while(lambda: len(api_connections(queue)), seconds=12)
    assert seen <= 1, f"{seen} API connections open at once"
    assert client.get("/readyz").json()["broker"] == "unavailable"

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()
    wait_for(
        lambda: client.get("/readyz").json()["broker"] == "ok",
        timeout=20,
        what="the publisher to declare once the conflicting queue is gone",
    )
    wait_for(lambda: len(api_connections(queue)) == 1, timeout=10, what="one API connection")
