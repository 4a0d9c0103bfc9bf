"""Alembic environment: the URL comes from the caller (conversation_events.migrate).

Online, every migration runs with a `lock_timeout`: a DDL statement that waits for a lock
behind live traffic fails after that time (and the step can be retried) instead of queueing
every later query of the table behind it. Offline (`--sql`), the same setting opens the script.
"""

from alembic import context
from sqlalchemy import create_engine, pool

from conversation_events.persistence.tables import metadata

#: How long one DDL statement may wait for its lock; override with `-x lock_timeout=10s`.
LOCK_TIMEOUT = context.get_x_argument(as_dictionary=True).get("lock_timeout", "5s")

url = context.config.get_main_option("sqlalchemy.url")
if url is None:
    raise RuntimeError(
        "sqlalchemy.url is not set; run migrations through conversation_events.migrate"
    )

if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        context.run_migrations()
else:
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            context.run_migrations()
