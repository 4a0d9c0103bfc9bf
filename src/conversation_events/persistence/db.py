"""Engines and the translation of database errors into the project's error tree."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import orjson
from sqlalchemy import Connection, Engine, create_engine, exc

from conversation_events.errors import DatabaseUnavailable, PermanentError, RetryableError

# SQLSTATE classes that mean "try again": connection exceptions (08), insufficient resources
# (53), operator intervention such as admin shutdown (57), serialization failure and deadlock
# (40001, 40P01), and query_canceled by statement_timeout (57014, inside class 57).
_RETRYABLE_SQLSTATE_PREFIXES = ("08", "53", "57", "40001", "40P01")


def make_engine(
    url: str,
    *,
    pool_size: int,
    connect_timeout_s: float,
    statement_timeout_ms: int,
    application_name: str,
    pre_ping: bool = True,
) -> Engine:
    """An engine with a bounded pool, fast connect failures and a server-side statement timeout.

    `pre_ping` makes a connection that died with a PostgreSQL restart get replaced instead of
    failing its next use, at the price of one round trip per checkout. Without it, the first
    use of a dead connection fails and invalidates the whole pool; `in_transaction` then
    retries once on a fresh connection.
    """
    options = f"-c statement_timeout={statement_timeout_ms}"
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=connect_timeout_s,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        json_serializer=lambda value: orjson.dumps(value).decode(),
        json_deserializer=orjson.loads,
        connect_args={
            "connect_timeout": max(1, round(connect_timeout_s)),
            "options": options,
            "application_name": application_name,
            # Detect a dead server on an idle connection within seconds, not minutes.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        },
    )


T = TypeVar("T")


def in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """`work` in one transaction; redone once on a fresh connection if the pooled one was dead.

    `work` must be safe to redo: the connection may have died after the commit was sent.
    """
    try:
        with engine.begin() as conn:
            return work(conn)
    except exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
    with engine.begin() as conn:
        return work(conn)


def is_retryable(error: exc.SQLAlchemyError) -> bool:
    """Whether a SQLAlchemy error is transient (connection trouble, timeouts, contention)."""
    if isinstance(error, exc.TimeoutError):  # pool exhausted
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        code = getattr(error.orig, "pgcode", None)
        if code is None:
            # psycopg2 gives no SQLSTATE when the connection itself failed.
            return isinstance(error, exc.OperationalError | exc.InterfaceError)
        return code.startswith(_RETRYABLE_SQLSTATE_PREFIXES)
    return False


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise SQLAlchemy errors as `DatabaseUnavailable`/`RetryableError` or `PermanentError`."""
    try:
        yield
    except exc.SQLAlchemyError as error:
        if is_retryable(error):
            if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
                raise DatabaseUnavailable(_short(error)) from error
            raise RetryableError(_short(error)) from error
        raise PermanentError(_short(error)) from error


def _short(error: BaseException) -> str:
    """The first line of a driver error: enough to diagnose, without parameters or SQL."""
    orig = getattr(error, "orig", None) or error
    return f"{type(orig).__name__}: {str(orig).strip().splitlines()[0] if str(orig) else ''}"
