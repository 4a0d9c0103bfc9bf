"""Fault injection under a steady stream: zero loss, zero double effect, no 5xx but 503.

Four scenarios, each with its own API and workers on its own queue (the shared PostgreSQL and
RabbitMQ stay up for everyone else on the machine; outages are TCP proxies cut in front of
them), each ending with the exactly-once verdict and a row of the report table printed in the
pytest summary (tests/chaos/conftest.py).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.chaos.harness import (
    API_KEY,
    DRAIN_TIMEOUT_S,
    EVENTS,
    RATE,
    SCALE_IN_EVENTS,
    STREAM_GIVE_UP_S,
    USERS,
    Fault,
    RecoveryClock,
    Scenario,
    Stream,
    assert_exactly_once,
    assert_key_never_logged,
    finish,
    make_events,
    processed_count,
    wait_and_judge,
)
from tests.support.pipeline import friendship_rows_locked
from tests.support.processes import Service, start_api, start_worker
from tests.support.services import free_port, port_open, require, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]


# --- 1. workers killed ---------------------------------------------------------------------------


def test_workers_killed_with_sigkill_at_random(
    env: dict[str, str], engine: Engine, services: list[Service]
) -> None:
    api, base = start_api(env, API_KEY)
    services.append(api)
    workers = [start_worker(env) for _ in range(3)]
    services.extend(workers)
    bodies = make_events(EVENTS, USERS, seed=1)
    rng = random.Random(11)
    stream = Stream(base, API_KEY, bodies).start()

    kills = 0
    pause = threading.Event()
    while stream.running():
        pause.wait(rng.uniform(2.0, 4.0))  # the fault schedule: a kill every 2-4 s
        if not stream.running():
            break
        alive = [w for w in workers if w.alive()]
        victim = rng.choice(alive)
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        kills += 1
        workers.remove(victim)
        replacement = start_worker(env)  # what a Deployment or the local scaler would do
        workers.append(replacement)
        services.append(replacement)
    clock = RecoveryClock(engine, stream, DRAIN_TIMEOUT_S).start()
    stream.join(STREAM_GIVE_UP_S)
    verdict = wait_and_judge(
        engine, bodies, stream.accepted_ids(), DRAIN_TIMEOUT_S, queue=env["CE_QUEUE_NAME"]
    )
    report = finish(
        "1. worker SIGKILL every 2-4 s",
        [stream],
        verdict,
        clock.result(),
        "last kill → every event accepted by then PROCESSED",
        kills=kills,
    )
    assert kills >= 5
    assert_exactly_once(report, [stream], verdict)
    assert_key_never_logged(services)


# --- 2 and 3. a dependency unreachable for a while -------------------------------------------


def test_broker_unreachable_for_ten_seconds(scenario: Scenario) -> None:
    broker, proxied_url = scenario.proxy(scenario.env["CE_AMQP_URL"])
    fleet = scenario.fleet(scenario.env | {"CE_AMQP_URL": proxied_url})
    outage = Fault(broker.cut, broker.restore, seconds=10.0)
    run = scenario.run(fleet, [outage], seed=2, events=EVENTS, rate=RATE)
    report = run.report(
        "2. broker cut 10 s",
        "broker back → every event accepted by then PROCESSED",
        accepted_during_outage=run.during,
        relay_republished=fleet.relay_republished(),
    )
    assert run.during >= RATE * 5, "the API must keep answering 202 while the broker is away"
    scenario.assert_exactly_once(run, report)


def test_postgresql_dropped_and_refusing_for_six_seconds(scenario: Scenario) -> None:
    database, proxied_url = scenario.proxy(scenario.database_url)
    fleet = scenario.fleet(scenario.env | {"CE_DATABASE_URL": proxied_url})
    # The outage: open connections dropped, new ones refused.
    outage = Fault(database.cut, database.restore, seconds=6.0)
    run = scenario.run(
        fleet,
        [outage],
        seed=3,
        events=EVENTS,
        rate=RATE,
        count=lambda stream: stream.statuses.get("503", 0),
    )
    report = run.report(
        "3. PostgreSQL cut 6 s",
        "database back → every event accepted by then PROCESSED",
        answered_503_during_outage=run.during,
    )
    assert run.during > 0, "requests during the outage must get 503 + Retry-After"
    scenario.assert_exactly_once(run, report)


# --- 4. scale-in while busy ----------------------------------------------------------------------

HOT_USERS = 12


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


def mixed(
    normal: list[dict[str, Any]],
    hot_users: list[str],
    every: int,
    seed: int,
    most: int | None = None,
) -> list[dict]:
    """`normal` with every `every`-th event (the first `most` of them) moved to a hot user."""
    rng = random.Random(seed)
    hot_at = set(list(range(every - 1, len(normal), every))[:most])
    return [
        body | {"user_id": rng.choice(hot_users)} if i in hot_at else body
        for i, body in enumerate(normal)
    ]


@pytest.fixture
def work_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory of the scale-in scenario's own, not under pytest's basetemp.

    pytest keeps only the three newest basetemp directories of a user and deletes older ones
    when a session starts: on a machine where other test runs start meanwhile, the scaler's
    status file and the workers' logs would vanish mid-scenario. Kept when the test fails.
    """
    failed_before = request.session.testsfailed
    path = Path(tempfile.mkdtemp(prefix="chaos-scale-in-"))
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


def test_scaler_scales_in_while_work_is_in_flight(
    env: dict[str, str], engine: Engine, services: list[Service], work_dir: Path
) -> None:
    """A burst makes the scaler scale out; during the slow tail that follows it scales in.

    The hot users' rows are locked during the burst (so the backlog builds and the scaler sees
    it) and again during the tail until the scaler has sent its SIGTERMs: the workers it stops
    hold events waiting on those locks, which must finish (drain) and be acked before they exit.
    """
    require(port_open("127.0.0.1", 15672), "RabbitMQ management API at 127.0.0.1:15672")
    api, base = start_api(env, API_KEY)
    services.append(api)
    work = work_dir  # status file, lock file and worker logs
    status_file = work / "status.json"
    scaler = Service(
        "conversation_events_scaler",
        env
        | {
            "CE_SCALER_ACTUATOR": "local",
            "CE_SCALER_MIN_REPLICAS": "1",
            "CE_SCALER_MAX_REPLICAS": "4",
            "CE_SCALER_TARGET_PER_REPLICA": "40",
            "CE_SCALER_POLLING_INTERVAL_S": "1",
            "CE_SCALER_FAST_POLLING_INTERVAL_S": "0.5",
            "CE_SCALER_STATS_LAG_S": "2",
            # Long enough that the scale-in falls in the tail, not in the moment between the
            # burst's drain and the tail's start (10 s on a loaded machine, where the API
            # still accepts the burst's end after the workers have drained the queue).
            "CE_SCALER_SCALE_DOWN_STABILIZATION_S": "20",
            "CE_SCALER_COOLDOWN_S": "0",
            "CE_SCALER_HTTP_PORT": str(free_port()),
            "CE_SCALER_STATUS_FILE": str(status_file),
            "CE_SCALER_LOCK_FILE": str(work / "scaler.lock"),
            "CE_SCALER_WORKER_LOG_DIR": str(work),
            "CE_SCALER_WORKER_HTTP_BASE_PORT": "0",
            "CE_SCALER_WORKER_GRACE_S": "40",
            # Passed through to the workers: waits on the locks must not time out, and five
            # batch threads (prefetch 100 / 20) so that the tail's four waiting events never
            # occupy all of one worker's (the default 50 gives two).
            "CE_WORKER_DRAIN_TIMEOUT_S": "30",
            "CE_WORKER_BATCH_SIZE": "20",
            "CE_WORKER_BATCH_WINDOW_S": "0",  # one event per batch at this light load
            "CE_DB_STATEMENT_TIMEOUT_MS": "60000",
        },
    )
    services.append(scaler)

    def replicas() -> int:
        try:
            return int(json.loads(status_file.read_text()).get("current_replicas") or 0)
        except (OSError, ValueError):
            return 0

    def scaler_records() -> list[dict[str, Any]]:
        return json_lines(scaler.log_path)

    # Warm-up: the hot users' rows must exist before they can be locked.
    warmup = make_events(HOT_USERS * 3, HOT_USERS, seed=40)
    hot = sorted({b["user_id"] for b in warmup})
    warm = Stream(base, API_KEY, warmup, rate=100).start()
    warm.join(60)
    wait_for(
        lambda: processed_count(engine, warm.accepted_ids()) == len(warmup),
        timeout=60,
        what="warm-up",
    )
    # Burst: 70 % of the events at 200/s, one in four for a hot user, rows locked: those wait in
    # the workers' hands mid-transaction, which keeps work in flight while the scaler decides.
    burst_size = int(SCALE_IN_EVENTS * 0.7)
    burst_bodies = mixed(make_events(burst_size, USERS, seed=41), hot, every=4, seed=42)
    with friendship_rows_locked(engine, hot):
        burst = Stream(base, API_KEY, burst_bodies, rate=200).start()
        wait_for(lambda: replicas() >= 3, timeout=90, what="the scaler to scale out")
    burst.join(STREAM_GIVE_UP_S)

    # Tail: the rest at 16/s, rows locked until the scale-in. Only four of its events (one in
    # eight of the first 32, 2 s) are for hot users: they wait on the locks in the workers'
    # hands, fewer than a worker's batch threads (CE_WORKER_BATCH_SIZE below), so no worker is
    # blocked whole and the backlog stays far below the scaler's target: it scales in whenever
    # its stabilisation window has passed, however late. A worker whose every thread waits
    # takes a prefetch of messages (100) out of the flow, which keeps the replicas up for as
    # long as the locks last.
    tail_bodies = mixed(
        make_events(SCALE_IN_EVENTS - burst_size, USERS, seed=43), hot, every=8, seed=44, most=4
    )
    wait_for(
        lambda: processed_count(engine, burst.accepted_ids()) == burst_size,
        timeout=90,
        what="burst drained",
    )
    with friendship_rows_locked(engine, hot):
        tail_began = datetime.now(UTC).isoformat(timespec="milliseconds")
        tail = Stream(base, API_KEY, tail_bodies, rate=16).start()
        wait_for(
            lambda: any(
                r.get("msg") == "worker asked to drain (SIGTERM)" and r["ts"] >= tail_began
                for r in scaler_records()
            ),
            timeout=60,
            what="the scaler to scale in during the tail",
        )
        threading.Event().wait(1.0)  # the stopped workers sit on their locked events a moment
    tail.join(STREAM_GIVE_UP_S)
    clock = RecoveryClock(engine, tail, DRAIN_TIMEOUT_S).start()
    streams = [warm, burst, tail]
    verdict = wait_and_judge(
        engine,
        warmup + burst_bodies + tail_bodies,
        [cid for stream in streams for cid in stream.accepted_ids()],
        DRAIN_TIMEOUT_S,
        queue=env["CE_QUEUE_NAME"],
    )
    scaler.stop(timeout=60)

    records = scaler_records()
    # Up to the scaler's own shutdown, which stops the last workers too.
    end = next((i for i, r in enumerate(records) if r.get("msg") == "stopping"), None)
    records = records[:end]
    scales = [r for r in records if r.get("event") == "scale"]
    decisions = " ".join(f"{r.get('replicas_from')}→{r.get('replicas_to')}" for r in scales)
    asked = [r for r in records if r.get("msg") == "worker asked to drain (SIGTERM)"]
    stopped = [r for r in records if r.get("msg") == "worker stopped"]
    drains = [
        r
        for log in sorted(work.glob("worker-*.log"))
        for r in json_lines(log)
        if r.get("msg") == "draining"
    ]
    busy = [int(r.get("in_flight", 0)) for r in drains if int(r.get("in_flight", 0)) > 0]
    started = {r.get("pid"): r for r in records if r.get("msg") == "worker started"}

    def consumed(stop: dict[str, Any]) -> bool:
        """Whether the stopped worker had begun consuming (its slot's log, during its life).

        One the scaler stops while Python is still importing (a quick scale-out then scale-in
        on a loaded machine) dies of the SIGTERM before it installs its handler: exit -15, but
        holding nothing, since it never connected.
        """
        start = started[stop.get("pid")]
        life = json_lines(work / f"worker-{start['slot']}.log")
        return any(
            r.get("msg") == "consuming" and start["ts"] <= r["ts"] <= stop["ts"] for r in life
        )

    unclean = [r for r in stopped if r.get("killed") or (r.get("exit_code") != 0 and consumed(r))]
    report = finish(
        "4. scale-in while busy",
        streams,
        verdict,
        clock.result(),
        "tail end → every event PROCESSED (drain)",
        scaling=decisions,
        stopped_by_scale_in=len(asked),
        stopped_with_work_in_flight=len(busy),
        in_flight_at_sigterm=busy,
        killed_after_grace=sum(1 for r in stopped if r.get("killed")),
        stopped_while_starting=sum(1 for r in stopped if not consumed(r)),
    )
    assert any(r.get("direction") == "up" for r in scales), decisions
    assert asked, f"the scaler never scaled in; decisions: {decisions}"
    assert busy, "no worker was stopped while it had work in flight"
    assert stopped and not unclean, f"workers that did not drain and exit 0: {unclean}"
    assert_exactly_once(report, streams, verdict)
    assert_key_never_logged(services)
