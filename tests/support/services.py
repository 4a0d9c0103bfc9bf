"""Real PostgreSQL and RabbitMQ for the tests: per-run databases, per-test queue names."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator
from typing import Any, Literal, TypeVar

import httpx
import orjson
import pika
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conversation_events.messaging.policy import ManagementApi, apply_queue_policy
from conversation_events.messaging.topology import Topology
from tests.support.ci import unavailable

PG_ADMIN_URL = os.environ.get(
    "TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")

T = TypeVar("T")


def require(reachable: bool, what: str) -> None:
    """Skip locally when a service is absent; fail loudly in CI, where it must be there."""
    if not reachable:
        unavailable(f"{what} is not reachable; scripts/services starts it")


def port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def create_database(prefix: str = "ce_test") -> str:
    """A fresh, migrated database; returns its SQLAlchemy URL."""
    from conversation_events.migrate import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    migrate(url, create=True, timeout_s=10)
    return url


def drop_database(url: str) -> None:
    name = make_url(url).database
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def unique_names(prefix: str = "test") -> tuple[str, str]:
    """(exchange, queue) names no other test uses."""
    suffix = uuid.uuid4().hex[:10]
    return f"{prefix}.{suffix}.exchange", f"{prefix}.{suffix}.queue"


def management_api() -> ManagementApi:
    return ManagementApi.for_broker(MANAGEMENT_URL, AMQP_URL)


def apply_policy(exchange: str, queue: str, delivery_limit: int = 50) -> Topology:
    """The product's queue policy for these names, as a process applies it on start."""
    topology = Topology(exchange, queue, delivery_limit)
    apply_queue_policy(management_api(), topology)
    return topology


def delete_topology(exchange: str, queue: str) -> None:
    """Delete the queues, exchanges and queue policy of these names."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for q in (queue, f"{queue}.dead", f"{queue}.migrating"):
            channel.queue_delete(q)
        for x in (exchange, f"{exchange}.dlx"):
            channel.exchange_delete(x)
    finally:
        connection.close()
    api = management_api()
    api.request("DELETE", "policies", api.vhost, Topology(exchange, queue, 1).policy_name)


def queue_counts(queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue via a passive declare."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        result = connection.channel().queue_declare(queue, passive=True)
        return result.method.message_count, result.method.consumer_count
    finally:
        connection.close()


def _taken(queue: str) -> Generator[tuple[pika.BasicProperties, dict[str, Any]], None, None]:
    """`queue`'s messages, each consumed (auto-ack) as it is read, until the queue is empty."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return
            yield properties, orjson.loads(body)
    finally:
        connection.close()


def get_messages(queue: str) -> list[tuple[pika.BasicProperties, dict[str, Any]]]:
    """Every message waiting in `queue`, consumed."""
    return list(_taken(queue))


def take_message(
    queue: str, matches: Callable[[dict[str, Any]], bool], *, timeout: float, what: str
) -> tuple[pika.BasicProperties, dict[str, Any]]:
    """The first message of `queue` whose body `matches`, waiting up to `timeout` seconds.

    Messages before it are consumed and dropped: an API test's relay may republish to its
    queue other tests' events that wait unfinished in the session's database.
    """

    def poll() -> tuple[pika.BasicProperties, dict[str, Any]] | None:
        with contextlib.closing(_taken(queue)) as messages:
            return next(((p, m) for p, m in messages if matches(m)), None)

    return wait_for(poll, timeout=timeout, what=what)


def queue_details(queue: str, vhost: str = "/") -> dict[str, Any]:
    """A queue as the management API describes it (arguments, policy; counts lag ~5 s)."""
    from urllib.parse import quote

    response = httpx.get(
        f"{MANAGEMENT_URL}/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}",
        auth=("guest", "guest"),
        timeout=5,
    )
    response.raise_for_status()
    details: dict[str, Any] = response.json()
    return details


def delivery_limit_in_force(queue: str) -> int | None:
    """The quorum queue's delivery limit, whether set by argument or by policy."""
    details = queue_details(queue)
    policy = details.get("effective_policy_definition") or {}
    limit = policy.get("delivery-limit", details.get("arguments", {}).get("x-delivery-limit"))
    return None if limit is None else int(limit)


def wait_for(
    predicate: Callable[[], T | Literal[False] | None],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds;
    that value (never `None` or `False`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last value {value!r}"
            )
        time.sleep(interval)


def outcome_within(call: Callable[[], T], seconds: float, *, hung: str) -> T | Exception:
    """What `call()` returned, or the exception it raised, run on a thread; fails with `hung`
    if it is still running after `seconds` (the thread is left behind as a daemon)."""
    outcome: list[T | Exception] = []

    def target() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), hung
    return outcome[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
