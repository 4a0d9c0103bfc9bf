"""Several broker addresses in `CE_AMQP_URL`: splitting, the order of attempts, the secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from conversation_events.messaging.brokers import amqp_urls, connection_order, password
from conversation_events.messaging.policy import ManagementApi
from conversation_events.settings import CommonSettings

NODES = ",".join(f"amqp://ce:s3cr%2Cet@10.0.0.{i}:5672/%2F" for i in (1, 2, 3))


def test_one_url_or_several_separated_by_commas() -> None:
    assert amqp_urls("amqp://a/%2F") == ["amqp://a/%2F"]
    assert amqp_urls(" amqp://a/%2F , amqp://b/%2F,") == ["amqp://a/%2F", "amqp://b/%2F"]
    with pytest.raises(ValueError, match="no AMQP URL"):
        amqp_urls(" , ")


def test_an_encoded_comma_in_a_password_does_not_split_the_url() -> None:
    urls = amqp_urls(NODES)
    assert len(urls) == 3
    assert {password(u) for u in urls} == {"s3cr,et"}


def test_each_connection_tries_every_node_from_a_random_one() -> None:
    urls = amqp_urls(NODES)
    firsts = set()
    for _ in range(200):
        order = connection_order(NODES)
        assert sorted(order) == sorted(urls)
        firsts.add(order[0])
    assert firsts == set(urls)  # spread over the nodes, not all on the first


def test_the_node_just_lost_is_tried_last() -> None:
    lost = amqp_urls(NODES)[1]
    for _ in range(50):
        assert connection_order(NODES, after=lost)[-1] == lost


def production(amqp_url: str) -> CommonSettings:
    return CommonSettings(
        environment="production",
        amqp_url=SecretStr(amqp_url),
        database_url=SecretStr("postgresql+psycopg2://ce:strong@db/ce"),
    )


def test_production_refuses_a_placeholder_in_any_of_the_urls() -> None:
    assert production(NODES).production_secrets()["AMQP password of URL 3"] == "s3cr,et"
    with pytest.raises(ValidationError, match="AMQP password of URL 2"):
        production(NODES.replace("s3cr%2Cet@10.0.0.2", "guest@10.0.0.2"))
    with pytest.raises(ValidationError, match="AMQP password holds"):
        production("amqp://guest:guest@rabbit:5672/%2F")


def test_several_management_urls_share_one_user_and_lose_their_userinfo() -> None:
    api = ManagementApi.for_broker(
        "http://10.0.0.1:15672, http://mon:pw%2C1@10.0.0.2:15672/,http://10.0.0.3:15672",
        "amqp://ce:amqp-pw@10.0.0.1:5672/events",
    )
    assert api.base_urls == (
        "http://10.0.0.1:15672",
        "http://10.0.0.2:15672",
        "http://10.0.0.3:15672",
    )
    assert (api.user, api.password, api.vhost) == ("mon", "pw,1", "events")
    # Without userinfo anywhere, the AMQP URL's user.
    api = ManagementApi.for_broker("http://a:15672,http://b:15672", NODES)
    assert (api.user, api.password) == ("ce", "s3cr,et")
    with pytest.raises(ValueError, match="no management API URL"):
        ManagementApi.for_broker(" , ", NODES)
