"""Credentials given apart from the URLs (`CE_DATABASE_USERNAME`/`_PASSWORD`,
`CE_AMQP_USERNAME`/`_PASSWORD`): a Secret's key goes into a URL that holds no secret."""

from __future__ import annotations

import asyncio

import aiormq
import pika
import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from conversation_events.messaging.brokers import amqp_urls
from conversation_events.settings import CommonSettings

AWKWARD = "a b+c/d@e:f%g,h"


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> CommonSettings:
    for key, value in env.items():
        monkeypatch.setenv(f"CE_{key.upper()}", value)
    return CommonSettings()


def test_a_database_password_from_its_own_variable_survives_every_character(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings(
        monkeypatch,
        database_url="postgresql+psycopg2://app@pg-rw:5432/ce?sslmode=verify-full",
        database_password=AWKWARD,
    )
    url = make_url(s.database_url.get_secret_value())
    assert (url.username, url.password, url.host, url.database) == ("app", AWKWARD, "pg-rw", "ce")
    assert url.query["sslmode"] == "verify-full"
    assert AWKWARD not in repr(s)


def test_the_user_name_and_a_multi_host_url(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        database_url="postgresql+psycopg2://old:old@/ce?host=a:5432&host=b:5432"
        "&target_session_attrs=read-write",
        database_username="owner",
        database_password="pw",
    )
    url = make_url(s.database_url.get_secret_value())
    _, connect = create_engine(url).dialect.create_connect_args(url)
    assert (connect["user"], connect["password"], connect["host"]) == ("owner", "pw", "a,b")


def test_amqp_credentials_go_into_every_node_url(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        amqp_url="amqp://mq-0:5672/%2F, amqp://x:y@mq-1:5672/%2F",
        amqp_username="ce-api",
        amqp_password=AWKWARD,
    )
    urls = amqp_urls(s.amqp_url.get_secret_value())
    assert len(urls) == 2
    for url, host in zip(urls, ("mq-0", "mq-1"), strict=True):
        params = pika.URLParameters(url)  # the workers
        assert (params.credentials.username, params.credentials.password) == (
            "ce-api",
            AWKWARD,
        )
        assert (params.host, params.virtual_host) == (host, "/")
        connection = asyncio.run(_aiormq(url))  # the API
        assert (connection.url.user, connection.url.password) == ("ce-api", AWKWARD)
    # The management API's user defaults to the AMQP one: the same credentials.
    api = s.management_api()
    assert (api.user, api.password) == ("ce-api", AWKWARD)


async def _aiormq(url: str) -> aiormq.Connection:
    return aiormq.Connection(url)


@pytest.mark.parametrize(
    ("error", "credentials"),
    [
        (
            "AMQP password holds a placeholder",
            {
                "database_url": "postgresql+psycopg2://ce:strong@db/ce",
                "amqp_url": "amqp://mq:5672/%2F",
                "amqp_username": "ce",
                "amqp_password": "guest",
            },
        ),
        (
            "database password holds a placeholder",
            {
                "database_url": "postgresql+psycopg2://ce@db/ce",
                "database_password": "changeme",
                "amqp_url": "amqp://ce:strong@mq:5672/%2F",
            },
        ),
    ],
)
def test_production_refuses_a_placeholder_given_apart(
    monkeypatch: pytest.MonkeyPatch, error: str, credentials: dict[str, str]
) -> None:
    with pytest.raises(ValidationError, match=error):
        settings(monkeypatch, environment="production", **credentials)
