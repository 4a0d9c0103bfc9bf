"""Scale-in: from the decision to the new worker count, idle-first versus random victims.

Each round starts four workers under the scaler's local actuator, puts one event in flight on
two of them and holds it there (its user's friendship row is locked, as a slow database or a
long conversation would hold it) until `busy_s` after the decision, then scales in to two. The
figure is the time from the `scale(2)` call until only two worker processes are left: a stopped
worker drains first, so an idle victim exits at once and a busy one only when its event is done.

* **idle-first**: the actuator ranks workers by `conversation_events_worker_in_flight` read from
  their `/metrics` (what it does in production, and what `pod-deletion-cost` makes a ReplicaSet
  do on Kubernetes);
* **random**: the same actuator with a probe that ranks workers at random, as a scale-in that
  does not know which workers are busy (a ReplicaSet without deletion costs) would pick them.
"""

from __future__ import annotations

import functools
import random
import socket
import statistics
import time
from collections import defaultdict
from typing import Any

import pika
from sqlalchemy import text

from bench import infra
from bench.infra import AMQP_URL, TMP, log
from bench.scenarios.backlog import Row, event_ids, preload_template, publish
from bench.scenarios.common import Config, consumers, isolated

WORKERS = 4
AFTER = 2
BUSY = 2

#: Settings passed to the workers: a stopped worker may drain for longer than an event is held,
#: and a statement waiting on a locked row must not time out first.
WORKER_ENV = {
    "CE_WORKER_DRAIN_TIMEOUT_S": "60",
    "CE_DB_STATEMENT_TIMEOUT_MS": "90000",
}


def _free_port_range(count: int) -> int:
    """A base port whose `count` ports in a row are free on the loopback."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} free ports in a row")


class _Locks:
    """Some users' friendship rows locked in an open transaction."""

    def __init__(self, engine: Any, users: list[str]) -> None:
        self._conn = engine.connect()
        self._trans = self._conn.begin()
        rows = self._conn.execute(
            text(
                "SELECT user_id FROM friendship_status WHERE user_id = ANY(:u)"
                " ORDER BY user_id FOR UPDATE"
            ),
            {"u": users},
        ).all()
        if len(rows) != len(users):
            self.release()
            raise RuntimeError(f"friendship rows of {users}: {len(rows)} found")

    def release(self) -> None:
        if self._conn is not None:
            self._trans.rollback()
            self._conn.close()
            self._conn = None


def _status(engine: Any, ids: list[str]) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id::text, status FROM conversation_events WHERE id::text = ANY(:i)"),
            {"i": ids},
        ).all()
    return {r[0]: r[1] for r in rows}


def _round(policy: str, run: Any, engine: Any, users: list[str], events: dict[str, list[Row]],
           busy_s: float, seed: int) -> dict[str, Any]:  # fmt: skip
    from conversation_events.messaging.topology import Topology
    from conversation_events_scaler.actuators import (
        LocalProcessActuator,
        default_worker_command,
        http_in_flight_probe,
        worker_environment,
    )

    measure = http_in_flight_probe(timeout_s=1.0)
    rng = random.Random(seed)
    probe = measure if policy == "idle-first" else (lambda _w: rng.randrange(1_000_000))
    env = infra.common_env(run.url, run.exchange, run.queue) | WORKER_ENV
    actuator = LocalProcessActuator(
        default_worker_command(infra.PYTHON),
        env=worker_environment(env),
        http_base_port=_free_port_range(WORKERS),
        grace_s=90,
        log_dir=TMP / f"scalein-{policy}-{seed}",
        in_flight=probe,
    )
    topology = Topology(run.exchange, run.queue, 50)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    locks = None
    try:
        actuator.scale(WORKERS)
        infra.wait_for(lambda: consumers(run.queue) >= WORKERS, timeout=90, what="4 consumers")
        infra.wait_for(
            lambda: all(measure(w) is not None for w in actuator.running),
            timeout=60,
            what="the workers' /metrics",
        )
        # The hot users' friendship rows must exist before they can be locked.
        warm = [events[u][0] for u in users]
        publish(channel, run.exchange, topology.routing_key, warm)
        infra.wait_for(
            lambda: set(_status(engine, [r[0] for r in warm]).values()) == {"PROCESSED"},
            timeout=60,
            what="warm-up events processed",
        )
        locks = _Locks(engine, users)
        held = [events[u][1] for u in users]

        # One at a time, so that each lands on a worker that holds nothing yet.
        def at_least(n: int) -> bool:
            return sum((measure(w) or 0) > 0 for w in actuator.running) >= n

        for n, row in enumerate(held, start=1):
            publish(channel, run.exchange, topology.routing_key, [row])
            infra.wait_for(functools.partial(at_least, n), timeout=30, what=f"{n} busy workers")
        in_flight = {w.pid: measure(w) or 0 for w in actuator.running}
        decided = time.monotonic()
        actuator.scale(AFTER)
        victims = [w.pid for w in actuator.stopping]
        release_at = decided + busy_s
        done_at = None
        while done_at is None:
            now = time.monotonic()
            if locks is not None and now >= release_at:
                locks.release()
                locks = None
            actuator.reap()
            if not actuator.stopping:
                done_at = time.monotonic()
                break
            if now - decided > busy_s + 120:
                raise RuntimeError(f"victims still running after {now - decided:.0f} s")
            time.sleep(0.02)
        if locks is not None:
            locks.release()
            locks = None
        infra.wait_for(
            lambda: set(_status(engine, [r[0] for r in held]).values()) == {"PROCESSED"},
            timeout=120,
            what="held events processed",
        )
        busy_victims = sum(1 for pid in victims if in_flight.get(pid, 0) > 0)
        return {
            "policy": policy,
            "seconds": done_at - decided,
            "busy_victims": busy_victims,
            "victims": len(victims),
        }
    finally:
        if locks is not None:
            locks.release()
        connection.close()
        actuator.close(timeout_s=90)


def scale_in(cfg: Config) -> dict[str, Any]:
    """`cfg.scale_in_rounds` rounds of each policy, interleaved so machine drift hits both."""
    rounds = cfg.scale_in_rounds
    busy_s = cfg.scale_in_busy_s
    users_needed = rounds * 2 * BUSY
    template = preload_template(users_needed * 12, users=users_needed + 8)
    out: dict[str, Any] = {"workers": WORKERS, "after": AFTER, "busy": BUSY, "busy_s": busy_s}
    try:
        with isolated("scalein", template, stop_timeout=90) as run:
            by_user: dict[str, list[Row]] = defaultdict(list)
            for row in event_ids(run.url, scored_only=True):
                by_user[row[2]].append(row)
            users = sorted(u for u, rows in by_user.items() if len(rows) >= 2)
            if len(users) < users_needed:
                raise RuntimeError(f"{len(users)} users with two events, {users_needed} needed")
            engine = run.engine()
            results: dict[str, list[dict[str, Any]]] = {"idle-first": [], "random": []}
            try:
                for i in range(rounds):
                    for j, policy in enumerate(("random", "idle-first") if i % 2 else
                                               ("idle-first", "random")):  # fmt: skip
                        k = (2 * i + j) * BUSY
                        hot = users[k : k + BUSY]
                        r = _round(policy, run, engine, hot, by_user, busy_s, seed=100 + k)
                        log(
                            f"scale-in {policy}: {r['seconds']:.2f} s,"
                            f" {r['busy_victims']} of {r['victims']} victims busy"
                        )
                        results[policy].append(r)
            finally:
                engine.dispose()
    finally:
        infra.drop_database(template)
    for policy, rs in results.items():
        seconds = [r["seconds"] for r in rs]
        out[policy] = {
            "rounds": rs,
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "max_s": max(seconds),
            "mean_s": statistics.fmean(seconds),
            "rounds_with_a_busy_victim": sum(1 for r in rs if r["busy_victims"]),
        }
    return out
