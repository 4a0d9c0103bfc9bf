"""The management-API metric source against the real local RabbitMQ."""

from __future__ import annotations

import socket

import httpx
import pytest
from tests.integration.scaler.scaler_helpers import amqp_connection, declare_quorum_queue, publish
from tests.support.services import free_port, wait_for

from conversation_events_scaler.decision import Observation
from conversation_events_scaler.errors import MetricsUnavailable
from conversation_events_scaler.metrics_source import ManagementApiSource, queue_url


def source(management_url: str, vhost: str, queue: str, **kwargs: object) -> ManagementApiSource:
    return ManagementApiSource(
        management_url,
        vhost,
        queue,
        user="guest",
        password="guest",
        **{"timeout_s": 5, **kwargs},  # type: ignore[arg-type]
    )


def test_vhost_and_queue_names_are_percent_encoded() -> None:
    assert queue_url("http://h:15672/", "/", "q") == "http://h:15672/api/queues/%2F/q"
    assert queue_url("http://h", "a/b c", "q/1") == "http://h/api/queues/a%2Fb%20c/q%2F1"


@pytest.mark.slow
def test_counts_ready_and_unacked_on_the_default_vhost(
    management_url: str, unique_name: str
) -> None:
    """The default vhost `/` must travel as %2F; unacked messages are counted apart."""
    connection = amqp_connection("/")
    try:
        channel = connection.channel()
        declare_quorum_queue(channel, unique_name)
        publish(channel, unique_name, 25)
        consumer = connection.channel()
        consumer.basic_qos(prefetch_count=7)
        held: list[int] = []
        consumer.basic_consume(
            unique_name, lambda ch, method, props, body: held.append(method.delivery_tag)
        )
        wait_for(
            lambda: connection.process_data_events(time_limit=0.2) or len(held) == 7,
            timeout=15,
            what="7 deliveries held unacked",
        )
        with source(management_url, "/", unique_name) as metric:
            observation = _observed(
                metric,
                "management statistics to show 18 ready + 7 unacked",
                ready=18,
                unacked=7,
                consumers=1,
            )
        assert observation is not None
        assert observation.messages() == 25
        assert observation.messages(ready_only=True) == 18
        assert observation.consumers == 1
    finally:
        channel.queue_delete(unique_name)
        connection.close()


@pytest.mark.slow
def test_finds_a_queue_in_a_vhost_whose_name_has_a_slash(
    management_url: str, vhost: str, unique_name: str
) -> None:
    connection = amqp_connection(vhost)
    try:
        channel = connection.channel()
        declare_quorum_queue(channel, unique_name)
        publish(channel, unique_name, 3)
        with source(management_url, vhost, unique_name) as metric:
            observation = _observed(
                metric, "3 ready messages in the slashed vhost", ready=3, unacked=0
            )
        assert observation is not None
        assert observation.total == 3
    finally:
        connection.close()


def test_unknown_queue_is_a_retryable_metric_failure(management_url: str) -> None:
    with (
        source(management_url, "/", "ce-scaler-test-no-such-queue") as metric,
        pytest.raises(MetricsUnavailable, match="not found"),
    ):
        metric.read()


def test_wrong_credentials_are_reported(management_url: str) -> None:
    with (
        ManagementApiSource(
            management_url, "/", "q", user="guest", password="wrong", timeout_s=5
        ) as metric,
        pytest.raises(MetricsUnavailable, match="credentials"),
    ):
        metric.read()


def test_unreachable_api_is_a_metric_failure() -> None:
    with (
        source(f"http://127.0.0.1:{free_port()}", "/", "q") as metric,
        pytest.raises(MetricsUnavailable, match="unreachable"),
    ):
        metric.read()


@pytest.mark.slow
def test_reads_move_to_a_live_node_and_stay_there(management_url: str, unique_name: str) -> None:
    """Several management URLs (the nodes of a cluster): one refusing connections and one that
    accepts them but never answers (a frozen node) are passed over for the live one, which the
    next read goes to first."""
    refused = f"http://127.0.0.1:{free_port()}"
    with socket.create_server(("127.0.0.1", 0)) as frozen_node:
        frozen = f"http://127.0.0.1:{frozen_node.getsockname()[1]}"
        connection = amqp_connection("/")
        try:
            channel = connection.channel()
            declare_quorum_queue(channel, unique_name)
            publish(channel, unique_name, 4)
            urls = f"{refused},{frozen}, {management_url}"
            with source(urls, "/", unique_name, timeout_s=1) as metric:
                observation = _observed(
                    metric, "4 ready messages read through the live node", ready=4, unacked=0
                )
                assert observation is not None
                assert metric.url.startswith(management_url)
                assert metric.read().messages() == 4
                assert metric.url.startswith(management_url)
        finally:
            channel.queue_delete(unique_name)
            connection.close()


def test_every_node_down_is_one_failure_naming_each() -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    with (
        source(",".join(dead), "/", "q") as metric,
        pytest.raises(MetricsUnavailable, match="unreachable") as failure,
    ):
        metric.read()
    assert all(url in str(failure.value) for url in dead)


@pytest.mark.parametrize("answer", [{"name": "q"}, []])
def test_a_queue_without_statistics_yet_is_not_read_as_empty(answer: object) -> None:
    # A queue declared a moment ago: no message fields, or `[]` when `columns=` is asked.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    with (
        source("http://mgmt", "/", "q", transport=transport) as metric,
        pytest.raises(MetricsUnavailable, match="no statistics"),
    ):
        metric.read()


def _observed(
    metric: ManagementApiSource,
    what: str,
    *,
    ready: int,
    unacked: int,
    consumers: int | None = None,
) -> Observation:
    """The first observation showing these figures, polled for up to 30 seconds."""
    return wait_for(
        lambda: _matching(metric, ready=ready, unacked=unacked, consumers=consumers),
        timeout=30,
        interval=0.5,
        what=what,
    )


def _matching(
    metric: ManagementApiSource, *, ready: int, unacked: int, consumers: int | None = None
) -> Observation | None:
    try:
        observation = metric.read()
    except MetricsUnavailable:
        return None  # a queue declared a moment ago has no statistics yet
    # Each figure is refreshed on its own schedule: wait until all of them caught up.
    counts = (observation.ready, observation.unacked)
    if counts == (ready, unacked) and consumers in (None, observation.consumers):
        return observation
    return None


@pytest.mark.parametrize(
    ("answer", "rate"),
    [
        ({"messages": 3, "message_stats": {"publish_details": {"rate": 41.5}}}, 41.5),
        ({"messages": 3}, 0.0),  # nobody published to it yet: no message_stats at all
        ({"messages": 3, "message_stats": {"publish": 9}}, 0.0),
        ({"messages": 3, "message_stats": {"publish_details": {"rate": None}}}, 0.0),
    ],
)
def test_reads_the_publish_rate_and_asks_for_it(answer: dict[str, object], rate: float) -> None:
    asked: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["columns"])
        return httpx.Response(200, json=answer)

    with source("http://mgmt", "/", "q", transport=httpx.MockTransport(reply)) as metric:
        assert metric.read().publish_rate == rate
    assert "message_stats.publish_details.rate" in asked[0].split(",")


@pytest.mark.slow
def test_the_broker_answers_the_publish_rate_column(management_url: str, unique_name: str) -> None:
    """The nested column KEDA's MessageRate mode reads comes back through `columns=`."""
    connection = amqp_connection("/")
    try:
        channel = connection.channel()
        declare_quorum_queue(channel, unique_name)
        with source(management_url, "/", unique_name) as metric:

            def publishing() -> float | None:
                publish(channel, unique_name, 20)
                try:
                    rate = metric.read().publish_rate
                except MetricsUnavailable:
                    return None
                return rate if rate else None

            rate = wait_for(publishing, timeout=30, interval=0.5, what="a publish rate")
        assert rate is not None and rate > 0
    finally:
        channel.queue_delete(unique_name)
        connection.close()
