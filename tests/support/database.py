"""Questions asked of a whole database: is anything of this value left anywhere?"""

from __future__ import annotations

from sqlalchemy import Engine, text


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
