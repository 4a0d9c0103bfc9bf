"""Engines and the translation of database errors into the project's error tree."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine.interfaces import ExceptionContext

from conversation_events.errors import DatabaseUnavailable, PermanentError, RetryableError

log = logging.getLogger(__name__)

# SQLSTATE classes that mean "try again": connection exceptions (08), invalid transaction state
# (25, with 25006 read_only_sql_transaction: a standby, a primary being demoted, or
# default_transaction_read_only during maintenance), insufficient resources (53), operator
# intervention such as admin shutdown (57), serialization failure and deadlock (40001, 40P01),
# and query_canceled by statement_timeout (57014, inside class 57).
_RETRYABLE_SQLSTATE_PREFIXES = ("08", "25", "53", "57", "40001", "40P01")


def make_engine(
    url: str,
    *,
    pool_size: int,
    connect_timeout_s: float,
    statement_timeout_ms: int,
    application_name: str,
    deadline_s: float | None = None,
    pre_ping: bool = True,
) -> Engine:
    """An engine with a bounded pool, fast connect failures and a server-side statement timeout.

    `deadline_s` bounds every round trip on the client side too (see `Deadlines`), and is the
    connections' `tcp_user_timeout`: a server that stops answering fails the call within it.

    `pre_ping` makes a connection that died with a PostgreSQL restart get replaced instead of
    failing its next use, at the price of one round trip per checkout. Without it, the first
    use of a dead connection fails and invalidates the whole pool; `in_transaction` then
    retries once on a fresh connection.
    """
    options = f"-c statement_timeout={statement_timeout_ms}"
    tcp: dict[str, Any] = {}
    if deadline_s is not None:
        # Unacknowledged data for this long closes the connection (a peer gone mid-request).
        tcp["tcp_user_timeout"] = max(1000, round(deadline_s * 1000))
    engine = create_engine(
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
            **tcp,
        },
    )
    if deadline_s is not None:
        Deadlines(deadline_s).install(engine)
    return engine


class Deadlines:
    """Client-side deadlines for database round trips: a silent server cannot hang a thread.

    PostgreSQL's `statement_timeout` is enforced by the server, so it cannot help when the server
    (or the network to it) stops answering while the socket stays open: libpq then waits in
    `recv` forever, and `tcp_user_timeout` only fires when nothing acknowledges what was sent.
    Here every statement, commit, rollback, pool reset and pre-ping is armed with a deadline;
    one watchdog thread (shared by every engine of the process) shuts down the socket of a
    connection whose deadline passes, so the blocked call fails at once with a connection error
    (the project's `DatabaseUnavailable`) and the pool discards that connection. Arming costs a
    lock and a dict update; the watchdog sleeps until the nearest deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def install(self, engine: Engine) -> None:
        watchdog = _Watchdog.shared()
        seconds = self.seconds

        def arm_cursor(conn: Any, cursor: Any, *_: Any) -> None:
            watchdog.arm(cursor.connection, seconds)

        def disarm_cursor(conn: Any, cursor: Any, *_: Any) -> None:
            watchdog.disarm(cursor.connection)

        def arm_transaction_end(conn: Connection, *_: Any) -> None:
            # An invalidated connection sends nothing more (and `.connection` would reconnect).
            if not conn.invalidated and not conn.closed:
                watchdog.arm(conn.connection.dbapi_connection, seconds)

        def on_error(context: ExceptionContext) -> None:
            cursor = getattr(context, "cursor", None)  # not set on every error path
            if cursor is not None:
                watchdog.disarm(cursor.connection)

        event.listen(engine, "before_cursor_execute", arm_cursor)
        event.listen(engine, "after_cursor_execute", disarm_cursor)
        event.listen(engine, "commit", arm_transaction_end)
        event.listen(engine, "rollback", arm_transaction_end)
        event.listen(engine, "handle_error", on_error)
        event.listen(engine.pool, "reset", lambda dbapi, *_: watchdog.arm(dbapi, seconds))
        event.listen(engine.pool, "checkin", lambda dbapi, *_: watchdog.disarm(dbapi))
        # The pool's pre-ping on checkout has no event of its own: its round trip is armed
        # here. Cut, the ping fails as a disconnect, and the pool reconnects (under
        # `connect_timeout`) instead of waiting on the silent connection.
        ping = engine.dialect.do_ping

        def ping_with_deadline(dbapi_connection: Any) -> bool:
            watchdog.arm(dbapi_connection, seconds)
            try:
                return ping(dbapi_connection)
            finally:
                watchdog.disarm(dbapi_connection)

        engine.dialect.do_ping = ping_with_deadline  # type: ignore[method-assign]


class _Watchdog:
    """One thread that sleeps until the nearest deadline of the armed connections.

    Arming never wakes it when it would wake in time anyway: it sleeps at most the longest
    deadline it has seen, so a new deadline (now + seconds) falls after its planned wake-up and
    costs a lock and a dict update, not a thread switch. It wakes about once per deadline
    length, whether the process is idle or busy.
    """

    _instance: _Watchdog | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def shared(cls) -> _Watchdog:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, float, Any]] = {}
        self._wake = threading.Condition(threading.Lock())
        self._wake_at = math.inf  # when the thread will look next (inf: until notified)
        self._longest = 0.0
        threading.Thread(target=self._watch, name="db-deadlines", daemon=True).start()

    def arm(self, dbapi_connection: Any, seconds: float) -> None:
        if dbapi_connection is None:
            return
        deadline = time.monotonic() + seconds
        with self._wake:
            self._armed[id(dbapi_connection)] = (deadline, seconds, dbapi_connection)
            self._longest = max(self._longest, seconds)
            if deadline < self._wake_at:
                self._wake_at = deadline
                self._wake.notify()

    def disarm(self, dbapi_connection: Any) -> None:
        if dbapi_connection is None:
            return
        with self._wake:
            self._armed.pop(id(dbapi_connection), None)

    def _watch(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = [key for key, (deadline, _, _) in self._armed.items() if deadline <= now]
                late = [self._armed.pop(key) for key in due]
                if not late:
                    nearest = min((d for d, _, _ in self._armed.values()), default=math.inf)
                    self._wake_at = min(nearest, now + self._longest) if self._longest else nearest
                    self._wake.wait(None if self._wake_at == math.inf else self._wake_at - now)
                    continue
            for _, seconds, dbapi_connection in late:
                _cut(dbapi_connection, seconds)


def _cut(dbapi_connection: Any, seconds: float) -> None:
    """Shut down a connection's socket: whoever waits on it gets a connection error now."""
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # closed already: nothing waits on it
        return
    log.warning(
        "database round trip past its deadline; connection cut", extra={"deadline_s": seconds}
    )
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


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
        code: str | None = getattr(error.orig, "pgcode", None)
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
