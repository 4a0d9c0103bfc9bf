"""Prestart step: wait for PostgreSQL, create the database if asked, apply Alembic migrations;
with ``--broker``, also apply the queue policy through RabbitMQ's management API.

Run as ``conversation-events-migrate [--create-database] [--broker] [--timeout S]``;
the chart runs it as a pre-install/pre-upgrade hook Job, ``scripts/stack up`` runs it directly.
``--sql`` prints the upgrade's SQL instead of running it (for a DBA's review; no connection),
``--check`` fails when the table definitions and the migrations disagree (``scripts/lint``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from conversation_events.logs import configure_logging
from conversation_events.messaging.policy import apply_queue_policy_until
from conversation_events.settings import CommonSettings

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "persistence" / "migrations"


def alembic_config(url: str, *, lock_timeout: str | None = None) -> Config:
    """Alembic's configuration for `url`; `lock_timeout` overrides env.py's (e.g. "10s")."""
    config = Config()
    if lock_timeout is not None:
        config.cmd_opts = argparse.Namespace(x=[f"lock_timeout={lock_timeout}"])
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's Config goes through configparser: escape % in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def wait_for_server(url: URL, timeout_s: float) -> None:
    """Poll until the server accepts connections.

    Connects to the target database itself, so it works where the application's user may not
    open the `postgres` database (managed services); a target that does not exist yet still
    proves the server is up.
    """
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except OperationalError as exc:
                if "does not exist" in str(exc.orig):
                    return
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"PostgreSQL not reachable after {timeout_s:.0f}s: {exc.orig}"
                    ) from exc
                log.info("waiting for PostgreSQL", extra={"host": url.host})
                time.sleep(1)
    finally:
        engine.dispose()


def create_database(url: URL) -> None:
    """Create the URL's database when it does not exist (development and tests)."""
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).scalar()
            if not exists:
                quoted = conn.dialect.identifier_preparer.quote(url.database or "")
                conn.execute(text(f"CREATE DATABASE {quoted}"))
                log.info("created database", extra={"database": url.database})
    finally:
        engine.dispose()


def migrate(url: str, *, create: bool = False, timeout_s: float = 60.0) -> None:
    """Wait for the server, optionally create the database, upgrade the schema to head."""
    parsed = make_url(url)
    wait_for_server(parsed, timeout_s)
    if create:
        create_database(parsed)
    command.upgrade(alembic_config(url), "head")
    log.info("schema at head", extra={"database": parsed.database})


def upgrade_sql(url: str, revisions: str = "head") -> None:
    """Print the SQL of an upgrade (offline: nothing connects), e.g. ``0001:head``."""
    command.upgrade(alembic_config(url), revisions, sql=True)


def check(url: str) -> None:
    """Raise unless the migrations at head produce exactly the tables in `tables.py`.

    Upgrades the (scratch) database at `url` to head first.
    """
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.check(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--create-database", action="store_true", help="create it if missing")
    parser.add_argument(
        "--broker", action="store_true", help="also apply the queue policy (management API)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each server"
    )
    parser.add_argument(
        "--sql",
        nargs="?",
        const="head",
        metavar="REVISIONS",
        help="print the upgrade's SQL (default head; e.g. 0001:head) instead of running it",
    )
    parser.add_argument(
        "--check", action="store_true", help="upgrade, then fail if tables.py and migrations differ"
    )
    args = parser.parse_args()
    settings = CommonSettings()
    configure_logging("migrate", settings.log_level)
    url = settings.database_url.get_secret_value()
    if args.sql:
        upgrade_sql(url, args.sql)
        return
    if args.check:
        wait_for_server(make_url(url), args.timeout)
        if args.create_database:
            create_database(make_url(url))
        check(url)
        return
    migrate(
        settings.database_url.get_secret_value(),
        create=args.create_database,
        timeout_s=args.timeout,
    )
    if args.broker:
        apply_queue_policy_until(settings.management_api(), settings.topology(), args.timeout)


if __name__ == "__main__":
    main()
