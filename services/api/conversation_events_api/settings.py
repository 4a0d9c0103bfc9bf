"""API settings (environment variables with the `CE_` prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator

from conversation_events.access import MIN_KEY_LENGTH
from conversation_events.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_keys: SecretStr = Field(
        SecretStr(""),
        description=(
            "Comma-separated bootstrap API keys (header X-API-Key or Authorization: Bearer), "
            f"each at least {MIN_KEY_LENGTH} characters: every scope in the default tenant, "
            "and the right to manage every tenant's keys. Meant to create the first keys "
            "(POST /v1/admin/keys or `conversation-events-keys create`), which "
            "live hashed in PostgreSQL. Empty: only keys from the database are accepted."
        ),
    )
    api_key_cache_s: float = Field(
        2.0,
        gt=0,
        le=5,
        description=(
            "Seconds an API process trusts its last lookup of a key: a revoked key is refused "
            "by every process within this time; each key costs one query per process per "
            "period. At most 5 (the documented revocation delay)."
        ),
    )
    host: str = Field("127.0.0.1", description="Listen address; 0.0.0.0 in containers.")
    port: int = Field(8000, ge=0, le=65535, description="Listen port (0: pick a free one).")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body in bytes; larger ones get 413."
    )
    max_batch_body_bytes: int = Field(
        4 * 1_048_576,
        ge=1024,
        description=(
            "Largest body of POST /v1/conversations/end:batch in bytes; larger ones get 413. "
            "Default 4 MiB: 500 conversations of 8 KB each (the bench's average is 3.5 KB)."
        ),
    )
    max_batches_in_flight: int = Field(
        2,
        ge=1,
        description=(
            "Most batch requests one process handles at once; more get an immediate 503 "
            "(`overloaded`) before their body is read, not after the CPU of validating it. "
            "Default 2: enough to keep the writer busy (one batch is validated while the other "
            "is stored), and two batches of 500 fill CE_WRITER_MAX_PENDING's default (1000). "
            "Also bounds the memory batches hold (2 x CE_MAX_BATCH_BODY_BYTES, and their "
            "parsed form)."
        ),
    )
    max_log_items: int = Field(
        2000, ge=1, description="Most messages one conversation may carry (bounded work per event)."
    )
    db_pool_size: int = Field(
        8, ge=2, description="PostgreSQL connections per API process (writer, reads, relay)."
    )
    writer_batch_size: int = Field(
        200,
        ge=1,
        description="Most events inserted by one statement; concurrent requests share a batch.",
    )
    writer_concurrency: int = Field(
        2, ge=1, description="Insert batches in flight at once (each on its own connection)."
    )
    writer_batch_window_s: float = Field(
        0.01,
        ge=0.0,
        le=0.1,
        description=(
            "How long the writer waits for more events when fewer than a batch are waiting "
            "(0: at once). At light load requests arriving within it share one transaction, "
            "at the cost of at most this much latency."
        ),
    )
    publish_batch_window_s: float = Field(
        0.05,
        ge=0.0,
        le=0.5,
        description=(
            "How long the publisher waits for more stored events when fewer than a batch are "
            "waiting (0: at once). At light load the events of several inserts share one "
            "publish and its confirms, at the cost of at most this much lag; the answer to "
            "the request does not wait for it."
        ),
    )
    publish_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for the broker's confirm of one publish."
    )
    relay_interval_s: float = Field(2.0, gt=0, description="Seconds between outbox relay passes.")
    relay_delay_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Age in seconds after which an unconfirmed PENDING event is republished; longer "
            "than a normal publish takes, so the relay does not race the publisher."
        ),
    )
    relay_redrive_after_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description=(
            "Horizon in seconds: a PENDING event published this long ago and still not started "
            "is republished, whatever its publish record says (its message may have been "
            "returned, dead-lettered, purged or lost). Longer than a normal queue wait, short "
            "enough that a lost message costs minutes at most; duplicates are harmless."
        ),
    )
    relay_batch_size: int = Field(500, ge=1, description="Most events one relay pass republishes.")
    retry_after_s: int = Field(
        5,
        ge=1,
        description=(
            "Retry-After seconds sent with every 503 (database unreachable, read-only or past its "
            "deadline; process overloaded)."
        ),
    )
    request_timeout_s: float = Field(
        5.0,
        gt=0,
        le=30,
        description=(
            "Client-side deadline in seconds for the database work of one request (the insert, "
            "the reads); past it the answer is 503 + Retry-After. Default "
            "5: a client learns within seconds to retry, even when PostgreSQL's socket is open "
            "but silent; normal work takes milliseconds. The thread doing the work is freed by "
            "the engine's watchdog (CE_DB_DEADLINE_S), which the request does not wait for."
        ),
    )
    max_in_flight: int = Field(
        64,
        ge=1,
        description=(
            "Most /v1 requests one process handles at once; more get an immediate 503 "
            "(`overloaded`). Default 64: enough to keep the writer at its full rate (~600/s "
            "on one core is reached with 64 concurrent requests), while the requests it admits "
            "wait well under a second even when the process gets only part of a core (about "
            "64 / accepted rate). It also bounds the request bodies held in memory "
            "(64 x CE_MAX_BODY_BYTES)."
        ),
    )
    writer_max_pending: int = Field(
        1000,
        ge=1,
        description=(
            "Most events waiting for an insert batch; past it a POST gets 503 (`overloaded`) "
            "at once. A backstop under CE_MAX_IN_FLIGHT for bursts that would otherwise queue "
            "for longer than the request deadline."
        ),
    )
    writer_max_wait_s: float = Field(
        0.25,
        gt=0,
        description=(
            "Longest wait in seconds of the oldest event queued for an insert batch before new "
            "POSTs get 503 (`overloaded`) at once. Adapts the bound to the rate the writer "
            "actually achieves: on a starved CPU or a slow database a fixed count would still "
            "mean waits of seconds. 0.25 s is several batch times on a healthy process."
        ),
    )
    publish_max_pending: int = Field(
        10_000,
        ge=1,
        description=(
            "Most committed events waiting for their first publish. Past it the message is not "
            "queued (counted as publish failure `queue_full`) and the relay publishes the event "
            "after CE_RELAY_DELAY_S: the request still gets 202. Default: about 15 s of the "
            "process's full accept rate, a few MB."
        ),
    )
    client_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a client has to send a request's head, and again its body; a slower one "
            "has its connection closed (head) or gets 408 (body). Bounds the connections and "
            "in-flight slots that slow or stalled clients can hold; 10 s is ample for 1 MiB."
        ),
    )
    keep_alive_s: int = Field(
        5,
        ge=1,
        description=(
            "Seconds an idle keep-alive connection stays open between requests (uvicorn's "
            "timeout_keep_alive). Behind a load balancer keep it longer than the balancer's idle "
            "timeout, or both may close the same connection as a request arrives."
        ),
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "Port of a listener of its own for /metrics (on CE_HOST); 0 serves /metrics on "
            "the API port (development). The chart sets 9090, a port its Ingress never routes, "
            "so the metrics are not public wherever the API is."
        ),
    )
    request_log: bool = Field(
        True,
        description=(
            "One JSON line per /v1 request and per failed probe (logger "
            "`conversation_events_api.requests`): method, route template, status, duration, "
            "key name, tenant, request and trace ids; never content or a key."
        ),
    )
    docs_enabled: bool | None = Field(
        None,
        description=(
            "Serve /docs and /openapi.json. Unset: on in development, off in production, where "
            "the API's shape is nobody's business but its clients' (set true to publish it)."
        ),
    )
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description=(
            "How far in the future (seconds past this process's clock) an instant in a request "
            "may be; later ones get 422. Producers' clocks drift a little, but an end_time far "
            "ahead would freeze the user's streak and last interaction date until it passes."
        ),
    )

    @field_validator("api_keys")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        short = [
            k for k in value.get_secret_value().split(",") if 0 < len(k.strip()) < MIN_KEY_LENGTH
        ]
        if short:
            raise ValueError(f"every API key needs at least {MIN_KEY_LENGTH} characters")
        return value

    @property
    def serves_docs(self) -> bool:
        if self.docs_enabled is None:
            return self.environment == "development"
        return self.docs_enabled

    def key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    def production_secrets(self) -> dict[str, str]:
        secrets = super().production_secrets()
        keys = self.key_list()
        secrets["API key"] = "" if not keys else min(keys, key=len)
        return secrets


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
