"""The scaling decision: one pure function, plain values in, a decision with its reason out.

No clock, no broker, no Kubernetes here: the loop passes ``now`` (a monotonic number of
seconds), the last observation of the queue and the state the previous decision returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

Direction = Literal["up", "down", "none"]


@dataclass(frozen=True)
class ScalingPolicy:
    """How to turn a queue depth into a replica count. Same meanings as the chart's values.

    All durations are seconds; ``target_per_replica`` and ``activation`` are messages. The
    defaults are the chart's ``autoscaling`` defaults (``tests/chart`` checks they agree) and
    the scaler's (``ScalerSettings`` takes them from here).
    """

    min_replicas: int = 1
    max_replicas: int = 10
    #: Messages (ready + unacked) one replica is expected to hold: the HPA target value.
    target_per_replica: float = 200.0
    #: Backlog above which the workers wake from zero (KEDA's ``activationValue``).
    activation: int = 0
    #: Relative deviation from the target within which nothing changes (the HPA's 10 %).
    tolerance: float = 0.1
    #: One step may grow to at most ``max(ceil(current × factor), current + step)``.
    scale_up_factor: float = 2.0
    scale_up_step: int = 4
    #: Scale in to the highest recommendation of this trailing window (the HPA's behaviour).
    scale_down_stabilization_s: float = 120.0
    #: Time without activity before the last replica may go (KEDA's ``cooldownPeriod``).
    cooldown_s: float = 120.0
    #: Age of the management statistics: no scale-in while the last scale-out is younger.
    stats_lag_s: float = 10.0
    #: Replicas to run (at least) once the metric failed ``fallback_after_failures`` times.
    fallback_replicas: int = 1
    fallback_after_failures: int = 3
    #: Count only ready messages (KEDA's AMQP behaviour); unacked ones still block zero.
    ready_only: bool = False
    #: Publish rate (messages/s) one replica is expected to absorb: the second metric's target
    #: (KEDA's ``MessageRate`` trigger). None: the rate is not a metric, only the backlog is.
    rate_per_replica: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.min_replicas <= self.max_replicas:
            problems.append("need 0 <= min_replicas <= max_replicas")
        if self.max_replicas < 1:
            problems.append("max_replicas must be at least 1")
        if self.target_per_replica <= 0:
            problems.append("target_per_replica must be positive")
        if self.rate_per_replica is not None and self.rate_per_replica <= 0:
            problems.append("rate_per_replica must be positive (or None: no rate metric)")
        if self.activation < 0 or self.tolerance < 0:
            problems.append("activation and tolerance must not be negative")
        if self.scale_up_factor < 1 or self.scale_up_step < 1:
            problems.append("scale_up_factor must be >= 1 and scale_up_step >= 1")
        if min(self.scale_down_stabilization_s, self.cooldown_s, self.stats_lag_s) < 0:
            problems.append("durations must not be negative")
        if self.fallback_replicas < 0 or self.fallback_after_failures < 1:
            problems.append("fallback_replicas >= 0 and fallback_after_failures >= 1")
        if problems:
            raise ValueError("invalid scaling policy: " + "; ".join(problems))


@dataclass(frozen=True)
class Observation:
    """One sample of the queue from the management API."""

    ready: int
    unacked: int
    consumers: int = 0
    #: The queue's own ``messages`` field when reported (ready + unacked of the same sample).
    total: int | None = None
    #: Messages published to the queue per second (``message_stats.publish_details.rate``);
    #: None when not read. A queue nobody published to yet reports 0.
    publish_rate: float | None = None
    #: Events stored in PostgreSQL and not yet in the queue (the outbox backlog: accepted
    #: faster than published, or waiting for the relay); None when not counted.
    unpublished: int | None = None

    def messages(self, ready_only: bool = False) -> int:
        """The backlog the formula uses: ready + unacked (or ready only if asked to), plus the
        unpublished events, which are ready work that has not reached the queue yet.

        The larger of the sum and the broker's own total is taken, so a sample that lacks one
        of the two fields still counts everything the broker holds.
        """
        queued = self.ready if ready_only else max(self.ready + self.unacked, self.total or 0)
        return queued + (self.unpublished or 0)


@dataclass(frozen=True)
class ScalerState:
    """What one decision hands to the next; build the first with :meth:`initial`."""

    current_replicas: int
    #: ``(now, recommendation)`` pairs inside the scale-down stabilisation window.
    recommendations: tuple[tuple[float, int], ...] = ()
    #: Last time the queue was active (backlog above activation, or messages unacked).
    last_active_at: float | None = None
    last_scale_up_at: float | None = None
    consecutive_failures: int = 0

    @classmethod
    def initial(cls, current_replicas: int, now: float) -> ScalerState:
        """State for a scaler that just started and knows nothing about the past.

        The running replicas count as a recommendation and the queue as active *now*, so a
        restarted scaler waits a full stabilisation window and cooldown before it scales in.
        """
        return cls(
            current_replicas=current_replicas,
            recommendations=((now, current_replicas),),
            last_active_at=now if current_replicas > 0 else None,
        )


@dataclass(frozen=True)
class Decision:
    """The outcome: how many replicas, why, and the state for the next call."""

    current: int
    desired: int
    reason: str
    state: ScalerState
    #: The backlog the formula used; None when the metric was unavailable.
    messages: int | None = None
    #: ``clamp(ceil(messages / target))`` after activation and tolerance, before the
    #: scale-up limit, the stabilisation window and the cooldown.
    recommendation: int | None = None
    fallback: bool = False

    @property
    def direction(self) -> Direction:
        if self.desired > self.current:
            return "up"
        if self.desired < self.current:
            return "down"
        return "none"


def _clamp(value: int, policy: ScalingPolicy) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, value))


def _proposal(
    value: float, target: float, current: int, tolerance: float, counted: str, unit: str
) -> tuple[int, str]:
    """One metric's replicas, as the HPA computes them for an ``AverageValue`` target:
    ``ceil(value / target)``, or ``current`` within the tolerance; with the reason."""
    proposal = math.ceil(value / target)
    why = f"{counted} / target {target:g}{unit} per replica = {proposal}"
    if current > 0 and proposal > 0 and proposal != current:
        ratio = value / (current * target)
        if abs(ratio - 1.0) <= tolerance:
            why = (
                f"{counted} is {ratio:.0%} of {current} × {target:g}{unit}, within the "
                f"{tolerance:.0%} tolerance: keeping {current}"
            )
            proposal = current
    return proposal, why


def desired_replicas(
    state: ScalerState,
    observation: Observation | None,
    policy: ScalingPolicy,
    now: float,
) -> Decision:
    """Decide how many workers should run, KEDA/HPA style, and say why.

    With ``M`` the backlog (``ready + unacked``, or ``ready`` with ``policy.ready_only``, plus
    the events not yet published when they are counted), ``T`` the target per replica and
    ``N`` the current replicas::

        recommendation = clamp(ceil(M / T), min, max)

    With a rate target (``policy.rate_per_replica = Tr``) and ``R`` the publish rate
    (messages/s), the rate is a second metric and the larger proposal wins, as the HPA does
    with several metrics (each proposes ``ceil(value / target)``, the HPA takes the maximum)::

        recommendation = clamp(max(ceil(M / T), ceil(R / Tr)), min, max)

    e.g. ``M = 300``, ``T = 200``, ``R = 180/s``, ``Tr = 40/s``: ``max(2, 5) = 5`` replicas,
    before the backlog has built up.

    refined by these rules, in order:

    1. **Activation** (0 ↔ 1, kept apart from the target). The queue is *active* when
       ``M > activation``, any message is unacked, or (rate metric on) ``R > 0``. Inactive,
       the recommendation is 0 (from zero nothing starts; running replicas leave through
       rules 4 and 5); active, it is at least 1.
    2. **Tolerance** (HPA), per metric. With ``N > 0`` and ``|M / (N × T) − 1| ≤ tolerance``
       the backlog proposes ``N`` (likewise the rate with ``R / (N × Tr)``): small wobbles
       around a boundary change nothing.
    3. **Scale-up policy.** One step grows to at most
       ``max(ceil(N × scale_up_factor), N + scale_up_step)`` (from zero: ``scale_up_step``).
    4. **Scale-down stabilisation** (HPA). Scale in only to the *highest* recommendation
       seen during the last ``scale_down_stabilization_s``, and not at all while the last
       scale-out is younger than ``stats_lag_s`` (the management statistics still show the
       world before it).
    5. **Cooldown.** The last replica goes only after the queue was inactive for
       ``cooldown_s``; never while messages are unacked (a busy worker is never removed
       for lack of *ready* messages).
    6. **Fallback** (KEDA). With no observation, hold ``N``; from the
       ``fallback_after_failures``-th consecutive failure, run ``max(N, fallback_replicas)``.
       Blind, the scaler never scales in.

    The result is always within ``[min_replicas, max_replicas]``.
    """
    current = state.current_replicas
    if observation is None:
        return _without_metrics(state, policy, now)

    target = policy.target_per_replica
    messages = observation.messages(policy.ready_only)
    unacked = observation.unacked
    active = messages > policy.activation or unacked > 0
    last_active_at = now if active else state.last_active_at
    parts = [f"{observation.ready} ready"]
    if not policy.ready_only:
        parts.append(f"{unacked} unacked")
    if observation.unpublished is not None:
        parts.append(f"{observation.unpublished} unpublished")
    counted = (
        f"{messages} ready" if len(parts) == 1 else f"{messages} messages ({' + '.join(parts)})"
    )

    # 1-2. each metric's proposal, within its tolerance; the larger wins
    backlog, why = _proposal(messages, target, current, policy.tolerance, counted, "")
    recommendation = backlog
    rate = observation.publish_rate
    rate_target = policy.rate_per_replica
    if rate_target is not None and rate is not None:
        active = active or rate > 0
        by_rate, rate_why = _proposal(
            rate, rate_target, current, policy.tolerance, f"publish rate {rate:g}/s", "/s"
        )
        if by_rate > backlog:
            recommendation = by_rate
            why = f"{rate_why} (backlog: {why})"
        else:
            why += f" (rate: {rate_why})"
        last_active_at = now if active else state.last_active_at

    if not active:
        recommendation = 0
        why = f"{counted} not above activation {policy.activation}: inactive, recommending 0"
    elif recommendation == 0:
        recommendation = 1
        why = f"{counted}, {unacked} unacked: at least one replica"
    elif current == 0:
        why += f" (above activation {policy.activation})"

    clamped = _clamp(recommendation, policy)
    if clamped != recommendation:
        why += f", clamped to [{policy.min_replicas}, {policy.max_replicas}] = {clamped}"
    recommendation = clamped

    window_start = now - policy.scale_down_stabilization_s
    recommendations = (
        *((t, r) for t, r in state.recommendations if t > window_start),
        (now, recommendation),
    )

    desired = current
    if recommendation > current:
        # 3. scale-up policy
        limit = max(math.ceil(current * policy.scale_up_factor), current + policy.scale_up_step)
        desired = min(recommendation, limit)
        if desired < recommendation:
            why += (
                f"; growing to {desired} this step "
                f"(at most ×{policy.scale_up_factor:g} or +{policy.scale_up_step})"
            )
    elif recommendation < current:
        # 4. stabilisation and statistics lag
        highest = max(r for _, r in recommendations)
        desired = min(current, highest)
        if highest > recommendation:
            why += (
                f"; highest recommendation in the last "
                f"{policy.scale_down_stabilization_s:g}s is {highest}"
            )
        if (
            desired < current
            and state.last_scale_up_at is not None
            and now - state.last_scale_up_at < policy.stats_lag_s
        ):
            desired = current
            why += (
                f"; last scale-up {now - state.last_scale_up_at:.0f}s ago is younger than "
                f"the statistics lag {policy.stats_lag_s:g}s: holding"
            )
        # 5. cooldown before zero
        if desired == 0 and last_active_at is not None:
            idle = now - last_active_at
            if idle < policy.cooldown_s:
                desired = max(1, policy.min_replicas)
                why += f"; idle for {idle:.0f}s of the {policy.cooldown_s:g}s cooldown"

    desired = _clamp(desired, policy)
    new_state = replace(
        state,
        recommendations=recommendations,
        last_active_at=last_active_at,
        last_scale_up_at=now if desired > current else state.last_scale_up_at,
        consecutive_failures=0,
    )
    return Decision(
        current=current,
        desired=desired,
        reason=_prefix(current, desired) + why,
        state=new_state,
        messages=messages,
        recommendation=recommendation,
    )


def _without_metrics(state: ScalerState, policy: ScalingPolicy, now: float) -> Decision:
    current = state.current_replicas
    failures = state.consecutive_failures + 1
    if failures >= policy.fallback_after_failures:
        desired = _clamp(max(current, policy.fallback_replicas), policy)
        why = (
            f"queue metrics unavailable for {failures} consecutive polls: fallback to at least "
            f"{policy.fallback_replicas} replicas, never scaling in blind"
        )
        fallback = True
    else:
        desired = _clamp(current, policy)
        why = (
            f"queue metrics unavailable ({failures} of {policy.fallback_after_failures} "
            "failures before fallback): "
        )
        why += (
            "holding"
            if desired == current
            else f"only bringing {current} into [{policy.min_replicas}, {policy.max_replicas}]"
        )
        fallback = False
    new_state = replace(
        state,
        consecutive_failures=failures,
        last_scale_up_at=now if desired > current else state.last_scale_up_at,
    )
    return Decision(
        current=current,
        desired=desired,
        reason=_prefix(current, desired) + why,
        state=new_state,
        fallback=fallback,
    )


def _prefix(current: int, desired: int) -> str:
    if desired > current:
        return f"scale up {current} → {desired}: "
    if desired < current:
        return f"scale down {current} → {desired}: "
    return f"keep {current}: "
