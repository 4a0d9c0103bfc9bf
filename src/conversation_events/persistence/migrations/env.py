"""Alembic environment: the URL comes from the caller (conversation_events.migrate)."""

from alembic import context
from sqlalchemy import create_engine, pool

from conversation_events.persistence.tables import metadata

url = context.config.get_main_option("sqlalchemy.url")
if url is None:
    raise RuntimeError(
        "sqlalchemy.url is not set; run migrations through conversation_events.migrate"
    )

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
