"""Settings shared by every process.

Each service defines one subclass with its own fields; all read environment variables with the
``CE_`` prefix so that one Kubernetes ConfigMap/Secret serves every deployable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conversation_events.messaging.brokers import amqp_urls, password, with_credentials
from conversation_events.messaging.policy import ManagementApi
from conversation_events.messaging.topology import Topology

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: Values that must never reach production as credentials.
PLACEHOLDER_SECRETS = frozenset({"", "guest", "postgres", "changeme", "dev-key", "secret"})


class CommonSettings(BaseSettings):
    """Fields every process needs: where the database and the broker are, and their names."""

    model_config = SettingsConfigDict(env_prefix="CE_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses placeholder credentials; `development` allows them.",
    )
    database_url: SecretStr = Field(
        SecretStr("postgresql+psycopg2://postgres@127.0.0.1:5432/conversation_events"),
        description="SQLAlchemy URL of PostgreSQL (psycopg2 driver). Default: the local dev DB.",
    )
    amqp_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F"),
        description=(
            "AMQP URL of RabbitMQ; `amqps://` for TLS. Several comma-separated URLs for the "
            "nodes of a cluster: each process connects to any live one and moves to another "
            "when its node dies. Default: the local dev broker."
        ),
    )
    management_url: SecretStr = Field(
        SecretStr("http://127.0.0.1:15672"),
        description=(
            "Base URL of the RabbitMQ management API, where the queue policy (dead-lettering, "
            "delivery limit) is applied on start; several comma-separated URLs for the nodes "
            "of a cluster, tried in turn until one answers. Credentials from the userinfo of "
            "the first URL that has some, else the AMQP URL's user (which then needs the "
            "`policymaker` tag)."
        ),
    )
    database_username: str | None = Field(
        None,
        description=(
            "User name put into `database_url` in place of its own (from a Secret of an "
            "operator or a managed service, for instance); unset: the URL's."
        ),
    )
    database_password: SecretStr | None = Field(
        None,
        description=(
            "Password put into `database_url` (percent-encoded by the settings); unset: the "
            "URL's. Lets the URL stay free of secrets."
        ),
    )
    amqp_username: str | None = Field(
        None,
        description="User name put into every AMQP URL in place of its own; unset: the URLs'.",
    )
    amqp_password: SecretStr | None = Field(
        None,
        description=(
            "Password put into every AMQP URL (percent-encoded by the settings); unset: the URLs'."
        ),
    )
    queue_policy_on_start: bool = Field(
        True,
        description=(
            "Apply the queue policy through the management API when the API or a worker "
            "starts. Off where the deployment's migration step applies it and this process's "
            "broker user may not (no `policymaker` tag)."
        ),
    )
    exchange_name: str = Field(
        "conversation_events",
        description="Durable direct exchange the events are published to.",
    )
    queue_name: str = Field(
        "conversation_events_processing",
        description=(
            "Durable quorum queue the workers consume; the dead-letter names derive from it."
        ),
    )
    delivery_limit: int = Field(
        50,
        ge=1,
        description=(
            "Broker-side safety net (the queue policy's `delivery-limit`): deliveries before a "
            "message is dead-lettered even if the database could not count its attempts. Well "
            "above `max_attempts` so the database count decides in normal operation. A policy, "
            "so it may change between restarts."
        ),
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Processing attempts, counted in the database, before an event is FAILED.",
    )
    timezone: str = Field(
        "Asia/Ho_Chi_Minh",
        description="IANA zone whose calendar days define streaks.",
    )
    db_connect_timeout_s: float = Field(
        3.0,
        gt=0,
        description=(
            "Seconds to wait for a PostgreSQL connection; short, so outages surface as 503."
        ),
    )
    db_statement_timeout_ms: int = Field(
        10_000,
        ge=0,
        description=(
            "Server-side statement timeout in milliseconds (0 = none); bounds stuck queries."
        ),
    )
    db_deadline_s: float = Field(
        15.0,
        gt=0,
        description=(
            "Client-side deadline in seconds of one database round trip (statement, commit), "
            "and the connections' tcp_user_timeout: a server that stops answering with its "
            "socket open fails the call instead of hanging its thread. Above the statement "
            "timeout, so a merely slow query is cancelled by the server first."
        ),
    )
    log_level: str = Field("INFO", description="Root log level (Python logging names).")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _credentials_into_urls(self) -> CommonSettings:
        """Put `database_*` and `amqp_*` credentials into the URLs (before they are checked)."""
        if self.database_username is not None or self.database_password is not None:
            from sqlalchemy.engine import make_url

            url = make_url(self.database_url.get_secret_value())
            if self.database_username is not None:
                url = url.set(username=self.database_username)
            if self.database_password is not None:
                url = url.set(password=self.database_password.get_secret_value())
            self.database_url = SecretStr(url.render_as_string(hide_password=False))
        if self.amqp_username is not None or self.amqp_password is not None:
            self.amqp_url = SecretStr(
                ",".join(
                    with_credentials(
                        url,
                        self.amqp_username,
                        None
                        if self.amqp_password is None
                        else self.amqp_password.get_secret_value(),
                    )
                    for url in amqp_urls(self.amqp_url.get_secret_value())
                )
            )
        return self

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> CommonSettings:
        if self.environment == "production":
            for name, secret in self.production_secrets().items():
                if secret in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{name} holds a placeholder credential in production")
        return self

    def production_secrets(self) -> dict[str, str]:
        """Secrets that must not be placeholders in production (subclasses add theirs)."""
        from sqlalchemy.engine import make_url

        db_password = make_url(self.database_url.get_secret_value()).password or ""
        urls = amqp_urls(self.amqp_url.get_secret_value())
        secrets = {"database password": db_password}
        for i, url in enumerate(urls, start=1):
            secrets["AMQP password" if len(urls) == 1 else f"AMQP password of URL {i}"] = password(
                url
            )
        return secrets

    def make_engine(
        self, *, pool_size: int, application_name: str, pre_ping: bool = True
    ) -> Engine:
        """An engine to `database_url` with this process's timeouts and deadline."""
        from conversation_events.persistence.db import make_engine

        return make_engine(
            self.database_url.get_secret_value(),
            pool_size=pool_size,
            connect_timeout_s=self.db_connect_timeout_s,
            statement_timeout_ms=self.db_statement_timeout_ms,
            deadline_s=self.db_deadline_s,
            application_name=application_name,
            pre_ping=pre_ping,
        )

    def management_api(self) -> ManagementApi:
        return ManagementApi.for_broker(
            self.management_url.get_secret_value(), self.amqp_url.get_secret_value()
        )

    def topology(self) -> Topology:
        return Topology(self.exchange_name, self.queue_name, self.delivery_limit)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
