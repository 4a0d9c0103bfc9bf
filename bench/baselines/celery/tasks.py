"""The usual alternative: a Celery task per event on RabbitMQ, running our processing code.

Worker options are tuned for a 2-core machine rather than left at Celery's defaults
(`acks_late`, so a crash redelivers instead of losing the event; a prefetch multiplier and a
pool chosen by measurement, see docs/benchmarks.md). Results are not stored (no backend).

Environment: BENCH_DATABASE_URL, BENCH_AMQP_URL, BENCH_QUEUE, BENCH_CELERY_PREFETCH.
Worker: `celery -A bench.baselines.celery.tasks worker --pool prefork --concurrency 2`.
"""

from __future__ import annotations

import os
from zoneinfo import ZoneInfo

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import Engine

from bench.baselines.common import engine as baseline_engine
from conversation_events.errors import RetryableError
from conversation_events.processing import ProcessingConfig, process_event

QUEUE = os.environ.get("BENCH_QUEUE", "celery")

app = Celery("bench_celery", broker=os.environ.get("BENCH_AMQP_URL", "amqp://"))
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "8")),
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
)

_config = ProcessingConfig(zone=ZoneInfo("Asia/Ho_Chi_Minh"), max_attempts=5, lease_s=300)
_engine: Engine | None = None


def engine() -> Engine:
    """One engine per worker process, created after the fork (connections never cross it)."""
    global _engine
    if _engine is None:
        _engine = baseline_engine(
            "bench-celery-worker", pool_size=int(os.environ.get("BENCH_CELERY_POOL", "4"))
        )
    return _engine


@worker_process_init.connect
def _reset_engine(**_: object) -> None:
    global _engine
    _engine = None


@app.task(
    name="process_conversation_event",
    autoretry_for=(RetryableError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=5,
)
def process_conversation_event(event_id: str) -> None:
    process_event(engine(), event_id, _config)
