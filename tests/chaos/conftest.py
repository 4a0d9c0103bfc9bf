"""Fixtures of the fault scenarios, and their report table at the end of the pytest run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.chaos.harness import FAST, ProxyFactory, Scenario, stop_streams
from tests.chaos.report import REPORTS, table
from tests.support.processes import Service, common_env
from tests.support.proxy import TcpProxy
from tests.support.services import AMQP_URL


@pytest.fixture
def env(database_url: str, names: tuple[str, str]) -> dict[str, str]:
    """Settings of every process of one scenario: its own exchange and queue, fast timings."""
    return common_env(database_url, AMQP_URL, *names) | FAST


@pytest.fixture(name="services")
def scenario_services(services: list[Service]) -> Iterator[list[Service]]:
    """The processes a scenario starts (stopped afterwards, last first; see tests/conftest.py).

    A stream the scenario left running (it failed half-way) is stopped before them.
    """
    yield services
    stop_streams()


@pytest.fixture
def proxy() -> Iterator[ProxyFactory]:
    """Proxies in front of servers, closed after the test."""
    made: list[TcpProxy] = []

    def in_front_of(url: str) -> tuple[TcpProxy, str]:
        proxy, proxied_url = TcpProxy.in_front_of(url)
        made.append(proxy)
        return proxy, proxied_url

    yield in_front_of
    for each in made:
        each.close()


@pytest.fixture
def scenario(
    env: dict[str, str],
    engine: Engine,
    database_url: str,
    services: list[Service],
    proxy: ProxyFactory,
) -> Scenario:
    return Scenario(env, engine, database_url, services, proxy)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault injection report")
    for line in table(REPORTS):
        terminalreporter.write_line(line)
