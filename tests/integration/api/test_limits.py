"""Deadlines and load shedding: a hung database, overload, slow clients, a read-only database."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from tests.integration.api.test_accept import stored, stored_count, stored_row
from tests.integration.api.test_publish_faults import metric
from tests.support.payloads import conversation
from tests.support.proxy import TcpProxy
from tests.support.services import (
    PG_ADMIN_URL,
    create_database,
    drop_database,
    get_messages,
    wait_for,
)

END = "/v1/conversations/end"


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_retry_later(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["code"] == code


@pytest.fixture
def frozen_proxy(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    proxy, url = TcpProxy.in_front_of(database_url)
    yield proxy, url
    proxy.close()


def test_a_silent_database_answers_503_within_the_deadline_and_the_retry_is_stored_once(
    make_client: Callable[..., httpx.Client],
    frozen_proxy: tuple[TcpProxy, str],
    engine: Engine,
    names: tuple[str, str],
) -> None:
    proxy, url = frozen_proxy
    deadline = 2.0
    client = make_client(database_url=url, request_timeout_s=deadline)
    body = conversation()
    proxy.freeze()  # sockets open, nothing forwarded: PostgreSQL hangs, it does not fail

    response, took = timed(lambda: client.post(END, json=body))
    assert_retry_later(response, "unavailable")
    # The deadline plus slack for a loaded machine; without a deadline this hangs (90 s seen).
    assert took < deadline + 2, took
    read, took = timed(lambda: client.get(f"/v1/conversations/{body['conversation_id']}"))
    assert_retry_later(read, "unavailable")
    assert took < deadline + 2, took

    proxy.thaw()
    # The client retries as told; the insert that hung may have committed meanwhile, so the
    # retry is a duplicate (202, the same event) or the first store: once either way.
    retried = wait_for(
        lambda: (r := client.post(END, json=body)).status_code == 202 and r,
        timeout=30,
        interval=0.5,
        what="the retry to be accepted after the thaw",
    )
    row = stored(engine, body["conversation_id"])
    assert row is not None and str(row["id"]) == retried.json()["event_id"]
    assert stored_count(engine, body["conversation_id"]) == 1
    # Published by the publisher or, if the hung request's insert was the one stored, the relay.
    wait_for(
        lambda: stored_row(engine, body["conversation_id"])["published_at"] is not None,
        timeout=20,
        what="the event to be published",
    )
    queued = [
        m for _, m in get_messages(names[1]) if m["conversation_id"] == body["conversation_id"]
    ]
    assert len(queued) >= 1


def post_in_background(client: httpx.Client, bodies: list[dict]) -> tuple[list, list]:
    """Start one POST per body on its own thread; returns (threads, responses list)."""
    responses: list[httpx.Response] = []

    def post(body: dict) -> None:
        responses.append(client.post(END, json=body, timeout=60))

    threads = [threading.Thread(target=post, args=(b,), daemon=True) for b in bodies]
    for thread in threads:
        thread.start()
    return threads, responses


@pytest.mark.parametrize(
    ("overrides", "held"),
    [
        ({"max_in_flight": 2}, 2),
        # One batch of one stuck on the frozen database, then one event waiting: full.
        ({"writer_max_pending": 1, "writer_concurrency": 1, "writer_batch_size": 1}, 1),
    ],
    ids=["in-flight-limit", "writer-queue-bound"],
)
def test_past_a_bound_requests_get_a_fast_503_overloaded_and_probes_still_answer(
    make_client: Callable[..., httpx.Client],
    frozen_proxy: tuple[TcpProxy, str],
    engine: Engine,
    overrides: dict,
    held: int,
) -> None:
    proxy, url = frozen_proxy
    client = make_client(database_url=url, request_timeout_s=20, **overrides)
    proxy.freeze()
    waiting = [conversation() for _ in range(held)]
    threads, responses = post_in_background(client, waiting)
    wait_for(
        lambda: metric(client, "conversation_events_http_in_flight") == held,
        timeout=10,
        what="the held requests to reach the server",
    )

    def shed() -> httpx.Response | None:
        # An open connection first (probes answer), so the time below is the server's answer,
        # not a connect that a loaded machine may delay by a SYN retransmit (1 s).
        assert client.get("/healthz").status_code == 200
        try:
            response, took = timed(
                lambda: client.post(
                    END, json=conversation(), headers={"X-Request-ID": "shed-1"}, timeout=2
                )
            )
        except httpx.TimeoutException:
            return None  # it took the last free place itself (it waits on the frozen database)
        assert response.status_code == 503, response.text
        assert took < 1.0, took  # refused at once, not after a wait
        assert response.headers["x-request-id"] == "shed-1"  # traceable like any answer
        return response

    refused = wait_for(shed, timeout=10, what="a request past the bound to be refused")
    assert_retry_later(refused, "overloaded")
    assert client.get("/healthz").status_code == 200

    proxy.thaw()
    for thread in threads:
        thread.join(timeout=30)
    assert [r.status_code for r in responses] == [202] * held
    assert all(stored(engine, b["conversation_id"]) for b in waiting)


def raw_exchange(port: int, data: bytes, timeout: float) -> tuple[bytes, float]:
    """Send `data`, then read until the server closes; returns (what it sent, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if data:
            sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def test_slow_or_silent_clients_are_cut_off_at_the_client_deadline(
    make_client: Callable[..., httpx.Client],
) -> None:
    from tests.integration.api.conftest import API_KEY

    client = make_client(client_timeout_s=1.0)
    port = client.base_url.port
    assert port is not None
    # Connected, nothing sent; half a head; a whole head and half its body.
    silent, took_silent = raw_exchange(port, b"", timeout=10)
    half_head, took_head = raw_exchange(port, f"POST {END} HTTP/1.1\r\nHost: x\r\n".encode(), 10)
    head = (
        f"POST {END} HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    half_body, took_body = raw_exchange(port, head.encode() + b'{"conversation_id": ', 10)

    for took in (took_silent, took_head, took_body):
        assert 0.9 < took < 5, took  # closed by the server at the deadline, not by our timeout
    assert silent.startswith(b"HTTP/1.1 408 ") and half_head.startswith(b"HTTP/1.1 408 ")
    assert half_body.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in half_body
    # A well-behaved client on the same server is unaffected.
    assert client.post(END, json=conversation()).status_code == 202


def test_a_client_that_leaves_mid_body_is_no_server_error(
    make_client: Callable[..., httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    from tests.integration.api.conftest import API_KEY

    client = make_client()
    port = client.base_url.port
    assert port is not None
    sample = (
        'conversation_events_http_request_seconds_count{route="/v1/conversations/end",status="4xx"}'
    )
    before = metric(client, sample)
    caplog.set_level(logging.ERROR)
    head = (
        f"POST {END} HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b'{"conversation_id": ')
    wait_for(lambda: metric(client, sample) > before, timeout=15, what="the request to end")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert client.post(END, json=conversation()).status_code == 202


@pytest.fixture
def own_database() -> Iterator[tuple[str, Engine]]:
    url = create_database()
    engine = create_engine(url, pool_size=2)
    yield url, engine
    engine.dispose()
    drop_database(url)


def set_read_only(url: str, on: bool) -> None:
    """What a failover to a standby does to new sessions; existing ones are ended as well."""
    name = make_url(url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            value = "on" if on else "off"
            conn.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
            )
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
    finally:
        admin.dispose()


def test_a_read_only_database_is_a_retryable_503_and_not_ready(
    make_client: Callable[..., httpx.Client], own_database: tuple[str, Engine]
) -> None:
    url, engine = own_database
    client = make_client(database_url=url)
    body = conversation()
    set_read_only(url, True)
    try:
        assert_retry_later(client.post(END, json=body), "unavailable")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "read_only"
    finally:
        set_read_only(url, False)
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=10, what="ready again")
    assert client.post(END, json=body).status_code == 202
    assert stored_row(engine, body["conversation_id"])["status"] == "PENDING"
