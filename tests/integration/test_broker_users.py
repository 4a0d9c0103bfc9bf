"""The chart's broker users, one per component, on the real local RabbitMQ.

The users and permissions are the ones the chart renders for its bundled broker (the
definitions it loads at boot), put into a scratch vhost of their own. Each component does its
work with its own user, through the product's own code, and is refused what it must not do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aio_pika
import aiormq.exceptions
import httpx
import pika
import pika.exceptions
import pytest
from tests.chart.rendering import find_helm, require_tool, template
from tests.support.services import MANAGEMENT_URL, port_open, require, wait_for

from conversation_events.errors import PermanentError
from conversation_events.messaging.policy import ManagementApi, apply_queue_policy
from conversation_events.messaging.topology import Topology
from conversation_events_api.publisher import declare_topology as api_declare_topology
from conversation_events_scaler.metrics_source import ManagementApiSource
from conversation_events_worker.broker import declare_topology as worker_declare_topology

ADMIN = ("guest", "guest")
COMPONENTS = ("api", "worker", "scaler", "migrations")
# The chart's default names: the permissions are written for them.
TOPOLOGY = Topology("conversation_events", "conversation_events_processing", 5)


@dataclass(frozen=True)
class Broker:
    vhost: str
    users: dict[str, tuple[str, str]]  # component: (user, password)

    def amqp_url(self, component: str) -> str:
        user, password = self.users[component]
        return (
            f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:5672/"
            f"{quote(self.vhost, safe='')}"
        )

    def management(self, component: str) -> ManagementApi:
        return ManagementApi.for_broker(MANAGEMENT_URL, self.amqp_url(component))

    def pika(self, component: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.amqp_url(component)))


def _chart_users(fullname: str, vhost: str) -> dict[str, Any]:
    """The definitions the chart gives its bundled broker, without its administrator."""
    helm = require_tool(find_helm(), "helm")
    docs = template(helm, [f"--set=fullnameOverride={fullname}", f"--set=rabbitmq.vhost={vhost}"])
    [secret] = [
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == f"{fullname}-rabbitmq"
    ]
    definitions = json.loads(base64.b64decode(secret["data"]["definitions.json"]))
    own = {f"{fullname}-{c}" for c in COMPONENTS}
    return {
        "users": [u for u in definitions["users"] if u["name"] in own],
        "permissions": [p for p in definitions["permissions"] if p["user"] in own],
        "vhosts": definitions["vhosts"],
    }


@pytest.fixture
def broker() -> Iterator[Broker]:
    require(port_open("127.0.0.1", 15672), "the RabbitMQ management API at 127.0.0.1:15672")
    suffix = uuid.uuid4().hex[:8]
    fullname, vhost = f"ce-users-{suffix}", f"ce-users-{suffix}"
    definitions = _chart_users(fullname, vhost)
    assert len(definitions["users"]) == len(COMPONENTS)
    with httpx.Client(base_url=MANAGEMENT_URL, auth=ADMIN, timeout=10) as admin:
        admin.post("/api/definitions", json=definitions).raise_for_status()
        try:
            yield Broker(
                vhost,
                {
                    c: (f"{fullname}-{c}", _password(definitions, f"{fullname}-{c}"))
                    for c in COMPONENTS
                },
            )
        finally:
            admin.delete(f"/api/vhosts/{quote(vhost, safe='')}")
            for user in definitions["users"]:
                admin.delete(f"/api/users/{quote(user['name'], safe='')}")


def _password(definitions: dict[str, Any], user: str) -> str:
    return str(next(u["password"] for u in definitions["users"] if u["name"] == user))


def _refused(action: Any) -> int:
    """The AMQP reply code of the broker's refusal of `action` (403: access refused)."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refusal:
        action()
    return int(refusal.value.reply_code)


async def _publish_as_the_api(broker: Broker, body: bytes) -> None:
    connection = await aio_pika.connect(broker.amqp_url("api"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await api_declare_topology(channel, TOPOLOGY)
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=TOPOLOGY.routing_key,
            mandatory=True,
        )
        # ...but it reads no queue.
        queue = await channel.get_queue(TOPOLOGY.queue, ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.get(no_ack=False, fail=False)


def test_each_component_works_with_its_own_user_and_no_further(broker: Broker) -> None:
    # The migration step applies the queue policy (policymaker)...
    apply_queue_policy(broker.management("migrations"), TOPOLOGY)
    # ...which no other component may change.
    for component in ("api", "worker"):
        with pytest.raises(PermanentError, match="401"):
            apply_queue_policy(broker.management(component), TOPOLOGY)
    # The migration user has no AMQP access to any object.
    migrations = broker.pika("migrations")
    try:
        code = _refused(lambda: worker_declare_topology(migrations.channel(), TOPOLOGY))
        assert code == 403
    finally:
        if migrations.is_open:
            migrations.close()

    # The API declares the topology and publishes, and reads nothing.
    asyncio.run(_publish_as_the_api(broker, b'{"event": 1}'))

    # The worker consumes it; rejected, it is dead-lettered by the broker under the policy.
    worker = broker.pika("worker")
    try:
        channel = worker.channel()
        worker_declare_topology(channel, TOPOLOGY)
        method, _, body = wait_for(
            lambda: channel.basic_get(TOPOLOGY.queue),
            timeout=10,
            what="the API's message in the queue",
        )
        assert body == b'{"event": 1}'
        channel.basic_nack(method.delivery_tag, requeue=False)
        dead = wait_for(
            lambda: channel.basic_get(TOPOLOGY.dead_letter_queue, auto_ack=True)[2],
            timeout=15,
            what="the rejected message in the dead-letter queue",
        )
        assert dead == b'{"event": 1}'
        # Nothing outside the project's names.
        assert _refused(lambda: worker.channel().queue_declare("someone-elses-queue")) == 403
        other = worker.channel()
        other.confirm_delivery()
        assert _refused(lambda: other.basic_publish("amq.topic", "x", b"{}")) == 403
    finally:
        if worker.is_open:
            worker.close()

    # The scaler reads the queue's counts through the management API, and nothing else.
    user, password = broker.users["scaler"]
    with ManagementApiSource(
        MANAGEMENT_URL, broker.vhost, TOPOLOGY.queue, user=user, password=password
    ) as source:
        observation = wait_for(_reading(source), timeout=30, interval=0.5, what="queue counts")
    assert observation.messages() == 0
    with pytest.raises(PermanentError, match="401"):
        apply_queue_policy(broker.management("scaler"), TOPOLOGY)
    scaler = broker.pika("scaler")
    try:
        channel = scaler.channel()
        channel.confirm_delivery()
        assert _refused(lambda: channel.basic_publish(TOPOLOGY.exchange, "x", b"{}")) == 403
    finally:
        if scaler.is_open:
            scaler.close()


def _reading(source: ManagementApiSource) -> Any:
    from conversation_events_scaler.errors import MetricsUnavailable

    def read() -> Any:
        try:
            return source.read()
        except MetricsUnavailable:
            return None  # no statistics for a new queue yet

    return read
