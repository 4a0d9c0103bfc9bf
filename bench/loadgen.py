"""A cheap HTTP/1.1 load generator: keep-alive connections on uvloop, no HTTP library.

It shares the machine's cores with what it measures, so it does as little as it can: bodies
are pre-built templates with the ids spliced in, responses are parsed only for their status
line and Content-Length. Two modes:

- closed loop (`--connections N`): each connection sends its next request as soon as the
  previous answer arrives (saturation throughput);
- open loop (`--rate R`): requests are due on a fixed schedule whatever the server does;
  latency counts from the due time, so a stalled server cannot hide its queueing delay
  (no coordinated omission);
- producers (`--producers`): each connection is a producer that posts back to back and, after
  a `503`, waits what `Retry-After` says (times 0.5-1.5) and sends the same body again on a
  fresh connection, as the API's clients are told to; connections start over `--warmup`.

`python -m bench.loadgen --url http://127.0.0.1:8000 --key K --duration 20 --out result.json`
Prints nothing but errors; the JSON holds counts per status, latency percentiles (ms) of the
measured window (after `--warmup` seconds), overall and per status, the generator's own CPU
seconds and how late its own event loop ran a 10 ms timer (so a starved generator shows). With
`--batch N` each request is a batch of N conversations to `/v1/conversations/end:batch`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import resource
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from bench.payloads import templates

PATH = "/v1/conversations/end"
BATCH_PATH = "/v1/conversations/end:batch"


def percentiles(values: list[float], points: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles of `values` (already in ms), plus max and count."""
    if not values:
        return {f"p{p:g}": float("nan") for p in points} | {"max": float("nan"), "n": 0}
    ordered = sorted(values)
    out = {f"p{p:g}": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] for p in points}
    return out | {"max": ordered[-1], "n": len(ordered)}


class Connection(asyncio.Protocol):
    """One keep-alive connection; `request()` sends and resolves with the status code."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.retry_after: float | None = None  # of the last answer
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        i = head.find(b"content-length:")
        length = 0
        if i >= 0:
            j = head.find(b"\r\n", i)
            length = int(head[i + 15 : j if j >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        self.retry_after = None
        i = head.find(b"retry-after:")
        if i >= 0:
            j = head.find(b"\r\n", i)
            self.retry_after = float(head[i + 12 : j if j >= 0 else len(head)])
        del self.buffer[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        self.hosts = [(url.hostname or "127.0.0.1", url.port or 80)]
        self.hosts += [(url.hostname or "127.0.0.1", int(p)) for p in args.extra_ports]
        self.templates = templates(args.templates)
        self.prefix = args.prefix.encode()
        self.users = args.users
        self.counter = itertools.count()
        self.rng = random.Random(args.seed)
        self.batch = args.batch
        path = BATCH_PATH if self.batch else PATH
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nX-API-Key: {args.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.timeout = args.timeout
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.by_status: dict[str, list[float]] = {}
        self.measure_from = 0.0
        self.measure_to = 0.0
        self.measured = 0
        self.measured_ok = 0

    def next_body(self) -> bytes:
        n = next(self.counter)
        head, middle, tail = self.templates[n % len(self.templates)]
        user = str(self.rng.randrange(self.users)).encode()
        return b"".join(
            (head, self.prefix, b"-", str(n).encode(), middle, self.prefix, b"-u", user, tail)
        )

    def next_request(self) -> bytes:
        if self.batch:
            items = b",".join(self.next_body() for _ in range(self.batch))
            body = b'{"conversations":[%s]}' % items
        else:
            body = self.next_body()
        return b"%s%d\r\n\r\n%s" % (self.head, len(body), body)

    async def connect(self, index: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(Connection, *self.hosts[index % len(self.hosts)])
        return proto

    async def connect_or_pause(self, index: int) -> Connection | None:
        """A new connection, or None (counted) after a short pause when connecting failed."""
        try:
            return await self.connect(index)
        except OSError as exc:
            self.statuses[type(exc).__name__] += 1
            await asyncio.sleep(0.05)
            return None

    def record(self, status: str, due: float, done: float) -> None:
        self.statuses[status] += 1
        if self.measure_from <= due < self.measure_to:
            self.measured += 1
            if status.startswith("2"):
                self.measured_ok += 1
            self.latencies.append((done - due) * 1000)
            self.by_status.setdefault(status, []).append((done - due) * 1000)

    async def send(self, conn: Connection, due: float) -> Connection | None:
        """One request on `conn`; returns the connection if it is still usable."""
        try:
            status = await asyncio.wait_for(conn.request(self.next_request()), self.timeout)
        except (TimeoutError, ConnectionError, OSError) as exc:
            self.record(type(exc).__name__, due, time.perf_counter())
            if conn.transport is not None:
                conn.transport.abort()
            return None
        self.record(str(status), due, time.perf_counter())
        return conn

    async def closed_loop(self, connections: int, until: float) -> None:
        async def run(index: int) -> None:
            conn: Connection | None = None
            while time.perf_counter() < until:
                if conn is None:
                    conn = await self.connect_or_pause(index)
                    continue
                conn = await self.send(conn, time.perf_counter())
            if conn is not None and conn.transport is not None:
                conn.transport.close()

        await asyncio.gather(*(run(i) for i in range(connections)))

    async def producers(self, connections: int, ramp: float, until: float) -> None:
        async def run(index: int) -> None:
            rng = random.Random(index)
            await asyncio.sleep(rng.uniform(0, ramp))
            conn: Connection | None = None
            again: bytes | None = None  # the body to send again (refused or cut off)
            while time.perf_counter() < until:
                if conn is None:
                    conn = await self.connect_or_pause(index)
                    continue
                data = again or self.next_request()
                sent = time.perf_counter()
                try:
                    status = await asyncio.wait_for(conn.request(data), self.timeout)
                except (TimeoutError, ConnectionError, OSError) as exc:
                    self.record(type(exc).__name__, sent, time.perf_counter())
                    if conn.transport is not None:
                        conn.transport.abort()
                    conn, again = None, data
                    continue
                self.record(str(status), sent, time.perf_counter())
                again = None
                if status == 503 and conn.retry_after is not None:
                    again = data
                    await asyncio.sleep(conn.retry_after * rng.uniform(0.5, 1.5))
                    # A fresh connection after the wait: the server may be closing the idle
                    # one (keep-alive timeout) just as the next request would go out.
                    if conn.transport is not None:
                        conn.transport.close()
                    conn = None
            if conn is not None and conn.transport is not None:
                conn.transport.close()

        await asyncio.gather(*(run(i) for i in range(connections)))

    async def open_loop(self, rate: float, connections: int, started: float, until: float) -> None:
        idle: asyncio.Queue[Connection | None] = asyncio.Queue()
        for _ in range(connections):
            idle.put_nowait(None)  # a slot; connected on first use
        tasks: set[asyncio.Task[None]] = set()

        async def one(due: float) -> None:
            conn = await idle.get()  # waiting here counts: latency runs from `due`
            if conn is None:
                try:
                    conn = await self.connect(len(tasks))
                except OSError as exc:
                    self.record(type(exc).__name__, due, time.perf_counter())
                    idle.put_nowait(None)
                    return
            idle.put_nowait(await self.send(conn, due))

        interval = 1.0 / rate
        n = 0
        while True:
            due = started + n * interval
            if due >= until:
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 1)
        while not idle.empty():
            conn = idle.get_nowait()
            if conn is not None and conn.transport is not None:
                conn.transport.close()


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    gen = Generator(args)
    started = time.perf_counter()
    gen.measure_from = started + args.warmup
    gen.measure_to = started + args.warmup + args.duration
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    lags: list[float] = []
    ticker = asyncio.create_task(own_lag(lags, gen.measure_from, gen.measure_to))
    if args.rate:
        await gen.open_loop(args.rate, args.connections, started, gen.measure_to)
    elif args.producers:
        await gen.producers(args.connections, args.warmup, gen.measure_to)
    else:
        await gen.closed_loop(args.connections, gen.measure_to)
    ticker.cancel()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    sent = sum(gen.statuses.values())
    ok = [s for s in gen.statuses if s.startswith("2")]
    per_request = args.batch or 1
    return {
        "mode": "open" if args.rate else "producers" if args.producers else "closed",
        "connections": args.connections,
        "offered_rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "sent": sent,
        "statuses": dict(gen.statuses),
        "accepted": sum(gen.statuses[s] for s in ok),
        "errors": sent - sum(gen.statuses[s] for s in ok),
        "measured": gen.measured,
        "measured_ok": gen.measured_ok,
        "rate": gen.measured_ok / args.duration,
        # A batch's 200 counts its every conversation: the bench checks they were all stored.
        "events_per_request": per_request,
        "accepted_events": per_request * sum(gen.statuses[s] for s in ok),
        "events_rate": per_request * gen.measured_ok / args.duration,
        "latency_ms": percentiles(gen.latencies),
        "latency_by_status_ms": {k: percentiles(v) for k, v in sorted(gen.by_status.items())},
        "own_loop_lag_ms": percentiles(lags),
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
    }


async def own_lag(lags: list[float], start: float, stop: float, every: float = 0.01) -> None:
    """How late this process's loop runs a timer due every `every` s, in the measured window."""
    while True:
        due = time.perf_counter() + every
        await asyncio.sleep(every)
        now = time.perf_counter()
        if start <= due < stop:
            lags.append(max(0.0, now - due) * 1000)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--extra-ports", nargs="*", default=[], help="more ports on the same host")
    p.add_argument("--key", default="bench-key", help="API key (X-API-Key)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rate", type=float, default=0.0, help="requests/s (open loop); 0: closed")
    p.add_argument(
        "--producers",
        action="store_true",
        help="honour Retry-After (connections start over warmup)",
    )
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--prefix", default="bench", help="conversation ids are <prefix>-<n>")
    p.add_argument("--users", type=int, default=5000, help="distinct user ids")
    p.add_argument("--templates", type=int, default=256, help="distinct bodies")
    p.add_argument(
        "--batch", type=int, default=0, help="conversations per batch request; 0: single posts"
    )
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", type=Path, help="write the JSON result here (default: stdout)")
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    args = parse(argv)
    try:
        import uvloop

        result = uvloop.run(main_async(args))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        result = asyncio.run(main_async(args))
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if args.out:
        args.out.write_bytes(data)
    else:
        print(data.decode())


if __name__ == "__main__":
    run()
