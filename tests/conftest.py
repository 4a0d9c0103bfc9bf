"""Fixtures shared by the integration tiers: a migrated database per run, queue names per test,
the processes a test starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from tests.support import services
from tests.support.processes import Service


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    services.require(services.port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    url = services.create_database()
    yield url
    services.drop_database(url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture
def amqp_url() -> str:
    services.require(services.port_open("127.0.0.1", 5672), "RabbitMQ at 127.0.0.1:5672")
    return services.AMQP_URL


@pytest.fixture
def names(amqp_url: str) -> Iterator[tuple[str, str]]:
    """(exchange, queue) unique to this test; deleted afterwards."""
    exchange, queue = services.unique_names()
    yield exchange, queue
    services.delete_topology(exchange, queue)


@pytest.fixture(name="services")
def started_services() -> Iterator[list[Service]]:
    """Processes a test starts (append them); stopped afterwards, last first."""
    started: list[Service] = []
    yield started
    for service in reversed(started):
        service.stop()
