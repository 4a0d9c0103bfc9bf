"""The machinery of the fault scenarios: a steady event stream, recovery timing, the verdict.

A scenario starts its own API and workers (subprocesses, as in production) on its own queue,
pushes events at a fixed rate while it injects a fault, then checks from PostgreSQL that every
accepted event was processed exactly once: each user's friendship score equals the sum of its
events' changes, computed here from the request bodies. The client behaves as a well-behaved
producer would: it retries a 503 after its `Retry-After` and a post that met a connection error
(a post is idempotent), keeps idle connections for less than the server's keep-alive timeout,
and counts every response and every connection error.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import Engine, text

from conversation_events_api.settings import ApiSettings
from tests.chaos.report import ScenarioReport
from tests.support.payloads import conversations_for, expected_change
from tests.support.processes import Service, start_api, start_worker
from tests.support.proxy import TcpProxy
from tests.support.services import free_port, wait_for

#: Events per scenario and their rate; sized for a two-core machine that also runs PostgreSQL,
#: RabbitMQ and other test runs: 1,500 events at 60/s is a 25 s stream, room for a fault of
#: 10 s with traffic before and after it, and keeps the suite under ten minutes there.
EVENTS = int(os.environ.get("CHAOS_EVENTS", "1500"))
#: The scale-in scenario's events: a burst big enough to scale out to 4, a tail slow and long
#: enough for the scaler to scale in while it lasts (see the scenario).
SCALE_IN_EVENTS = int(os.environ.get("CHAOS_SCALE_IN_EVENTS", "2400"))
RATE = float(os.environ.get("CHAOS_RATE", "60"))
#: The shorter stream of the one-fault scenarios (topology, database states, input): 750 events
#: at 50/s is 15 s, room for a fault of a few seconds with traffic before and after it, and
#: keeps the whole suite within minutes on that machine.
SHORT_EVENTS = int(os.environ.get("CHAOS_SHORT_EVENTS", "750"))
SHORT_RATE = float(os.environ.get("CHAOS_SHORT_RATE", "50"))
USERS = 150
#: Seconds after the stream ends for the backlog to drain before events count as lost.
DRAIN_TIMEOUT_S = float(os.environ.get("CHAOS_DRAIN_TIMEOUT_S", "120"))
#: A producer gives up on one event after this long (then it counts as sent, not accepted).
GIVE_UP_S = 60.0
#: Seconds an idle keep-alive connection stays in the client's pool. It must be well below the
#: server's idle timeout (the API's CE_KEEP_ALIVE_S, uvicorn's `timeout_keep_alive`, 5 s by
#: default): httpx's default is also 5 s, so the client could send a request on a connection
#: just as the server closes it, and an API whose event loop is late closes the socket with the
#: request unread in its buffer, which resets the connection (`httpx.ReadError`, ECONNRESET).
KEEPALIVE_EXPIRY_S = 2.0

#: Settings for every process a scenario starts: fast relay and retries, a short Retry-After.
FAST = {
    "CE_RELAY_DELAY_S": "2",
    "CE_RELAY_INTERVAL_S": "0.5",
    "CE_RETRY_AFTER_S": "1",
    "CE_DB_CONNECT_TIMEOUT_S": "2",
    "CE_WORKER_RETRY_BASE_S": "0.05",
    "CE_WORKER_RETRY_CAP_S": "1",
    "CE_LOG_LEVEL": "INFO",
}

MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
API_KEY = "chaos-test-key-0123456789"
#: Seconds for a stream to finish (the longest is paced to take ~45 s).
STREAM_GIVE_UP_S = 180.0


def make_events(count: int, users: int, seed: int) -> list[dict[str, Any]]:
    """Bodies for `users` users; only non-negative changes, so the score floor never applies
    and a user's score must equal the plain sum of its events' changes."""
    people = [f"chaos-{uuid.uuid4().hex[:12]}" for _ in range(users)]
    return conversations_for(people, count, seed=seed, max_messages=10)


#: Every stream started, so that a failed scenario's stream can be stopped (`stop_streams`).
_STARTED: list[Stream] = []


def stop_streams() -> None:
    """Stop every stream still running (after each scenario, passed or failed)."""
    while _STARTED:
        _STARTED.pop().stop()


@dataclass
class Stream:
    """Posts events at a steady rate from a pool of threads; thread-safe tallies."""

    base_url: str
    api_key: str
    bodies: list[dict[str, Any]]
    rate: float = RATE
    #: Seconds after the start at which each body is due; default: evenly at `rate`.
    schedule: list[float] | None = None
    accepted: dict[str, float] = field(default_factory=dict)  # conversation id → accepted at
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0  # the longest wait for one answer (reported, never asserted)
    started_at: float = 0.0
    finished_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, name="chaos-stream", daemon=True)
        self.started_at = time.monotonic()
        _STARTED.append(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Abandon what is not sent yet and every retry (a scenario failed half-way).

        Without it the posting pool, which the interpreter joins at exit, would go on retrying
        against processes already stopped, for up to `GIVE_UP_S` per event.
        """
        self._stopped.set()

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the event stream did not finish in time"

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def sent(self) -> int:
        return len(self.bodies)

    def accepted_ids(self) -> list[str]:
        with self._lock:
            return list(self.accepted)

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def connection_errors(self) -> int:
        """Posts that met a connection error (refused, reset, timed out) and were retried."""
        with self._lock:
            return sum(n for kind, n in self.errors.items() if kind != "503 without Retry-After")

    def server_errors(self) -> int:
        """5xx answers other than 503 with Retry-After: each one breaks the contract."""
        with self._lock:
            return (
                sum(
                    n for code, n in self.statuses.items() if code.startswith("5") and code != "503"
                )
                + self.errors["503 without Retry-After"]
            )

    def _run(self) -> None:
        limits = httpx.Limits(
            max_connections=48, max_keepalive_connections=48, keepalive_expiry=KEEPALIVE_EXPIRY_S
        )
        with (
            httpx.Client(
                base_url=self.base_url,
                headers={"X-API-Key": self.api_key},
                timeout=httpx.Timeout(30.0, connect=5.0),
                limits=limits,
            ) as client,
            ThreadPoolExecutor(48, thread_name_prefix="producer") as pool,
        ):
            for i, body in enumerate(self.bodies):
                offset = self.schedule[i] if self.schedule else i / self.rate
                due = self.started_at + offset
                # Pacing the stream, not waiting for a result.
                if self._stopped.wait(max(0.0, due - time.monotonic())):
                    break
                pool.submit(self._deliver, client, body)
        self.finished_at = time.monotonic()

    def _deliver(self, client: httpx.Client, body: dict[str, Any]) -> None:
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline and not self._stopped.is_set():
            sent_at = time.monotonic()
            try:
                response = client.post("/v1/conversations/end", json=body)
            except httpx.HTTPError as exc:
                with self._lock:
                    self.errors[type(exc).__name__] += 1
                self._stopped.wait(0.5)  # a producer's back-off before it retries
                continue
            code = str(response.status_code)
            with self._lock:
                self.statuses[code] += 1
                self.slowest_s = max(self.slowest_s, time.monotonic() - sent_at)
            if response.status_code == 202:
                with self._lock:
                    self.accepted[body["conversation_id"]] = time.monotonic()
                return
            if response.status_code == 503:
                retry_after = response.headers.get("retry-after")
                if retry_after is None:
                    with self._lock:
                        self.errors["503 without Retry-After"] += 1
                self._stopped.wait(float(retry_after or 1))  # honour Retry-After, as clients must
                continue
            return  # any other answer is final (and counted)


def processed_count(engine: Engine, conversation_ids: list[str]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM conversation_events "
                    "WHERE conversation_id = ANY(:ids) AND status = 'PROCESSED'"
                ),
                {"ids": conversation_ids},
            ).scalar_one()
        )


class RecoveryClock:
    """Seconds from the end of a fault until every event accepted by then is PROCESSED.

    Runs in its own thread so the stream goes on meanwhile.
    """

    def __init__(self, engine: Engine, stream: Stream, timeout: float) -> None:
        self.engine = engine
        self.stream = stream
        self.timeout = timeout
        self.seconds: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> RecoveryClock:
        fault_ended = time.monotonic()
        ids = self.stream.accepted_ids()

        def measure() -> None:
            deadline = fault_ended + self.timeout
            while time.monotonic() < deadline:
                if processed_count(self.engine, ids) >= len(ids):
                    self.seconds = time.monotonic() - fault_ended
                    return
                time.sleep(0.25)  # polling the database with a deadline

        self._thread = threading.Thread(target=measure, name="recovery-clock", daemon=True)
        self._thread.start()
        return self

    def result(self) -> float | None:
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
        return self.seconds


@dataclass
class Verdict:
    """What the database says after the drain."""

    accepted: int
    processed: int
    not_processed: dict[str, int]
    users_over: int  # users whose score exceeds the sum of their events' changes
    users_under: int  # users whose score misses part of that sum
    redelivered: int  # messages the broker delivered again (faults had an effect)
    max_lag_s: float  # longest time from stored (202) to PROCESSED
    mismatches: dict[str, tuple[float, float]]


def broker_redeliveries(queue: str) -> int:
    """Messages of `queue` the broker delivered again, by its own count (management API)."""
    response = httpx.get(
        f"{MANAGEMENT_URL}/api/queues/%2F/{quote(queue, safe='')}",
        auth=("guest", "guest"),
        timeout=10,
    )
    response.raise_for_status()
    return int(response.json().get("message_stats", {}).get("redeliver", 0))


def wait_and_judge(
    engine: Engine,
    bodies: list[dict[str, Any]],
    accepted: list[str],
    timeout: float,
    *,
    queue: str,
) -> Verdict:
    """Wait (with a deadline) until every accepted event is PROCESSED, then compare scores."""
    deadline = time.monotonic() + timeout
    while processed_count(engine, accepted) < len(accepted) and time.monotonic() < deadline:
        time.sleep(0.5)  # polling the database with a deadline
    accepted_set = set(accepted)
    by_id = {b["conversation_id"]: b for b in bodies}
    expected: dict[str, float] = {}
    for cid in accepted_set:
        body = by_id[cid]
        expected[body["user_id"]] = expected.get(body["user_id"], 0.0) + expected_change(body)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, count(*) AS n, "
                "max(extract(epoch FROM processed_at - created_at)) AS lag "
                "FROM conversation_events WHERE conversation_id = ANY(:ids) GROUP BY status"
            ),
            {"ids": accepted},
        ).all()
        scores = {
            r.user_id: float(r.friendship_score)
            for r in conn.execute(
                text(
                    "SELECT user_id, friendship_score FROM friendship_status "
                    "WHERE user_id = ANY(:u)"
                ),
                {"u": list(expected)},
            )
        }
    counts = {r.status: int(r.n) for r in rows}
    processed = counts.pop("PROCESSED", 0)
    missing = len(accepted_set) - processed - sum(counts.values())
    if missing:
        counts["missing"] = missing
    mismatches = {
        user: (scores.get(user, 0.0), want)
        for user, want in expected.items()
        if abs(scores.get(user, 0.0) - want) > 1e-6
    }
    return Verdict(
        accepted=len(accepted_set),
        processed=processed,
        not_processed=counts,
        users_over=sum(1 for got, want in mismatches.values() if got > want),
        users_under=sum(1 for got, want in mismatches.values() if got < want),
        redelivered=broker_redeliveries(queue),
        max_lag_s=max((float(r.lag) for r in rows if r.lag is not None), default=0.0),
        mismatches=mismatches,
    )


def finish(
    name: str,
    streams: list[Stream],
    verdict: Verdict,
    recovery_s: float | None,
    recovery_meaning: str,
    **extra: Any,
) -> ScenarioReport:
    """Build and record the report row (printed in pytest's terminal summary)."""
    report = ScenarioReport(
        scenario=name,
        sent=sum(s.sent() for s in streams),
        accepted=sum(s.accepted_count() for s in streams),
        processed=verdict.processed,
        lost=verdict.accepted - verdict.processed + verdict.users_under,
        applied_twice=verdict.users_over,
        server_errors=sum(s.server_errors() for s in streams),
        retried_503=sum(s.statuses.get("503", 0) for s in streams),
        redelivered=verdict.redelivered,
        max_lag_s=verdict.max_lag_s,
        recovery_s=recovery_s,
        recovery_meaning=recovery_meaning,
        stream_s=streams[-1].finished_at - streams[-1].started_at,
        extra={k: str(v) for k, v in extra.items()},
    )
    report.record()
    return report


def assert_exactly_once(
    report: ScenarioReport,
    streams: list[Stream],
    verdict: Verdict,
    *,
    refused: int = 0,
    connection_errors_expected: bool = False,
) -> None:
    """The verdict every scenario ends with.

    `refused`: posts the scenario expects to be answered with a final 4xx (never accepted).
    `connection_errors_expected`: the scenario stops the API itself, so refused or closed
    connections are expected there; producers retry them (a post is idempotent).
    """
    details = (
        f"{report.scenario}: statuses {[dict(s.statuses) for s in streams]}, client errors "
        f"{[dict(s.errors) for s in streams]}, not processed {verdict.not_processed}, "
        f"score mismatches {dict(list(verdict.mismatches.items())[:5])}"
    )
    # Every producer got its 202 in the end, but for the posts meant to be refused.
    assert report.accepted == report.sent - refused, details
    assert report.lost == 0, details
    assert report.applied_twice == 0, details
    assert not verdict.mismatches, details
    assert report.server_errors == 0, details
    if not connection_errors_expected:
        # No reset connections or timeouts from the API either.
        assert not any(s.connection_errors() for s in streams), details


def assert_key_never_logged(services: list[Service]) -> None:
    for service in services:
        assert API_KEY not in service.log(), f"the API key appears in {service.log_path}"


def api_metric(base: str, name: str) -> float:
    """Sum of one metric's samples on the API's /metrics (0 when absent)."""
    text_ = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text_.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


# --- the shared sequence: processes, a stream, faults in it, the verdict ------------------------


#: The `proxy` fixture: a TCP proxy in front of a URL's server, and the URL through it.
ProxyFactory = Callable[[str], tuple[TcpProxy, str]]


@dataclass
class Fleet:
    """The processes of one scenario: an API and its workers (all kept in `services` to stop)."""

    services: list[Service]
    api: Service
    base: str
    workers: list[Service]
    worker_ports: dict[int, int] = field(default_factory=dict)  # pid → /readyz port

    @classmethod
    def start(
        cls,
        services: list[Service],
        api_env: dict[str, str],
        worker_env: dict[str, str] | None = None,
        *,
        workers: int = 2,
    ) -> Fleet:
        keep_alive = float(
            api_env.get("CE_KEEP_ALIVE_S", ApiSettings.model_fields["keep_alive_s"].default)
        )
        assert keep_alive > KEEPALIVE_EXPIRY_S, "the producer would reuse connections being closed"
        api, base = start_api(api_env, API_KEY)
        services.append(api)
        fleet = cls(services, api, base, [])
        for _ in range(workers):
            fleet.add_worker(worker_env or api_env)
        # A fault must meet running consumers: on a loaded machine a worker takes seconds to
        # start, longer than a short stream takes to reach its fault.
        fleet.wait_for_workers()
        return fleet

    def wait_for_workers(self) -> None:
        for worker in self.workers:
            wait_for(
                functools.partial(self.worker_ready, worker), timeout=90, what="a worker ready"
            )

    def add_worker(self, env: dict[str, str]) -> Service:
        port = free_port()
        worker = start_worker(env, CE_WORKER_HTTP_PORT=str(port))
        self.services.append(worker)
        self.workers.append(worker)
        self.worker_ports[worker.pid] = port
        return worker

    def worker_ready(self, worker: Service) -> bool:
        """The worker's /readyz: consuming, and PostgreSQL answered."""
        assert worker.alive(), worker.log()
        url = f"http://127.0.0.1:{self.worker_ports[worker.pid]}/readyz"
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def worker_metric(self, sample: str) -> float:
        """Sum over the running workers of one metric's samples starting with `sample`."""
        total = 0.0
        for worker in self.workers:
            if not worker.alive():
                continue
            url = f"http://127.0.0.1:{self.worker_ports[worker.pid]}/metrics"
            text_ = httpx.get(url, timeout=5).text
            total += sum(
                float(line.rsplit(" ", 1)[1])
                for line in text_.splitlines()
                if line.startswith(sample)
            )
        return total

    def logs(self) -> str:
        return "\n".join(service.log() for service in self.services)

    def relay_republished(self) -> int:
        """Events the API's relay published again (its /metrics)."""
        return int(api_metric(self.base, "conversation_events_relay_republished_total"))

    def restart_api(self, env: dict[str, str]) -> None:
        """Stop the API (SIGTERM: it finishes what it holds) and start one on the same port."""
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert self.api.stop(timeout=30) in (0, -signal.SIGTERM), self.api.log()
        port = int(self.base.rsplit(":", 1)[1])
        self.api, base = start_api(env, API_KEY, port=port)
        assert base == self.base
        self.services.append(self.api)

    def replace_workers(self, env: dict[str, str]) -> None:
        """A rolling replacement: new workers first (until ready), then the old ones drain."""
        old, self.workers = self.workers, []
        for _ in old:
            self.add_worker(env)
        self.wait_for_workers()
        for worker in old:
            assert worker.stop(timeout=40) == 0, worker.log()


@dataclass
class Fault:
    """What a scenario does to the world: `begin`, `seconds` later `end` (may be instant)."""

    begin: Callable[[], None]
    end: Callable[[], None] = lambda: None
    seconds: float = 0.0


@dataclass
class Run:
    """A stream through some faults, judged after the drain."""

    stream: Stream
    verdict: Verdict
    recovery_s: float | None
    during: int  # what `count` rose by while the faults lasted

    def report(self, name: str, recovery_meaning: str, **extra: Any) -> ScenarioReport:
        """The run's row of the report table (recorded; see `finish`)."""
        return finish(name, [self.stream], self.verdict, self.recovery_s, recovery_meaning, **extra)


def through_faults(
    fleet: Fleet,
    engine: Engine,
    bodies: list[dict[str, Any]],
    faults: list[Fault],
    *,
    queue: str,
    rate: float = RATE,
    count: Callable[[Stream], int] = Stream.accepted_count,
) -> Run:
    """A stream of `bodies` into `fleet`; once a quarter is accepted, `faults` one after the other.

    Recovery is timed from the end of the last fault; the verdict waits (with a deadline) until
    every accepted event is PROCESSED.
    """
    stream = Stream(fleet.base, API_KEY, bodies, rate=rate).start()
    wait_for(
        lambda: stream.accepted_count() >= len(bodies) // 4, timeout=60, what="the stream under way"
    )
    before = count(stream)
    for fault in faults:
        fault.begin()
        if fault.seconds:
            threading.Event().wait(fault.seconds)  # the fault itself lasts this long
        fault.end()
    during = count(stream) - before
    clock = RecoveryClock(engine, stream, DRAIN_TIMEOUT_S).start()
    stream.join(STREAM_GIVE_UP_S)
    verdict = wait_and_judge(engine, bodies, stream.accepted_ids(), DRAIN_TIMEOUT_S, queue=queue)
    return Run(stream, verdict, clock.result(), during)


@dataclass
class Scenario:
    """What one scenario works with (the `scenario` fixture): its settings (its own exchange
    and queue, fast timings), the run's database, the processes it starts (stopped after it),
    and TCP proxies to put in front of a server (closed after it)."""

    env: dict[str, str]
    engine: Engine
    database_url: str
    services: list[Service]
    proxy: ProxyFactory

    @property
    def queue(self) -> str:
        return self.env["CE_QUEUE_NAME"]

    def fleet(
        self, api_env: dict[str, str] | None = None, worker_env: dict[str, str] | None = None
    ) -> Fleet:
        """An API and two workers, with the scenario's settings unless given others."""
        return Fleet.start(self.services, api_env or self.env, worker_env)

    def run(
        self,
        fleet: Fleet,
        faults: list[Fault],
        *,
        seed: int,
        events: int = SHORT_EVENTS,
        rate: float = SHORT_RATE,
        count: Callable[[Stream], int] = Stream.accepted_count,
    ) -> Run:
        """`events` new events (from `seed`) through `faults`, as `run_bodies`."""
        bodies = make_events(events, USERS, seed=seed)
        return self.run_bodies(fleet, bodies, faults, rate=rate, count=count)

    def run_bodies(
        self,
        fleet: Fleet,
        bodies: list[dict[str, Any]],
        faults: list[Fault],
        *,
        rate: float = SHORT_RATE,
        count: Callable[[Stream], int] = Stream.accepted_count,
    ) -> Run:
        """These bodies streamed into `fleet` through `faults` (`through_faults`)."""
        return through_faults(
            fleet, self.engine, bodies, faults, queue=self.queue, rate=rate, count=count
        )

    def assert_exactly_once(self, run: Run, report: ScenarioReport, **expected: Any) -> None:
        """The verdict every scenario ends with (`assert_exactly_once`), and no process of the
        scenario logged the API key."""
        assert_exactly_once(report, [run.stream], run.verdict, **expected)
        assert_key_never_logged(self.services)
