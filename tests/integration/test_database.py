"""The engine's client-side deadlines against a real PostgreSQL behind a proxy that hangs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from tests.support.proxy import TcpProxy
from tests.support.services import outcome_within, wait_for

from conversation_events.errors import DatabaseUnavailable
from conversation_events.persistence.db import _Watchdog, make_engine, translate_errors


def engine_with_deadline(url: str, deadline_s: float, *, pre_ping: bool = False) -> Engine:
    return make_engine(
        url,
        pool_size=2,
        connect_timeout_s=1,
        statement_timeout_ms=5000,
        application_name="ce-test-deadlines",
        deadline_s=deadline_s,
        pre_ping=pre_ping,
    )


@pytest.fixture
def proxied(database_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[TcpProxy, Engine]]:
    """An engine behind a proxy; `indirect` parametrisation turns its pool pre-ping on."""
    proxy, url = TcpProxy.in_front_of(database_url)
    engine = engine_with_deadline(url, 1.0, pre_ping=getattr(request, "param", False))
    yield proxy, engine
    engine.dispose()
    proxy.close()


def run(engine: Engine, sql: str) -> object:
    with translate_errors(), engine.begin() as conn:
        return conn.execute(text(sql)).scalar()


# With pre-ping the first round trip to the silent server is the checkout's ping.
@pytest.mark.parametrize("proxied", [False, True], ids=["statement", "pre-ping"], indirect=True)
def test_a_silent_server_fails_the_call_instead_of_hanging_it(
    proxied: tuple[TcpProxy, Engine],
) -> None:
    proxy, engine = proxied
    assert run(engine, "SELECT 1") == 1  # a pooled connection that will go silent
    proxy.freeze()
    try:
        outcome = outcome_within(
            lambda: run(engine, "SELECT 2"), 60, hung="the call hung past its deadline"
        )
        assert isinstance(outcome, DatabaseUnavailable)
    finally:
        proxy.thaw()
    # The cut connection was discarded: the next call gets a fresh, working one.
    assert run(engine, "SELECT 3") == 3


def test_a_commit_to_a_silent_server_fails_instead_of_hanging(
    proxied: tuple[TcpProxy, Engine],
) -> None:
    proxy, engine = proxied

    def commit() -> None:
        with translate_errors(), engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            proxy.freeze()  # the statement answered; the COMMIT will not be

    try:
        outcome = outcome_within(commit, 60, hung="the commit hung past its deadline")
    finally:
        proxy.thaw()
    assert isinstance(outcome, DatabaseUnavailable)


def test_calls_within_the_deadline_are_left_alone(proxied: tuple[TcpProxy, Engine]) -> None:
    _, engine = proxied
    for _ in range(5):  # 1.5 s in all: a deadline left armed between calls would fire
        assert run(engine, "SELECT 1 FROM pg_sleep(0.3)") == 1


def test_a_short_deadline_holds_while_a_long_one_is_armed(
    proxied: tuple[TcpProxy, Engine], database_url: str
) -> None:
    """The deadlines of every engine share one watchdog thread: one that has just armed a
    two-minute deadline must still wake for the one-second deadline armed after it."""
    proxy, engine = proxied
    patient = engine_with_deadline(database_url, 120.0)
    try:
        assert run(engine, "SELECT 1") == 1
        assert run(patient, "SELECT 1") == 1
        watchdog = _Watchdog.shared()
        wait_for(
            lambda: watchdog._wake_at - time.monotonic() > 60,
            timeout=30,
            what="the watchdog asleep for the long deadline",
        )
        proxy.freeze()
        try:
            outcome = outcome_within(
                lambda: run(engine, "SELECT 2"), 60, hung="the short deadline waited for the long"
            )
        finally:
            proxy.thaw()
        assert isinstance(outcome, DatabaseUnavailable)
    finally:
        patient.dispose()
