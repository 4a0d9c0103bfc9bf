"""Ceiling of the broker: raw pipelined, confirmed, persistent publishes to a quorum queue.

One aiormq channel in confirm mode keeps `--window` publishes in flight (the next one goes
out as soon as any confirm returns), with our message size and queue arguments. This bounds
the rate at which any publisher on this machine can get durable confirms.

`python -m bench.baselines.ceilings.amqp --url amqp://... --queue Q --duration 5`
prints JSON: messages, seconds, messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import aiormq
import orjson

from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology


async def measure(url: str, queue: str, window: int, duration: float) -> dict[str, float]:
    topology = Topology(queue + ".exchange", queue, 50)
    connection = await aiormq.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.queue_declare(queue, durable=True, arguments=topology.queue_arguments)
    body = EventMessage.now(str(uuid.uuid4()), "conv-x" * 4, "user-x" * 3, "bot-1").to_bytes()
    props = aiormq.spec.Basic.Properties(delivery_mode=2, content_type="application/json")
    confirmed = 0
    sem = asyncio.Semaphore(window)
    pending: set[asyncio.Future[Any]] = set()
    started = time.perf_counter()
    until = started + duration

    def done(fut: asyncio.Future[Any]) -> None:
        nonlocal confirmed
        pending.discard(fut)
        sem.release()
        if not fut.cancelled() and fut.exception() is None:
            confirmed += 1

    while time.perf_counter() < until:
        await sem.acquire()
        fut = asyncio.ensure_future(
            channel.basic_publish(body, routing_key=queue, properties=props)
        )
        pending.add(fut)
        fut.add_done_callback(done)
    if pending:
        await asyncio.wait(pending)
    elapsed = time.perf_counter() - started
    await channel.queue_delete(queue)
    await connection.close()
    return {"messages": confirmed, "seconds": elapsed, "messages_per_s": confirmed / elapsed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    import uvloop

    result = uvloop.run(measure(args.url, args.queue, args.window, args.duration))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
