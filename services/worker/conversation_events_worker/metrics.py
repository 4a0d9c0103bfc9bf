"""Prometheus metrics of the worker process."""

from prometheus_client import Counter, Gauge, Histogram

PROCESSED = Counter(
    "conversation_events_processed_total",
    "Messages settled successfully, by outcome (processed, skipped, duplicate, exhausted, "
    "erased: its user was erased after it ended, so it was deleted unapplied).",
    ["outcome"],
)
FAILED = Counter("conversation_events_failed_total", "Events that ended FAILED.", ["reason"])
RETRIED = Counter(
    "conversation_events_retried_total",
    "Transient failures recorded as due again later (the relay republishes them).",
)
DEAD_LETTERED = Counter(
    "conversation_events_dead_lettered_total", "Messages rejected to the dead-letter queue."
)
PROCESSING_SECONDS = Histogram(
    "conversation_events_processing_seconds",
    "Time to process one message, from receipt to commit.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LAG_SECONDS = Histogram(
    "conversation_events_lag_seconds",
    "Time from acceptance (202) to PROCESSED.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
IN_FLIGHT = Gauge("conversation_events_worker_in_flight", "Messages being processed right now.")
CONNECTED = Gauge("conversation_events_worker_connected", "1 while consuming from the broker.")
HELD = Gauge(
    "conversation_events_worker_held",
    "Messages held unacked while PostgreSQL is unreachable (not returned to the queue).",
)
DB_PROBE_FAILURES = Counter(
    "conversation_events_worker_db_probe_failures_total",
    "Probes of PostgreSQL that failed while messages were held.",
)
RESUBSCRIBED = Counter(
    "conversation_events_consumer_resubscribed_total",
    "Consumers started again: cancelled by the broker (queue deleted or re-created), or "
    "moved to a fresh channel after an idle interval.",
    ["reason"],
)
