"""Questions asked of a database: one row or one value of a query, or any row holding a value."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Row, text


def one_row(engine: Engine, sql: str, **params: Any) -> Row[Any]:
    """The single row `sql` returns (an error unless there is exactly one)."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def one_value(engine: Engine, sql: str, **params: Any) -> Any:
    """The single value `sql` returns (an error unless there is exactly one row)."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def rows_mentioning(engine: Engine, value: str) -> dict[str, int]:
    """Per table of the public schema, the rows whose text form contains `value` (non-zero only).

    Every table, whatever it is: a table added later is searched too.
    """
    found: dict[str, int] = {}
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ).scalars()
        for table in list(tables):
            count = conn.execute(
                text(f'SELECT count(*) FROM "{table}" AS r WHERE strpos(r::text, :v) > 0'),
                {"v": value},
            ).scalar_one()
            if count:
                found[table] = int(count)
    return found
