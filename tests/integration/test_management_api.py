"""The queue policy through several management URLs (`CE_MANAGEMENT_URL` of a cluster's nodes),
against the real local RabbitMQ standing for the live node."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from tests.support.services import (
    AMQP_URL,
    MANAGEMENT_URL,
    delete_topology,
    free_port,
    port_open,
    require,
    unique_names,
)

from conversation_events.errors import BrokerUnavailable, PermanentError
from conversation_events.messaging.policy import ManagementApi, apply_queue_policy
from conversation_events.messaging.topology import Topology


@pytest.fixture
def topology() -> Iterator[Topology]:
    require(port_open("127.0.0.1", 15672), "the RabbitMQ management API at 127.0.0.1:15672")
    exchange, queue = unique_names("mgmt")
    yield Topology(exchange, queue, 7)
    delete_topology(exchange, queue)


def test_the_policy_is_applied_through_the_live_node(topology: Topology) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    # A node that accepts connections and never answers (frozen) costs one timeout.
    with socket.create_server(("127.0.0.1", 0)) as frozen_node:
        frozen = f"http://127.0.0.1:{frozen_node.getsockname()[1]}"
        api = ManagementApi.for_broker(
            f"{refused}, {frozen}, {MANAGEMENT_URL}", AMQP_URL, timeout_s=1
        )
        apply_queue_policy(api, topology)
        assert api.base_url == MANAGEMENT_URL  # the next call goes there first
        policy = api.request("GET", "policies", api.vhost, topology.policy_name).json()
    assert policy["definition"]["delivery-limit"] == 7


def test_every_node_down_is_retryable_and_names_each(topology: Topology) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    api = ManagementApi.for_broker(",".join(dead), AMQP_URL, timeout_s=1)
    with pytest.raises(BrokerUnavailable) as failure:
        apply_queue_policy(api, topology)
    assert all(url in str(failure.value) for url in dead)


def test_a_refusal_from_a_live_node_is_not_retried_elsewhere(topology: Topology) -> None:
    # Wrong credentials are the cluster's answer, not one node's trouble.
    api = ManagementApi.for_broker(
        f"http://guest:wrong@127.0.0.1:15672,http://127.0.0.1:{free_port()}", AMQP_URL
    )
    with pytest.raises(PermanentError, match="401"):
        apply_queue_policy(api, topology)
