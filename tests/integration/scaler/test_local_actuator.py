"""The local-process actuator with a tiny stand-in worker: start, ports, SIGTERM, drain, reap.

The real worker joins in the end-to-end scaling test; this stand-in only records what happens to
it (start, SIGTERM, drained) in a file per process, so the tests can check the signals without
depending on the worker's code.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.scaler.scaler_helpers import STAND_IN
from tests.support.services import free_port, wait_for

from conversation_events_scaler.actuators import (
    LocalProcessActuator,
    WorkerProcess,
    http_in_flight_probe,
)

BASE_PORT = 19100


def events(out: Path, pid: int) -> list[str]:
    path = out / f"{pid}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["event"] for line in path.read_text().splitlines()]


def record(out: Path, pid: int) -> dict[str, Any]:
    return json.loads((out / f"{pid}.jsonl").read_text().splitlines()[0])


def started(out: Path, actuator: LocalProcessActuator) -> bool:
    return all("started" in events(out, w.pid) for w in actuator.running)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "events"
    path.mkdir()
    return path


@pytest.fixture
def make(out: Path, tmp_path: Path) -> Iterator[Any]:
    made: list[LocalProcessActuator] = []

    def factory(mode: str = "drain", **kwargs: Any) -> LocalProcessActuator:
        env = {**os.environ, "MARKER": "from-the-caller", "DRAIN_S": "0.3"}
        kwargs.setdefault("http_base_port", BASE_PORT)
        kwargs.setdefault("grace_s", 10.0)
        actuator = LocalProcessActuator(
            [sys.executable, "-c", STAND_IN, str(out), mode],
            env=env,
            cwd=tmp_path,
            restart_backoff_s=0.05,
            **kwargs,
        )
        made.append(actuator)
        return actuator

    yield factory
    for actuator in made:
        actuator.close(timeout_s=2)


def test_starts_workers_with_their_own_port_the_callers_env_and_cwd(
    make: Any, out: Path, tmp_path: Path
) -> None:
    actuator = make()
    actuator.scale(3)
    assert actuator.current() == 3
    wait_for(lambda: started(out, actuator), timeout=15, what="three workers started")
    records = [record(out, w.pid) for w in actuator.running]
    assert sorted(r["port"] for r in records) == [str(BASE_PORT + i) for i in range(3)]
    assert {r["marker"] for r in records} == {"from-the-caller"}
    assert {r["cwd"] for r in records} == {str(tmp_path)}


def test_port_zero_lets_every_worker_pick_its_own(make: Any, out: Path) -> None:
    actuator = make(http_base_port=0)
    actuator.scale(2)
    wait_for(lambda: started(out, actuator), timeout=15, what="two workers started")
    assert {record(out, w.pid)["port"] for w in actuator.running} == {"0"}


def test_scale_in_sends_sigterm_to_the_newest_and_lets_them_drain(make: Any, out: Path) -> None:
    actuator = make()
    actuator.scale(1)
    wait_for(lambda: started(out, actuator), timeout=15, what="first worker started")
    actuator.scale(3)
    wait_for(lambda: started(out, actuator), timeout=15, what="three workers started")
    oldest = actuator.running[0]
    newer = [w.pid for w in actuator.running[1:]]

    actuator.scale(1)
    assert actuator.current() == 1  # draining workers no longer count
    assert [w.pid for w in actuator.running] == [oldest.pid]
    assert sorted(w.pid for w in actuator.stopping) == sorted(newer)

    wait_for(
        lambda: actuator.current() == 1 and not actuator.stopping,
        timeout=15,
        what="the two newest workers to drain and be reaped",
    )
    for pid in newer:
        assert events(out, pid) == ["started", "sigterm", "drained"]
    assert events(out, oldest.pid) == ["started"]
    assert actuator.crashes == 0


def test_scale_in_prefers_idle_workers(make: Any, out: Path) -> None:
    in_flight = {0: 0, 1: 7, 2: 0}

    def probe(worker: WorkerProcess) -> int | None:
        return in_flight[worker.slot]

    actuator = make(in_flight=probe)
    actuator.scale(3)
    wait_for(lambda: started(out, actuator), timeout=15, what="three workers started")

    actuator.scale(2)  # slots 0 and 2 are idle: the newer of them (2) goes
    assert sorted(w.slot for w in actuator.running) == [0, 1]
    actuator.scale(1)  # slot 1 holds 7 messages: idle slot 0 goes although it is older
    assert [w.slot for w in actuator.running] == [1]


def test_unknown_in_flight_counts_as_busy(make: Any, out: Path) -> None:
    actuator = make(in_flight=lambda w: None if w.slot == 1 else 3)
    actuator.scale(2)
    wait_for(lambda: started(out, actuator), timeout=15, what="two workers started")
    actuator.scale(1)
    assert [w.slot for w in actuator.running] == [1]


def test_a_worker_that_does_not_drain_is_killed_after_the_grace(make: Any, out: Path) -> None:
    actuator = make(mode="stubborn", grace_s=0.5)
    actuator.scale(1)
    wait_for(lambda: started(out, actuator), timeout=15, what="worker started")
    worker = actuator.running[0]
    actuator.scale(0)
    wait_for(
        lambda: actuator.current() == 0 and not actuator.stopping,
        timeout=15,
        what="the stubborn worker to be killed and reaped",
    )
    assert worker.killed
    assert worker.process.returncode == -signal.SIGKILL
    assert events(out, worker.pid) == ["started", "sigterm"]


def test_a_crashed_worker_is_replaced_on_its_slot(make: Any, out: Path) -> None:
    actuator = make()
    actuator.scale(2)
    wait_for(lambda: started(out, actuator), timeout=15, what="two workers started")
    crashed = actuator.running[1]
    crashed.process.kill()
    crashed.process.wait()

    wait_for(
        lambda: actuator.current() == 2 and crashed.pid not in [w.pid for w in actuator.running],
        timeout=15,
        what="a replacement worker",
    )
    assert actuator.crashes == 1
    replacement = next(w for w in actuator.running if w.pid != actuator.running[0].pid)
    assert replacement.slot == crashed.slot
    wait_for(lambda: started(out, actuator), timeout=15, what="the replacement to start")
    assert record(out, replacement.pid)["port"] == str(BASE_PORT + crashed.slot)


def test_close_stops_every_worker_with_sigterm_and_waits(make: Any, out: Path) -> None:
    actuator = make()
    actuator.scale(3)
    wait_for(lambda: started(out, actuator), timeout=15, what="three workers started")
    workers = list(actuator.running)
    actuator.close(timeout_s=10)
    assert not actuator.running
    assert not actuator.stopping
    for worker in workers:
        assert worker.process.returncode == 0
        assert events(out, worker.pid) == ["started", "sigterm", "drained"]


def test_status_lists_running_and_draining_workers(make: Any, out: Path) -> None:
    actuator = make(mode="stubborn")
    actuator.scale(2)
    wait_for(lambda: started(out, actuator), timeout=15, what="two workers started")
    actuator.scale(1)
    status = actuator.status()
    assert status["target"] == 1
    assert sorted(w["state"] for w in status["workers"]) == ["running", "stopping"]
    assert all({"pid", "slot", "http_port", "age_s"} <= set(w) for w in status["workers"])


def test_http_probe_reads_the_in_flight_gauge() -> None:
    body = (
        b"# HELP conversation_events_worker_in_flight Messages being processed\n"
        b"# TYPE conversation_events_worker_in_flight gauge\n"
        b"conversation_events_worker_in_flight 3.0\n"
    )

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        probe = http_in_flight_probe(timeout_s=2)
        port = server.server_address[1]
        assert probe(_fake_worker(port)) == 3
        assert probe(_fake_worker(free_port())) is None
        assert probe(_fake_worker(0)) is None
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _fake_worker(port: int) -> WorkerProcess:
    return WorkerProcess(slot=0, port=port, process=None, started_at=0.0)  # type: ignore[arg-type]
