"""The scaler driving real worker processes from the real queue (local actuator).

A backlog scales the workers from min to max, drains, and after the stabilisation window the
workers return to min; every event is processed exactly once, including those in flight in
the workers that were scaled in. Below the activation threshold nothing starts from zero.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.support.payloads import conversation
from tests.support.pipeline import assert_processed_exactly_once, preload, statuses
from tests.support.processes import Service, common_env
from tests.support.services import AMQP_URL, free_port, wait_for

from conversation_events.messaging.topology import Topology

pytestmark = pytest.mark.slow


class Scaler(Service):
    """The scaler process plus a sampler of its status file (replicas over time)."""

    def __init__(self, env: dict[str, str], status_file: Path, **settings: str) -> None:
        self.status_file = status_file
        self.samples: list[tuple[float, int, int | None]] = []
        super().__init__(
            "conversation_events_scaler",
            env
            | {
                "CE_SCALER_ACTUATOR": "local",
                "CE_SCALER_STATUS_FILE": str(status_file),
                "CE_SCALER_HTTP_PORT": str(free_port()),
                "CE_SCALER_WORKER_HTTP_BASE_PORT": "0",
                "CE_SCALER_WORKER_LOG_DIR": str(status_file.parent),
                "CE_SCALER_POLLING_INTERVAL_S": "1",
                "CE_SCALER_FAST_POLLING_INTERVAL_S": "0.5",
                "CE_SCALER_STATS_LAG_S": "2",
                **settings,
            },
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def _sample(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.2):
            status = self.status()
            if status:
                total = (status.get("queue") or {}).get("total")
                self.samples.append((time.monotonic() - started, status["current_replicas"], total))

    def stop(self, timeout: float = 90.0) -> int | None:
        """Stop sampling, then the scaler (which stops its workers first: hence the long wait)."""
        self._stop.set()
        return super().stop(timeout)


@pytest.fixture
def start_scaler(
    database_url: str,
    names: tuple[str, str],
    management_url: str,
    tmp_path: Path,
    services: list[Service],
) -> Callable[[dict[str, str]], Scaler]:
    """Starts the scaler on the test's database and queue, with more settings (`CE_*`) for it
    and its workers; stopped after the test."""
    env = common_env(database_url, AMQP_URL, *names) | {"CE_SCALER_MANAGEMENT_URL": management_url}

    def start(settings: dict[str, str]) -> Scaler:
        scaler = Scaler(env, tmp_path / "status.json", **settings)
        services.append(scaler)
        return scaler

    return start


def bodies_for(users: list[str], count: int) -> list[dict]:
    rng = random.Random(3)
    return [
        conversation(user_id=rng.choice(users), emotion="happy", questions=rng.randint(0, 2))
        for _ in range(count)
    ]


def test_backlog_scales_from_min_to_max_drains_and_returns_to_min(
    engine: Engine, names: tuple[str, str], start_scaler: Callable[[dict[str, str]], Scaler]
) -> None:
    users = [f"user-{uuid.uuid4().hex[:8]}" for _ in range(30)]
    bodies = bodies_for(users, 4000)
    preload(engine, Topology(names[0], names[1], 50), bodies)

    scaler = start_scaler(
        {
            "CE_WORKER_PREFETCH": "2",
            "CE_SCALER_MIN_REPLICAS": "1",
            "CE_SCALER_MAX_REPLICAS": "3",
            "CE_SCALER_TARGET_PER_REPLICA": "100",
            "CE_SCALER_SCALE_DOWN_STABILIZATION_S": "5",
            "CE_SCALER_COOLDOWN_S": "5",
        }
    )

    wait_for(
        lambda: scaler.status().get("current_replicas") == 3, timeout=60, what="scale out to max"
    )
    assert_processed_exactly_once(engine, bodies)
    wait_for(
        lambda: scaler.status().get("current_replicas") == 1, timeout=60, what="scale in to min"
    )
    replicas = [r for _, r, _ in scaler.samples] + [scaler.status()["current_replicas"]]
    assert max(replicas) == 3
    assert 1 in replicas[replicas.index(3) :]  # back to min after reaching max (sampled)
    assert scaler.stop() == 0


def test_below_activation_nothing_starts_from_zero_above_it_workers_start(
    engine: Engine, names: tuple[str, str], start_scaler: Callable[[dict[str, str]], Scaler]
) -> None:
    topology = Topology(names[0], names[1], 50)
    users = [f"user-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    few = bodies_for(users, 10)
    preload(engine, topology, few)

    scaler = start_scaler(
        {
            "CE_SCALER_MIN_REPLICAS": "0",
            "CE_SCALER_MAX_REPLICAS": "2",
            "CE_SCALER_TARGET_PER_REPLICA": "20",
            "CE_SCALER_ACTIVATION": "50",
            # A new queue has no management statistics for a few seconds; that must not count
            # as a reason to start a worker in this test.
            "CE_SCALER_FALLBACK_REPLICAS": "0",
        }
    )
    # Several polls that saw the 10 messages, and still no worker.
    wait_for(
        lambda: len([s for s in scaler.samples if s[2] == 10]) >= 5,
        timeout=60,
        what="the scaler to observe the small backlog",
    )
    assert {r for _, r, total in scaler.samples if total == 10} == {0}
    assert statuses(engine, [b["conversation_id"] for b in few]) == {"PENDING": 10}

    more = bodies_for(users, 100)
    preload(engine, topology, more)
    wait_for(lambda: scaler.status().get("current_replicas", 0) >= 1, timeout=60, what="activation")
    assert_processed_exactly_once(engine, few + more)
