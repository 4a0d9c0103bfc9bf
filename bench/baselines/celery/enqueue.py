"""Queue one Celery task per stored event (the backlog for the processing benchmark).

`python -m bench.baselines.celery.enqueue` with BENCH_DATABASE_URL, BENCH_AMQP_URL and
BENCH_QUEUE; prints how many tasks it queued.
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text

from bench.baselines.celery.tasks import app, process_conversation_event


def main() -> None:
    engine = create_engine(os.environ["BENCH_DATABASE_URL"])
    with engine.connect() as conn:
        ids = [str(i) for i in conn.execute(text("SELECT id FROM conversation_events")).scalars()]
    engine.dispose()
    with app.producer_or_acquire() as producer:
        for event_id in ids:
            process_conversation_event.apply_async(args=[event_id], producer=producer)
    print(len(ids))


if __name__ == "__main__":
    main()
