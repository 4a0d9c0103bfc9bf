"""The scaler loop and process against the real RabbitMQ: outages, fallback, recovery, shutdown."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.scaler.scaler_helpers import (
    STAND_IN,
    amqp_connection,
    declare_quorum_queue,
    publish,
)
from tests.support.processes import console_script
from tests.support.proxy import TcpProxy
from tests.support.services import free_port, wait_for

from conversation_events import telemetry
from conversation_events.logs import JsonFormatter
from conversation_events_scaler.actuators import Actuator
from conversation_events_scaler.decision import ScalingPolicy
from conversation_events_scaler.errors import ActuatorUnavailable, MetricsUnavailable
from conversation_events_scaler.loop import ScalerLoop, ScalerMetrics, StatusFile
from conversation_events_scaler.metrics_source import ManagementApiSource


class MemoryActuator(Actuator):
    """Replicas in memory, with every change recorded."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.history = [replicas]
        self.fail_next: Exception | None = None

    def current(self) -> int:
        return self.replicas

    def scale(self, replicas: int) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.replicas = replicas
        self.history.append(replicas)


def source_for(url: str, queue: str) -> ManagementApiSource:
    return ManagementApiSource(url, "/", queue, user="guest", password="guest", timeout_s=2)


@pytest.fixture
def queue(management_url: str, unique_name: str) -> Iterator[str]:
    connection = amqp_connection()
    channel = connection.channel()
    declare_quorum_queue(channel, unique_name)
    try:
        yield unique_name
    finally:
        channel.queue_delete(unique_name)
        connection.close()


def sample(metric: ManagementApiSource, messages: int) -> bool:
    try:
        return metric.read().messages() == messages
    except MetricsUnavailable:
        return False


def metric_value(metrics: ScalerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


@pytest.mark.slow
def test_unreachable_management_api_falls_back_then_recovers_without_scaling_to_zero(
    management_url: str, queue: str, tmp_path: Path
) -> None:
    policy = ScalingPolicy(
        min_replicas=0,
        max_replicas=4,
        target_per_replica=10,
        fallback_replicas=2,
        fallback_after_failures=2,
        cooldown_s=0,
        scale_down_stabilization_s=0,
        stats_lag_s=0,
    )
    actuator = MemoryActuator(1)
    metrics = ScalerMetrics()
    status_path = tmp_path / "status.json"
    closed = source_for(f"http://127.0.0.1:{free_port()}", queue)
    loop = ScalerLoop(
        source=closed,
        actuator=actuator,
        policy=policy,
        metrics=metrics,
        polling_interval_s=1,
        fast_polling_interval_s=1,
        status=StatusFile(status_path),
    )

    for _ in range(4):
        loop.tick()
    assert actuator.history == [1, 2]  # held, then fallback to 2; never 0 while blind
    assert metric_value(metrics, "conversation_events_scaler_metric_errors_total") == 4
    assert metric_value(metrics, "conversation_events_scaler_fallback_active") == 1
    status = json.loads(status_path.read_text())
    assert status["queue"]["ok"] is False
    assert status["queue"]["consecutive_failures"] == 4
    assert status["decision"]["fallback"] is True
    assert "unreachable" in status["queue"]["error"]
    closed.close()

    connection = amqp_connection()
    publish(connection.channel(), queue, 35)
    connection.close()
    with source_for(management_url, queue) as real:
        wait_for(lambda: sample(real, 35), timeout=30, interval=0.5, what="35 messages counted")
        loop.source = real
        loop.tick()
    assert actuator.history == [1, 2, 4]  # ceil(35 / 10) = 4 once the metric is back
    assert metric_value(metrics, "conversation_events_scaler_fallback_active") == 0
    status = json.loads(status_path.read_text())
    assert status["queue"]["ok"] is True
    assert status["queue"]["ready"] == 35
    assert status["current_replicas"] == 4
    assert status["last_change"]["direction"] == "up"


def test_actuator_failures_are_counted_and_the_loop_goes_on() -> None:
    class Fixed:
        def read(self) -> Any:
            from conversation_events_scaler.decision import Observation

            return Observation(ready=50, unacked=0)

    actuator = MemoryActuator(1)
    metrics = ScalerMetrics()
    loop = ScalerLoop(
        source=Fixed(),
        actuator=actuator,
        policy=ScalingPolicy(min_replicas=1, max_replicas=10, target_per_replica=10),
        metrics=metrics,
        polling_interval_s=5,
        fast_polling_interval_s=1,
    )
    actuator.fail_next = ActuatorUnavailable("API server timed out")
    assert loop.tick() == 1  # scale-up wanted: poll again soon
    assert actuator.history == [1]
    assert (
        metric_value(metrics, "conversation_events_scaler_actuator_errors_total", kind="retryable")
        == 1
    )
    assert loop.state is not None and loop.state.last_scale_up_at is None
    loop.tick()
    assert actuator.history == [1, 5]
    assert metric_value(metrics, "conversation_events_scaler_decisions_total", direction="up") == 2


@pytest.mark.slow
def test_scaler_process_survives_an_outage_and_stops_its_workers_on_sigterm(
    management_url: str, queue: str, tmp_path: Path
) -> None:
    out = tmp_path / "workers"
    out.mkdir()
    status_path = tmp_path / "scaler-status.json"
    http_port = free_port()
    proxy = TcpProxy("127.0.0.1", int(httpx.URL(management_url).port or 15672))
    proxy.cut()
    env = {
        **os.environ,
        "CE_QUEUE_NAME": queue,
        "CE_SCALER_ACTUATOR": "local",
        "CE_SCALER_WORKER_COMMAND": json.dumps([sys.executable, "-c", STAND_IN, str(out), "x"]),
        "CE_SCALER_WORKER_HTTP_BASE_PORT": "0",
        "CE_SCALER_WORKER_GRACE_S": "10",
        "CE_SCALER_MANAGEMENT_URL": f"http://127.0.0.1:{proxy.port}",
        "CE_SCALER_MANAGEMENT_TIMEOUT_S": "1",
        "CE_SCALER_COUNT_UNPUBLISHED": "false",  # the queue alone (tested apart)
        "CE_SCALER_MIN_REPLICAS": "1",
        "CE_SCALER_MAX_REPLICAS": "3",
        "CE_SCALER_TARGET_PER_REPLICA": "10",
        "CE_SCALER_FALLBACK_REPLICAS": "2",
        "CE_SCALER_FALLBACK_AFTER_FAILURES": "2",
        "CE_SCALER_POLLING_INTERVAL_S": "0.3",
        "CE_SCALER_STATS_LAG_S": "0",
        "CE_SCALER_SCALE_DOWN_STABILIZATION_S": "1",
        "CE_SCALER_STATUS_FILE": str(status_path),
        "CE_SCALER_HTTP_PORT": str(http_port),
        "DRAIN_S": "0.2",
    }
    log_path = tmp_path / "scaler.log"
    with log_path.open("wb") as log_file:
        scaler = subprocess.Popen(
            [console_script("conversation-events-scaler")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:

        def status() -> dict[str, Any]:
            try:
                return dict(json.loads(status_path.read_text()))
            except (OSError, ValueError):
                return {}

        # Management API unreachable: first the held replica, then the fallback of 2.
        during = wait_for(
            lambda: (s := status()).get("current_replicas") == 2 and s,
            timeout=30,
            what="fallback to 2 workers while the management API is cut",
        )
        assert during["decision"]["fallback"] is True
        assert during["queue"]["ok"] is False
        assert scaler.poll() is None
        health = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
        assert health.status_code == 200
        exposition = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
        assert "conversation_events_scaler_metric_errors_total" in exposition
        assert "conversation_events_scaler_fallback_active 1.0" in exposition

        # Back: an empty queue brings the workers down to min (1), never to zero.
        proxy.restore()
        after = wait_for(
            lambda: (
                (s := status()).get("queue", {}).get("ok") and s.get("current_replicas") == 1 and s
            ),
            timeout=60,
            what="recovery to min replicas once the management API answers",
        )
        assert after["decision"]["fallback"] is False
        assert scaler.poll() is None
        running = [w for w in after["actuator_status"]["workers"] if w["state"] == "running"]
        assert len(running) == 1

        scaler.send_signal(signal.SIGTERM)
        assert scaler.wait(timeout=30) == 0
        final = status()
        assert final["stopped"] is True
        assert final["current_replicas"] == 0
        pids = [int(p.stem) for p in out.glob("*.jsonl")]
        assert len(pids) >= 2
        for pid in pids:
            events = [
                json.loads(line)["event"]
                for line in (out / f"{pid}.jsonl").read_text().splitlines()
            ]
            assert events == ["started", "sigterm", "drained"], (pid, events)
    except AssertionError:
        print(log_path.read_text()[-5000:])  # the scaler's own account, shown on failure
        raise
    finally:
        if scaler.poll() is None:
            scaler.kill()
            scaler.wait()
        proxy.close()


def test_a_traced_poll_is_a_span_and_its_log_lines_name_it() -> None:
    """Tracing on, the scaler's log lines (here: the blind poll's warning) carry its trace."""
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter("scaler").format(record))

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handler = Lines(logging.WARNING)
    logging.getLogger("conversation_events_scaler").addHandler(handler)
    telemetry.install(provider)
    closed = source_for(f"http://127.0.0.1:{free_port()}", "q")
    try:
        loop = ScalerLoop(
            source=closed,
            actuator=MemoryActuator(1),
            policy=ScalingPolicy(min_replicas=1, max_replicas=2, target_per_replica=10),
            metrics=ScalerMetrics(),
            polling_interval_s=1,
            fast_polling_interval_s=1,
        )
        loop.tick()
    finally:
        telemetry.uninstall()
        logging.getLogger("conversation_events_scaler").removeHandler(handler)
        closed.close()
    [span] = exporter.get_finished_spans()
    assert span.name == "scaler poll" and span.context is not None
    warnings = [orjson.loads(line) for line in lines]
    assert warnings, "the blind poll logs a warning"
    for entry in warnings:
        assert entry["trace_id"] == f"{span.context.trace_id:032x}"
        assert entry["span_id"] == f"{span.context.span_id:016x}"
