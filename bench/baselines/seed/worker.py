"""The design note's worker (section 8.2.2): `prefetch_count=1`, one message at a time.

It loads the event from the database and runs the same processing as our worker
(`conversation_events.processing.process_event`: claim, score, update the friendship status),
then acks; on failure it nacks with requeue, as the note does.

Run: `python -m bench.baselines.seed.worker` with BENCH_DATABASE_URL, BENCH_AMQP_URL and
BENCH_QUEUE in the environment; stops on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
from zoneinfo import ZoneInfo

import orjson
import pika

from bench.baselines.common import engine as baseline_engine
from conversation_events.processing import ProcessingConfig, process_event

logger = logging.getLogger(__name__)


def main() -> None:
    queue = os.environ["BENCH_QUEUE"]
    engine = baseline_engine("bench-seed-worker", pool_size=2)
    config = ProcessingConfig(zone=ZoneInfo("Asia/Ho_Chi_Minh"), max_attempts=5, lease_s=300)
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["BENCH_AMQP_URL"]))
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    channel.basic_qos(prefetch_count=1)

    def callback(ch, method, properties, body):  # type: ignore[no-untyped-def]
        try:
            message = orjson.loads(body)
            process_event(engine, message["event_id"], config)
            ch.basic_ack(delivery_tag=method.delivery_tag)
        except Exception as exc:
            logger.error(f"processing failed: {exc!s}")
            ch.basic_nack(delivery_tag=method.delivery_tag, requeue=True)

    channel.basic_consume(queue=queue, on_message_callback=callback)
    signal.signal(signal.SIGTERM, lambda *_: channel.stop_consuming())
    channel.start_consuming()
    connection.close()


if __name__ == "__main__":
    main()
