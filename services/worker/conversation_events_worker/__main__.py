"""`conversation-events-worker`: consume until SIGTERM, drain, exit 0."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from conversation_events import telemetry
from conversation_events.logs import configure_logging
from conversation_events.messaging.policy import ensure_queue_policy
from conversation_events_worker.consumer import Consumer, batches_at_once
from conversation_events_worker.http import serve
from conversation_events_worker.settings import get_settings

log = logging.getLogger("conversation_events_worker")


def main() -> int:
    settings = get_settings()
    configure_logging("worker", settings.log_level)
    telemetry.configure_tracing("worker")
    engine = settings.make_engine(
        pool_size=batches_at_once(settings) + 1,
        application_name="conversation-events-worker",
    )
    config = settings.processing_config()
    consumer = Consumer(settings, engine, config)
    # Dead-lettering and the delivery limit, as this release configures them (idempotent).
    if settings.queue_policy_on_start:
        ensure_queue_policy(settings.management_api(), settings.topology())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal received; draining", extra={"signal": signal.Signals(signum).name})
        consumer.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = (
        serve(settings.worker_http_host, settings.worker_http_port, consumer.health)
        if settings.worker_http_port
        else None
    )
    try:
        return consumer.run()
    finally:
        if server is not None:
            server.stop()
        engine.dispose()
        telemetry.shutdown()  # export the spans still buffered


if __name__ == "__main__":
    sys.exit(main())
