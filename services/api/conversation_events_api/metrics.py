"""Prometheus metrics of the API process."""

from prometheus_client import Counter, Gauge, Histogram

ACCEPTED = Counter("conversation_events_accepted_total", "Events stored and answered 202 (new).")
DUPLICATES = Counter(
    "conversation_events_duplicates_total", "Idempotent re-sends answered 202 with the stored id."
)
CONFLICTS = Counter(
    "conversation_events_conflicts_total", "Re-used conversation ids with other content (409)."
)
REJECTED = Counter(
    "conversation_events_rejected_total", "Requests refused before storing.", ["reason"]
)
PUBLISHED = Counter(
    "conversation_events_published_total", "Messages confirmed by the broker.", ["source"]
)
PUBLISH_FAILURES = Counter(
    "conversation_events_publish_failures_total",
    "Publishes not confirmed (the relay republishes them), by reason: returned (routed to no "
    "queue), nacked, timeout, unavailable (no broker channel), queue_full (publisher backlog).",
    ["reason"],
)
SHED = Counter(
    "conversation_events_shed_total",
    "Requests answered 503 `overloaded`, by the bound they met: in_flight, writer or batches.",
    ["bound"],
)
IN_FLIGHT = Gauge(
    "conversation_events_http_in_flight", "/v1 requests being handled now (CE_MAX_IN_FLIGHT)."
)
RELAY_REPUBLISHED = Counter(
    "conversation_events_relay_republished_total",
    "Events republished by the relay: unconfirmed, past the re-drive horizon, or due retries.",
)
LEASES_RELEASED = Counter(
    "conversation_events_leases_released_total",
    "PROCESSING events whose lease expired, handed back to the queue.",
)
OLDEST_UNFINISHED = Gauge(
    "conversation_events_oldest_unfinished_event_age_seconds",
    "Age of the oldest PENDING or PROCESSING event (0 when none), measured in PostgreSQL by the "
    "relay of each API process; alert when it outgrows the re-drive horizon.",
    multiprocess_mode="livemax",
)
PURGE_LAST_RUN = Gauge(
    "conversation_events_purge_last_run_timestamp_seconds",
    "When the last retention purge finished (Unix time; 0 before the first). The purge runs as "
    "a short-lived job that records each run in PostgreSQL; the relay of each API process "
    "reads the last one. Alert when it is older than the schedule allows.",
    multiprocess_mode="livemax",
)
PURGE_LAST_ROWS = Gauge(
    "conversation_events_purge_last_run_rows",
    "Rows the last retention purge changed, by action: content_dropped, events_deleted.",
    ["action"],
    multiprocess_mode="livemax",
)
PURGE_LAST_SECONDS = Gauge(
    "conversation_events_purge_last_run_duration_seconds",
    "How long the last retention purge took.",
    multiprocess_mode="livemax",
)
BROKER_CONNECTED = Gauge(
    "conversation_events_publisher_connected", "1 while the publisher holds a broker channel."
)
REQUEST_SECONDS = Histogram(
    "conversation_events_http_request_seconds",
    "HTTP request latency by route template and status class.",
    ["route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LOOP_LAG = Histogram(
    "conversation_events_event_loop_lag_seconds",
    "How late the event loop ran a timer due every 0.25 s: time every request waits before its "
    "turn, on top of its own work (CPU starvation, or a blocking call on the loop).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FORBIDDEN = Counter(
    "conversation_events_forbidden_total",
    "Requests refused (403) because the key lacks a scope, by key name (never the key).",
    ["key", "scope"],
)
ERASURES = Counter(
    "conversation_events_erasures_total",
    "Users erased through DELETE /v1/users/{user_id}, by the admin key's name.",
    ["key"],
)
