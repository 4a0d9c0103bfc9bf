"""Ceiling of the database: raw psycopg2 INSERT + COMMIT of our row, several connections.

`--batch 1` is the bound for any design that commits once per request; a larger batch shows
what sharing a commit buys (our writer does that across concurrent requests). Threads release
the GIL in libpq, and `--processes` spreads the client's own CPU over the cores.

`python -m bench.baselines.ceilings.postgres --url postgresql://... --duration 5`
prints JSON: rows, seconds, rows/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
import uuid

import orjson
import psycopg2
from psycopg2.extras import execute_values

from bench.payloads import bodies

SQL = (
    "INSERT INTO conversation_events (id, conversation_id, user_id, bot_id, bot_name, bot_type,"
    " agent_tag, start_time, end_time, conversation_log, metadata, content_hash) VALUES %s"
)


def _rows(prefix: str, count: int) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for b in bodies(prefix, count, users=1000):
        out.append(
            (
                None,
                b["conversation_id"],
                b["user_id"],
                b["bot_id"],
                b["bot_name"],
                b["bot_type"],
                b["agent_tag"],
                b["start_time"],
                b["end_time"],
                orjson.dumps(b["conversation_log"]).decode(),
                orjson.dumps(b.get("metadata")).decode(),
                "0" * 64,
            )
        )
    return out


def _connection_loop(dsn: str, batch: int, until: float, counts: list[int], index: int) -> None:
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    prefix = uuid.uuid4().hex[:8]
    templates = _rows(prefix, 64)
    n = 0
    while time.time() < until:
        rows = []
        for _ in range(batch):
            t = templates[n % len(templates)]
            rows.append((str(uuid.uuid4()), f"ceil-{prefix}-{n}", *t[2:]))
            n += 1
        execute_values(cur, SQL, rows, page_size=batch)
        conn.commit()
        counts[index] += batch
    conn.close()


def _process(dsn: str, threads: int, batch: int, until: float, out: multiprocessing.Queue) -> None:
    counts = [0] * threads
    workers = [
        threading.Thread(target=_connection_loop, args=(dsn, batch, until, counts, i))
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(sum(counts))


def measure(dsn: str, connections: int, processes: int, batch: int, duration: float) -> dict:
    until = time.time() + duration
    out: multiprocessing.Queue = multiprocessing.Queue()
    per = max(1, connections // processes)
    procs = [
        multiprocessing.Process(target=_process, args=(dsn, per, batch, until, out))
        for _ in range(processes)
    ]
    started = time.time()
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.time() - started
    return {
        "connections": per * processes,
        "batch": batch,
        "rows": total,
        "seconds": elapsed,
        "rows_per_s": total / elapsed,
        "commits_per_s": total / batch / elapsed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True, help="libpq URL (postgresql://...)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    result = measure(args.url, args.connections, args.processes, args.batch, args.duration)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
