"""PostgreSQL misbehaving under a live pipeline: away for the workers, hung, read-only.

The database's faults come from a TCP proxy in front of it, or from the scenario's own database
whose settings change; each scenario's processes, stream and verdict are a `Scenario`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.chaos.harness import Fault, Scenario, Stream
from tests.support.services import (
    PG_ADMIN_URL,
    create_database,
    drop_database,
    queue_counts,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]

#: Client-side database deadlines short enough that a hung PostgreSQL shows within the fault
#: (defaults: 15 s and 10 s); the statement timeout stays below the deadline, as documented.
SHORT_DEADLINES = {"CE_DB_DEADLINE_S": "3", "CE_DB_STATEMENT_TIMEOUT_MS": "2000"}


def answered_503(stream: Stream) -> int:
    return stream.statuses.get("503", 0)


# --- 9. the delivery limit against a PostgreSQL outage of the workers ---------------------------


def test_postgresql_outage_of_the_workers_does_not_exhaust_the_delivery_limit(
    scenario: Scenario,
) -> None:
    """Workers hold their deliveries while PostgreSQL is away instead of bouncing them.

    With a delivery limit of 3 and 8 s without the database, messages returned to the queue on
    every failed attempt would be dead-lettered within a second; held, none is.
    """
    limited = scenario.env | {"CE_DELIVERY_LIMIT": "3"}
    database, proxied_url = scenario.proxy(scenario.database_url)
    fleet = scenario.fleet(limited, limited | {"CE_DATABASE_URL": proxied_url})
    run = scenario.run(fleet, [Fault(database.cut, database.restore, seconds=8.0)], seed=9)
    dead_lettered = queue_counts(f"{scenario.queue}.dead")[0]
    holds = sum(w.log().count("holding messages unacked") for w in fleet.workers)
    report = run.report(
        "9. PostgreSQL cut 8 s for the workers, delivery limit 3",
        "database back → every event accepted by then PROCESSED",
        accepted_during_outage=run.during,
        dead_lettered=dead_lettered,
        holds=holds,
    )
    assert holds > 0, "the workers must have met the outage with deliveries in hand"
    assert dead_lettered == 0, "an outage of the database must not exhaust the delivery limit"
    scenario.assert_exactly_once(run, report)


# --- 10 and 11. PostgreSQL frozen: sockets open, nothing answered --------------------------------


@pytest.mark.parametrize("side", ["API", "workers"])
def test_postgresql_frozen_for_six_seconds(side: str, scenario: Scenario) -> None:
    """A hung database fails calls at their deadline: 503 + Retry-After, or held deliveries."""
    database, proxied_url = scenario.proxy(scenario.database_url)
    direct = scenario.env | SHORT_DEADLINES
    frozen = direct | {"CE_DATABASE_URL": proxied_url}
    fleet = scenario.fleet(frozen if side == "API" else direct, frozen if side != "API" else direct)
    run = scenario.run(
        fleet,
        [Fault(database.freeze, database.thaw, seconds=6.0)],
        seed=10 if side == "API" else 11,
        # The API answers 503 while its database hangs, and 202 while the workers' does.
        count=answered_503 if side == "API" else Stream.accepted_count,
    )
    report = run.report(
        f"{10 if side == 'API' else 11}. PostgreSQL frozen 6 s for the {side}",
        "thaw → every event accepted by then PROCESSED",
        **{"answered_503_while_frozen" if side == "API" else "accepted_while_frozen": run.during},
        slowest_answer_s=round(run.stream.slowest_s, 1),
    )
    if side == "API":
        assert run.during > 0, "requests on a hung database must get 503 + Retry-After"
    else:
        assert run.during > 0, "the API must keep accepting while the workers' database hangs"
    scenario.assert_exactly_once(run, report)


# --- 12. a read-only database --------------------------------------------------------------------


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of this scenario alone (its settings change), dropped afterwards."""
    url = create_database(prefix="ce_chaos")
    yield url
    drop_database(url)


def read_only(database_url: str, on: bool) -> Callable[[], None]:
    """Make new sessions of the database read-only (or writable), and end the product's ones.

    `ALTER DATABASE ... SET` applies to sessions that start afterwards, so the API's and the
    workers' connections are terminated: their next sessions see the new state, as after a
    failover. The test's own connections (other application names) are left alone.
    """
    name = make_url(database_url).database

    def apply() -> None:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(
                    text(
                        f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                        f"{'on' if on else 'off'}"
                    )
                )
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND application_name LIKE 'conversation-events-%'"
                    ),
                    {"name": name},
                )
        finally:
            admin.dispose()

    return apply


def test_database_read_only_for_five_seconds(scenario: Scenario, own_database: str) -> None:
    """Writes refused (SQLSTATE 25006) are a retryable 503, and /readyz says not ready."""
    engine = create_engine(own_database, pool_size=2)
    scenario = replace(
        scenario,
        env=scenario.env | {"CE_DATABASE_URL": own_database},
        engine=engine,
        database_url=own_database,
    )
    fleet = scenario.fleet()

    def api_not_ready() -> bool:
        return httpx.get(f"{fleet.base}/readyz", timeout=5).status_code == 503

    not_ready_seen: list[bool] = []

    def begin() -> None:
        read_only(own_database, True)()
        not_ready_seen.append(
            wait_for(api_not_ready, timeout=10, what="/readyz 503 on a read-only database")
        )

    try:
        run = scenario.run(
            fleet,
            [Fault(begin, read_only(own_database, False), seconds=5.0)],
            seed=12,
            count=answered_503,
        )
    finally:
        read_only(own_database, False)()
    report = run.report(
        "12. database read-only 5 s",
        "writable again → every event accepted by then PROCESSED",
        answered_503_while_read_only=run.during,
    )
    engine.dispose()
    assert run.during > 0, "requests on a read-only database must get 503 + Retry-After"
    scenario.assert_exactly_once(run, report)
