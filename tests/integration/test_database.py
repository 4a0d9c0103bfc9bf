"""The engine's client-side deadlines against a real PostgreSQL behind a proxy that hangs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from tests.support.proxy import TcpProxy

from conversation_events.errors import DatabaseUnavailable
from conversation_events.persistence.db import make_engine, translate_errors


@pytest.fixture
def proxied(database_url: str) -> Iterator[tuple[TcpProxy, Engine]]:
    proxy, url = TcpProxy.in_front_of(database_url)
    engine = make_engine(
        url,
        pool_size=2,
        connect_timeout_s=1,
        statement_timeout_ms=5000,
        application_name="ce-test-deadlines",
        deadline_s=1.0,
        pre_ping=False,
    )
    yield proxy, engine
    engine.dispose()
    proxy.close()


def run(engine: Engine, sql: str) -> object:
    with translate_errors(), engine.begin() as conn:
        return conn.execute(text(sql)).scalar()


def in_thread(engine: Engine, sql: str) -> list[object]:
    """Run `sql` on a thread; the result or the exception, once the thread ends (60 s at most)."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(run(engine, sql))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the call hung past its deadline"
    return outcome


def test_a_silent_server_fails_the_call_instead_of_hanging_it(
    proxied: tuple[TcpProxy, Engine],
) -> None:
    proxy, engine = proxied
    assert run(engine, "SELECT 1") == 1  # a pooled connection that will go silent
    proxy.freeze()
    try:
        [outcome] = in_thread(engine, "SELECT 2")
        assert isinstance(outcome, DatabaseUnavailable)
    finally:
        proxy.thaw()
    # The cut connection was discarded: the next call gets a fresh, working one.
    assert run(engine, "SELECT 3") == 3


def test_a_commit_to_a_silent_server_fails_instead_of_hanging(
    proxied: tuple[TcpProxy, Engine],
) -> None:
    proxy, engine = proxied
    outcome: list[object] = []

    def target() -> None:
        try:
            with translate_errors(), engine.begin() as conn:
                conn.execute(text("SELECT 1"))
                proxy.freeze()  # the statement answered; the COMMIT will not be
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    proxy.thaw()
    assert not thread.is_alive(), "the commit hung past its deadline"
    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseUnavailable)


def test_calls_within_the_deadline_are_left_alone(proxied: tuple[TcpProxy, Engine]) -> None:
    _, engine = proxied
    for _ in range(5):  # 1.5 s in all: a deadline left armed between calls would fire
        assert run(engine, "SELECT 1 FROM pg_sleep(0.3)") == 1
