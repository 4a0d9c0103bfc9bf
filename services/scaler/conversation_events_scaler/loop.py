"""The scaler's loop: read the queue, decide, act, report. Thin on purpose.

Every poll: ``actuator.current()`` → ``source.read()`` → ``desired_replicas`` →
``actuator.scale()`` when the decision differs → metrics, one JSON log line per change, status
file. Every failure of the metric or the actuator is counted and logged, and the
loop goes on: the decision's fallback covers a blind scaler.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from conversation_events import telemetry
from conversation_events.errors import ConversationEventsError, PermanentError
from conversation_events_scaler.actuators import Actuator
from conversation_events_scaler.decision import (
    Decision,
    Observation,
    ScalerState,
    ScalingPolicy,
    desired_replicas,
)
from conversation_events_scaler.errors import MetricsUnavailable

log = logging.getLogger(__name__)


class MetricSource(Protocol):
    def read(self) -> Observation: ...


class ScalerMetrics:
    """The scaler's Prometheus metrics, in their own registry (no global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # Names are conversation_events_scaler_<name> (counters gain _total).
        gauge = functools.partial(
            Gauge, namespace="conversation_events", subsystem="scaler", registry=self.registry
        )
        counter = functools.partial(
            Counter, namespace="conversation_events", subsystem="scaler", registry=self.registry
        )
        self.queue_messages = gauge(
            "queue_messages",
            "Messages in the queue at the last successful read (ready, unacked, counted)",
            ["state"],
        )
        self.queue_consumers = gauge(
            "queue_consumers", "Consumers on the queue at the last successful read"
        )
        self.desired = gauge("desired_replicas", "Replicas last decided")
        self.current = gauge("current_replicas", "Replicas running as the actuator last reported")
        self.decisions = counter(
            "decisions", "Decisions taken, by direction (up, down, none)", ["direction"]
        )
        self.metric_errors = counter("metric_errors", "Failed reads of the queue metric")
        self.outbox_unpublished = gauge(
            "outbox_unpublished",
            "Events stored and not yet published at the last count (counted into the backlog)",
        )
        self.outbox_errors = counter(
            "outbox_errors", "Failed counts of the unpublished events (the queue alone was used)"
        )
        self.actuator_errors = counter(
            "actuator_errors",
            "Failed reads or changes of the replicas, by kind (retryable, permanent)",
            ["kind"],
        )
        self.fallback = gauge(
            "fallback_active",
            "1 while the replicas follow the fallback because the metric keeps failing",
        )
        self.last_poll = gauge(
            "last_poll_timestamp_seconds", "Unix time of the last completed poll"
        )
        for direction in ("up", "down", "none"):
            self.decisions.labels(direction)
        for kind in ("retryable", "permanent"):
            self.actuator_errors.labels(kind)


@dataclass
class StatusFile:
    """The scaler's state as a JSON file for ``scripts/stack status``, replaced atomically."""

    path: Path
    static: Mapping[str, Any] = field(default_factory=dict)

    def write(self, payload: Mapping[str, Any]) -> None:
        document = {
            "version": 1,
            "updated_at": _iso(time.time()),
            "pid": os.getpid(),
            **self.static,
            **payload,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle, indent=2, default=str)
                handle.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(eq=False, kw_only=True)
class ScalerLoop:
    """Polls, decides and acts; :meth:`tick` is one poll, :meth:`run` loops until stopped."""

    source: MetricSource
    actuator: Actuator
    policy: ScalingPolicy
    metrics: ScalerMetrics
    polling_interval_s: float
    #: Used while the backlog grows; never longer than ``polling_interval_s``.
    fast_polling_interval_s: float
    status: StatusFile | None = None
    dry_run: bool = False
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    # What the last polls saw and did (the status file and the logs report them).
    state: ScalerState | None = field(default=None, init=False)
    last_decision: Decision | None = field(default=None, init=False)
    last_change: dict[str, Any] | None = field(default=None, init=False)
    last_observation: Observation | None = field(default=None, init=False)
    last_error: str | None = field(default=None, init=False)
    last_poll_at: float | None = field(default=None, init=False)
    _previous_messages: int | None = field(default=None, init=False, repr=False)
    _metric_failing: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.fast_polling_interval_s = min(self.fast_polling_interval_s, self.polling_interval_s)

    # -- one poll --

    def tick(self) -> float:
        """One poll; returns the seconds to wait before the next one.

        Traced, each poll is a span: its log lines (the decision) name it."""
        try:
            if not telemetry.enabled():
                return self._tick()
            with telemetry.span("scaler poll", __name__):
                return self._tick()
        finally:
            self.last_poll_at = self.clock()
            self.metrics.last_poll.set(self.wall())

    def _tick(self) -> float:
        now = self.clock()
        try:
            current = self.actuator.current()
        except ConversationEventsError as exc:
            self._actuator_failed(exc, "read the current replicas")
            self._write_status(current=None)
            return self.polling_interval_s
        self.metrics.current.set(current)

        state = (
            ScalerState.initial(current, now)
            if self.state is None
            else replace(self.state, current_replicas=current)
        )
        observation = self._observe()
        decision = desired_replicas(state, observation, self.policy, now)
        new_state = decision.state
        if decision.desired != current:
            if self._act(decision, observation):
                current = decision.desired
            else:
                # Not done: no scale-out happened whose statistics the next polls must wait for.
                new_state = replace(new_state, last_scale_up_at=state.last_scale_up_at)
        self.state = new_state
        self.last_decision = decision

        self.metrics.decisions.labels(decision.direction).inc()
        self.metrics.desired.set(decision.desired)
        self.metrics.fallback.set(1 if decision.fallback else 0)
        self._write_status(current=current)
        return self._next_interval(decision, observation)

    def _observe(self) -> Observation | None:
        try:
            observation = self.source.read()
        except MetricsUnavailable as exc:
            self._metric_failing = True
            self.metrics.metric_errors.inc()
            failures = (self.state.consecutive_failures if self.state else 0) + 1
            log.warning(
                "queue metric unavailable",
                extra={"error": str(exc), "consecutive_failures": failures},
            )
            self.last_error = str(exc)
            return None
        if self._metric_failing:
            log.info("queue metric recovered", extra=_observation_fields(observation))
        self._metric_failing = False
        self.last_error = None
        self.last_observation = observation
        counted = observation.messages(self.policy.ready_only)
        self.metrics.queue_messages.labels("ready").set(observation.ready)
        self.metrics.queue_messages.labels("unacked").set(observation.unacked)
        self.metrics.queue_messages.labels("counted").set(counted)
        self.metrics.queue_consumers.set(observation.consumers)
        if observation.unpublished is not None:
            self.metrics.outbox_unpublished.set(observation.unpublished)
        return observation

    def _act(self, decision: Decision, observation: Observation | None) -> bool:
        fields = {
            "event": "scale",
            "direction": decision.direction,
            "replicas_from": decision.current,
            "replicas_to": decision.desired,
            "reason": decision.reason,
            "recommendation": decision.recommendation,
            "fallback": decision.fallback,
            "dry_run": self.dry_run,
            **(_observation_fields(observation) if observation else {"messages": None}),
        }
        if not self.dry_run:
            try:
                self.actuator.scale(decision.desired)
            except ConversationEventsError as exc:
                self._actuator_failed(exc, f"scale to {decision.desired}", decision)
                return False
        log.info(decision.reason, extra=fields)
        self.last_change = {"at": _iso(self.wall()), **fields}
        return not self.dry_run

    def _actuator_failed(
        self, exc: ConversationEventsError, action: str, decision: Decision | None = None
    ) -> None:
        kind = "permanent" if isinstance(exc, PermanentError) else "retryable"
        self.metrics.actuator_errors.labels(kind).inc()
        self.last_error = str(exc)
        log.error(
            f"could not {action}",
            extra={
                "error": str(exc),
                "kind": kind,
                "reason": decision.reason if decision else None,
            },
        )

    def _next_interval(self, decision: Decision, observation: Observation | None) -> float:
        """Poll fast while the backlog grows or workers are being added, else at the interval."""
        messages = observation.messages(self.policy.ready_only) if observation else None
        growing = (
            messages is not None
            and self._previous_messages is not None
            and messages > self._previous_messages
        )
        self._previous_messages = messages
        if growing or decision.direction == "up":
            return self.fast_polling_interval_s
        return self.polling_interval_s

    # -- the loop --

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; an unexpected error is logged and the loop goes on."""
        while not stop.is_set():
            try:
                delay = self.tick()
            except Exception:  # a bug must not stop the autoscaling; it is logged loudly
                log.exception("scaler poll failed unexpectedly")
                delay = self.polling_interval_s
            stop.wait(delay)

    def healthy(self, now: float | None = None) -> bool:
        """False when the loop has not completed a poll for three intervals (it is stuck)."""
        if self.last_poll_at is None:
            return True  # starting
        now = self.clock() if now is None else now
        return now - self.last_poll_at <= 3 * self.polling_interval_s + 30

    # -- reporting --

    def _write_status(self, *, current: int | None, stopped: bool = False) -> None:
        if self.status is None:
            return
        decision = self.last_decision
        observation = self.last_observation
        payload: dict[str, Any] = {
            "stopped": stopped,
            "dry_run": self.dry_run,
            "current_replicas": current,
            "desired_replicas": decision.desired if decision else None,
            "last_decision": decision.reason if decision else None,
            "decision": _decision_fields(decision, self.wall()) if decision else None,
            "last_change": self.last_change,
            "queue": {
                **(asdict(observation) if observation else {}),
                "ok": self.last_error is None,
                "consecutive_failures": self.state.consecutive_failures if self.state else 0,
                "error": self.last_error,
            },
            "policy": asdict(self.policy),
            "actuator_status": self.actuator.status(),
        }
        try:
            self.status.write(payload)
        except OSError as exc:
            log.warning("could not write the status file", extra={"error": str(exc)})

    def write_stopped_status(self) -> None:
        """Final status after shutdown: no workers left running by this scaler."""
        current: int | None
        try:
            current = self.actuator.current()
        except ConversationEventsError:
            current = None
        self._write_status(current=current, stopped=True)


def _observation_fields(observation: Observation) -> dict[str, Any]:
    return {
        "messages": observation.messages(),
        "ready": observation.ready,
        "unacked": observation.unacked,
        "unpublished": observation.unpublished,
        "consumers": observation.consumers,
    }


def _decision_fields(decision: Decision, wall: float) -> dict[str, Any]:
    return {
        "at": _iso(wall),
        "direction": decision.direction,
        "current": decision.current,
        "desired": decision.desired,
        "reason": decision.reason,
        "messages": decision.messages,
        "recommendation": decision.recommendation,
        "fallback": decision.fallback,
    }


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
