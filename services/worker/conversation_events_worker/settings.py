"""Worker settings (environment variables with the `CE_` prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from conversation_events.processing import ProcessingConfig
from conversation_events.settings import CommonSettings


class WorkerSettings(CommonSettings):
    worker_prefetch: int = Field(
        100,
        ge=1,
        le=1000,
        description=(
            "C: messages one worker process holds unacked (basic_qos prefetch). C/B batches "
            "run at once, each on its own thread and database connection; see "
            "docs/autoscaling.md for sizing."
        ),
    )
    worker_batch_size: int = Field(
        50,
        ge=1,
        le=1000,
        description=(
            "B: most messages processed in one batch (one locked PostgreSQL transaction). "
            "Batches amortise round trips, statements and commits: 50 processes about twice "
            "as many events per CPU second as 5. A free thread takes what has arrived, so "
            "batches fill only under load and latency never waits for one."
        ),
    )
    worker_batch_window_s: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description=(
            "How long a batch smaller than B waits for more messages before it is processed "
            "(0: at once). At light load it turns one transaction per event into one per "
            "window, at the cost of at most this much lag."
        ),
    )
    worker_http_host: str = Field("0.0.0.0", description="Listen address of /healthz, /metrics.")  # noqa: S104
    worker_http_port: int = Field(
        9100, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics (0: disabled)."
    )
    worker_lease_s: float = Field(
        300.0,
        gt=0,
        description=(
            "Seconds an event may stay PROCESSING before the relay hands it to another worker; "
            "far above the slowest processing, so only dead workers lose their lease."
        ),
    )
    worker_retry_base_s: float = Field(
        0.5,
        gt=0,
        description=(
            "First retry delay in seconds after a transient failure of one event: the event's "
            "not_before, after which the relay republishes it (no thread or message waits). "
            "Short, because most such failures (a deadlock, a timeout) pass at once."
        ),
    )
    worker_retry_cap_s: float = Field(
        30.0,
        gt=0,
        description=(
            "Longest retry delay in seconds (doubling per consecutive failure of the event in "
            "this worker, jittered to half..all of it). With CE_MAX_ATTEMPTS at 5 the delays "
            "stay at or below 4 s; the cap bounds larger attempt budgets."
        ),
    )
    worker_db_probe_base_s: float = Field(
        0.5,
        gt=0,
        description=(
            "Seconds before the first probe of PostgreSQL once a batch found it unreachable "
            "(its messages are then held unacked, not returned). Doubles per failed probe up "
            "to `worker_db_probe_cap_s`; a probe is one connection attempt, so short is cheap."
        ),
    )
    worker_db_probe_cap_s: float = Field(
        5.0,
        gt=0,
        description=(
            "Longest delay in seconds between probes of an unreachable PostgreSQL: held "
            "messages resume at most about this long after the database answers again."
        ),
    )
    worker_idle_resubscribe_s: float = Field(
        15.0,
        ge=0,
        description=(
            "Seconds without a delivery, holding nothing, after which the consumer moves to a "
            "fresh channel (0: never). RabbitMQ 3.10 can leave a consumer registered but "
            "starved, without a Basic.Cancel, when its quorum queue is deleted and re-declared "
            "at once; this bounds such a stall to about this long. Costs one channel open, "
            "declare and consume per interval, and only while idle."
        ),
    )
    worker_drain_timeout_s: float = Field(
        25.0,
        gt=0,
        description=(
            "On SIGTERM: seconds to finish in-flight events before closing anyway (their "
            "messages then return to the queue). Below the pod's terminationGracePeriodSeconds."
        ),
    )
    retention_content_days: int = Field(
        30,
        ge=0,
        le=3650,
        description=(
            "Days a PROCESSED or SKIPPED event keeps its content (log and metadata) after it "
            "was processed; the purge drops it then (content hash and score breakdown stay, so "
            "re-sends are still recognised). 0: the worker drops it as it finishes the event. "
            "30 days leaves time to investigate a wrong score; FAILED and unfinished events "
            "keep their content until resolved."
        ),
    )
    retention_event_days: int = Field(
        400,
        ge=1,
        le=36500,
        description=(
            "Days after processing when the purge deletes a PROCESSED or SKIPPED event row: "
            "also the idempotency window (a conversation re-sent later is stored as new). Just "
            "over a year, so yearly reports and late re-sends still find their events."
        ),
    )
    purge_batch_size: int = Field(
        1000,
        ge=1,
        le=100_000,
        description=(
            "Rows one purge transaction drops or deletes: small, so its locks are short and "
            "the accept path does not notice it."
        ),
    )
    purge_pause_s: float = Field(
        0.8,
        ge=0,
        le=60,
        description=(
            "Seconds the purge pauses between two full batches, so that the accept path's "
            "commits find the disk and the WAL free most of the time; 0: no pause."
        ),
    )
    heartbeat_s: int = Field(
        30,
        ge=0,
        description="AMQP heartbeat in seconds; a dead peer is detected in about twice this.",
    )

    def processing_config(self) -> ProcessingConfig:
        """How this worker processes events (zone, attempts, lease, content retention 0)."""
        return ProcessingConfig(
            zone=self.zone,
            max_attempts=self.max_attempts,
            lease_s=self.worker_lease_s,
            drop_content=self.retention_content_days == 0,
        )


@lru_cache
def get_settings() -> WorkerSettings:
    return WorkerSettings()


class PurgeSettings(WorkerSettings):
    """What `admin purge` reads: it connects to PostgreSQL only, so it is given no AMQP URL
    (least privilege) and only the database password must be real in production."""

    def production_secrets(self) -> dict[str, str]:
        return {k: v for k, v in super().production_secrets().items() if k.startswith("database")}
