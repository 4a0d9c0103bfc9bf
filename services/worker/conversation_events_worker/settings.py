"""Worker settings (environment variables with the `CE_` prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from conversation_events.settings import CommonSettings


class WorkerSettings(CommonSettings):
    worker_prefetch: int = Field(
        10,
        ge=1,
        le=1000,
        description=(
            "C: messages held unacked and processed at once by one worker process "
            "(basic_qos prefetch = thread pool size). Processing is I/O-bound on PostgreSQL, so "
            "several per process keep the CPU busy; see docs/autoscaling.md for sizing."
        ),
    )
    worker_batch_size: int = Field(
        5,
        ge=1,
        le=1000,
        description=(
            "B: most messages processed in one batch (one claim and one locked transaction). "
            "Batches amortise PostgreSQL round trips and commits; with B below C, C/B batches "
            "run at once. Idle, a batch is one message, so latency does not wait for a batch."
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
        0.5, gt=0, description="First retry delay in seconds after a transient failure."
    )
    worker_retry_cap_s: float = Field(
        30.0, gt=0, description="Longest retry delay in seconds (exponential backoff, jittered)."
    )
    worker_drain_timeout_s: float = Field(
        25.0,
        gt=0,
        description=(
            "On SIGTERM: seconds to finish in-flight events before closing anyway (their "
            "messages then return to the queue). Below the pod's terminationGracePeriodSeconds."
        ),
    )
    heartbeat_s: int = Field(
        30,
        ge=0,
        description="AMQP heartbeat in seconds; a dead peer is detected in about twice this.",
    )


@lru_cache
def get_settings() -> WorkerSettings:
    return WorkerSettings()
