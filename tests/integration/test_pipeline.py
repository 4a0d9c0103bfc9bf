"""The whole pipeline as separate processes (API, workers) on real PostgreSQL and RabbitMQ.

Faults are real: SIGKILL and SIGTERM to worker processes, and broker connections cut by a TCP
proxy while the API accepts. Every scenario ends with the exactly-once check: each user's
friendship score equals the sum of its events' changes, and every event is PROCESSED.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import Engine
from tests.support.database import one_value
from tests.support.payloads import conversation, conversations_for
from tests.support.pipeline import (
    assert_processed_exactly_once,
    friendship_rows_locked,
    statuses,
)
from tests.support.processes import Service, common_env, start_api, start_worker
from tests.support.proxy import TcpProxy
from tests.support.services import AMQP_URL, wait_for

pytestmark = pytest.mark.slow
API_KEY = "pipeline-test-key-0123456789"


@pytest.fixture
def env(database_url: str, names: tuple[str, str]) -> dict[str, str]:
    return common_env(database_url, AMQP_URL, *names) | {
        "CE_RELAY_DELAY_S": "2",
        "CE_RELAY_INTERVAL_S": "0.5",
        "CE_WORKER_RETRY_BASE_S": "0.05",
        "CE_WORKER_RETRY_CAP_S": "0.5",
    }


def post_all(base: str, bodies: list[dict], concurrency: int = 32) -> list[httpx.Response]:
    """POST every body from `concurrency` threads, each with a client of its own, as a producer
    does: a 503 is sent again after its `Retry-After` (a loaded machine sheds load), and so is a
    post whose connection broke before an answer (a post is idempotent). The answer kept is the
    first that is not a 503, or the last 503 after a minute. Idle connections are dropped after
    2 s, below the API's keep-alive timeout (5 s), so a post never races the server's close.

    One client shared by the threads once failed a request with EBADF (its socket closed under
    the reading thread); clients of their own share no connection between threads.
    """
    local = threading.local()
    clients: list[httpx.Client] = []

    def post(body: dict) -> httpx.Response:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=base,
                headers={"X-API-Key": API_KEY},
                timeout=30,
                limits=httpx.Limits(keepalive_expiry=2),
            )
            clients.append(local.client)  # list.append is atomic
        give_up = time.monotonic() + 60
        while True:
            try:
                response: httpx.Response = local.client.post("/v1/conversations/end", json=body)
            except httpx.TransportError:
                if time.monotonic() > give_up:
                    raise
                continue
            if response.status_code != 503 or time.monotonic() > give_up:
                return response
            time.sleep(float(response.headers["Retry-After"]))  # what the server asked for

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(post, bodies))
    finally:
        for client in clients:
            client.close()


def events_for(users: list[str], count: int) -> list[dict]:
    return conversations_for(users, count, seed=7)


def events_of_new_users(users: int, count: int) -> list[dict]:
    """`count` events of `users` users this test run has not seen before."""
    return events_for([f"user-{uuid.uuid4().hex[:8]}" for _ in range(users)], count)


def api_and_two_workers(env: dict[str, str], services: list[Service]) -> str:
    """Start the API and two workers (stopped after the test); the API's base URL."""
    api, base = start_api(env, API_KEY)
    services.append(api)
    services.extend(start_worker(env) for _ in range(2))
    return base


def test_thousand_events_fifty_users_with_resends(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    base = api_and_two_workers(env, services)
    bodies = events_of_new_users(50, 1000)
    resent = random.Random(1).sample(bodies, 100)

    first = post_all(base, bodies)
    again = post_all(base, resent)

    assert [r.status_code for r in first + again] == [202] * 1100
    event_ids = {
        b["conversation_id"]: r.json()["event_id"] for b, r in zip(bodies, first, strict=True)
    }
    assert all(
        r.json()["event_id"] == event_ids[b["conversation_id"]]
        for b, r in zip(resent, again, strict=True)
    )
    assert_processed_exactly_once(engine, bodies)


def test_batches_with_resends_and_invalid_items_are_processed_exactly_once(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    base = api_and_two_workers(env, services)
    bodies = events_of_new_users(50, 1000)
    batches = [bodies[i : i + 200] for i in range(0, len(bodies), 200)]
    # A re-sent batch, and one mixing re-sends with invalid items.
    batches.append(random.Random(2).sample(bodies, 150))
    batches.append([*bodies[:20], {"conversation_id": "broken"}, {**bodies[0], "user_id": ""}])

    def post(client: httpx.Client, batch: list[dict]) -> httpx.Response:
        """As a producer does: a 503 (here: more batches at once than the API takes) is sent
        again after its Retry-After, for a minute at most."""
        give_up = time.monotonic() + 60
        while True:
            response = client.post("/v1/conversations/end:batch", json={"conversations": batch})
            if response.status_code != 503 or time.monotonic() > give_up:
                return response
            time.sleep(float(response.headers["Retry-After"]))  # what the server asked for

    with (
        httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=60) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        replies = list(pool.map(lambda batch: post(client, batch), batches))

    assert [r.status_code for r in replies] == [200] * len(batches)
    results = [item for r in replies for item in r.json()["results"]]
    statuses_seen = Counter(item["status"] for item in results)
    assert statuses_seen["accepted"] == 1000 and statuses_seen["invalid"] == 2
    # The first answer of each conversation gave its event id; every later one the same.
    event_ids: dict[str, str] = {}
    for batch, reply in zip(batches, replies, strict=True):
        for body, item in zip(batch, reply.json()["results"], strict=True):
            if item["status"] in ("accepted", "duplicate"):
                known = event_ids.setdefault(body["conversation_id"], item["event_id"])
                assert item["event_id"] == known
    assert len(event_ids) == 1000
    assert_processed_exactly_once(engine, bodies)


def blocked_batches(engine: Engine) -> int:
    """Worker transactions of this database waiting for a row lock (mid-batch, uncommitted)."""
    return int(
        one_value(
            engine,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'conversation-events-worker'"
            " AND wait_event_type = 'Lock'",
        )
    )


@contextlib.contextmanager
def worker_blocked_mid_batch(
    env: dict[str, str],
    engine: Engine,
    services: list[Service],
    *,
    users: int,
    events: int,
    prefetch: int,
) -> Iterator[tuple[Service, list[dict], list[dict]]]:
    """The API and one worker taking `prefetch` messages in two batches, both blocked
    mid-transaction: yields (the worker, a processed first event of each of `users` new users,
    `events` more of theirs posted while their status rows are locked). Unlocked on exit."""
    api, base = start_api(env, API_KEY)
    services.append(api)
    worker = start_worker(
        env, CE_WORKER_PREFETCH=str(prefetch), CE_WORKER_BATCH_SIZE=str(prefetch // 2)
    )
    services.append(worker)
    warmup = [conversation(user_id=f"user-{uuid.uuid4().hex[:8]}") for _ in range(users)]
    assert {r.status_code for r in post_all(base, warmup)} == {202}
    assert_processed_exactly_once(engine, warmup, timeout=30)  # the status rows exist

    bodies = events_for([b["user_id"] for b in warmup], events)
    with friendship_rows_locked(engine, [b["user_id"] for b in warmup]):
        assert {r.status_code for r in post_all(base, bodies)} == {202}
        wait_for(
            lambda: blocked_batches(engine) == 2, timeout=20, what="both batches mid-transaction"
        )
        yield worker, warmup, bodies


def test_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    blocked = worker_blocked_mid_batch(env, engine, services, users=5, events=300, prefetch=10)
    with blocked as (victim, warmup, bodies):
        victim.signal(signal.SIGKILL)
        victim.wait(10)
    services.append(start_worker(env))
    assert_processed_exactly_once(engine, warmup + bodies)


def test_sigterm_drains_in_flight_work_and_exits_zero(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    blocked = worker_blocked_mid_batch(env, engine, services, users=4, events=100, prefetch=8)
    with blocked as (worker, warmup, bodies):
        busy = 8  # its whole prefetch: two batches of four, each mid-transaction
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "draining" in worker.log(), timeout=10, what="drain to begin")
        assert worker.alive()
    ids = [b["conversation_id"] for b in bodies]
    assert worker.wait(30) == 0
    done = statuses(engine, ids).get("PROCESSED", 0)
    assert done >= busy  # the in-flight events finished before the exit
    assert statuses(engine, ids).get("PROCESSING", 0) == 0
    services.append(start_worker(env))
    assert_processed_exactly_once(engine, warmup + bodies)


def test_broker_connection_cut_while_accepting(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    proxy, proxied_url = TcpProxy.in_front_of(env["CE_AMQP_URL"])
    try:
        api_env = env | {"CE_AMQP_URL": proxied_url}
        api, base = start_api(api_env, API_KEY)
        services.append(api)
        services.append(start_worker(env))
        bodies = events_of_new_users(20, 600)
        responses: list[httpx.Response] = []
        poster = threading.Thread(
            target=lambda: responses.extend(post_all(base, bodies, concurrency=8))
        )
        poster.start()
        wait_for(
            lambda: (
                statuses(engine, [b["conversation_id"] for b in bodies[:600]]).get("PROCESSED", 0)
                >= 50
            ),
            timeout=30,
            what="stream under way",
        )
        proxy.cut()
        wait_for(
            lambda: (
                statuses(engine, [b["conversation_id"] for b in bodies]).get("PENDING", 0) >= 50
            ),
            timeout=30,
            what="events accepted during the outage",
        )
        proxy.restore()
        poster.join(120)
        assert len(responses) == 600
        assert {r.status_code for r in responses} == {202}
        assert_processed_exactly_once(engine, bodies)
    finally:
        proxy.close()


def test_concurrent_batches_while_accepting_do_not_deadlock(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    """Workers lock many events and users per batch while the API records publish confirms
    for many events at once: every multi-row lock must come in one order, or PostgreSQL
    aborts transactions as deadlocks (each then costs an attempt)."""
    api, base = start_api(env, API_KEY)
    services.append(api)
    workers = [
        start_worker(env, CE_WORKER_PREFETCH="20", CE_WORKER_BATCH_SIZE="10") for _ in range(3)
    ]
    services.extend(workers)
    bodies = events_of_new_users(300, 3000)  # most users are new when their first batch arrives

    pending = bodies
    for _ in range(5):  # a loaded machine may answer 503 + Retry-After: send those again
        answers = post_all(base, pending, concurrency=32)
        assert {r.status_code for r in answers} <= {202, 503}
        assert all("Retry-After" in r.headers for r in answers if r.status_code == 503)
        pending = [b for b, r in zip(pending, answers, strict=True) if r.status_code == 503]
        if not pending:
            break
    assert not pending

    assert_processed_exactly_once(engine, bodies)
    # A deadlock aborts a transaction, which the worker logs as a transient failure and
    # retries. (Attempts alone prove nothing: a relayed duplicate may claim an event twice.)
    logs = " ".join(worker.log() for worker in workers)
    assert "DeadlockDetected" not in logs
    assert "transient failure" not in logs
