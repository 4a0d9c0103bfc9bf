"""The scaling decision, rule by rule, and its invariants as properties."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversation_events_scaler.decision import (
    Decision,
    Observation,
    ScalerState,
    ScalingPolicy,
    desired_replicas,
)

POLICY = ScalingPolicy(
    min_replicas=0,
    max_replicas=10,
    target_per_replica=50,
    activation=5,
    tolerance=0.1,
    scale_up_factor=2.0,
    scale_up_step=4,
    scale_down_stabilization_s=60,
    cooldown_s=120,
    stats_lag_s=10,
    fallback_replicas=2,
    fallback_after_failures=3,
)


def steady(current: int, *, idle_since: float = -1000.0) -> ScalerState:
    """A state with no history in the window: as if nothing happened for a long time."""
    return ScalerState(current_replicas=current, last_active_at=idle_since)


def decide(
    state: ScalerState,
    ready: int,
    unacked: int = 0,
    *,
    now: float = 0.0,
    policy: ScalingPolicy = POLICY,
) -> Decision:
    return desired_replicas(state, Observation(ready=ready, unacked=unacked), policy, now)


# --- the formula ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "ready", "unacked", "expected"),
    [
        (2, 200, 0, 4),  # ceil(200 / 50)
        (2, 150, 51, 5),  # ready + unacked = 201 → ceil(201 / 50) = 5
        (4, 0, 199, 4),  # unacked alone keeps busy workers (KEDA's AMQP mode would kill them)
        (10, 2000, 0, 10),  # clamped to max
        (3, 100, 0, 3),  # 100 / 50 = 2 wanted, but scale-in waits for the window (see below)
    ],
)
def test_formula_counts_ready_and_unacked(
    current: int, ready: int, unacked: int, expected: int
) -> None:
    state = ScalerState.initial(current, now=0.0) if current == 3 else steady(current)
    assert decide(state, ready, unacked).desired == expected


@pytest.mark.parametrize("ready_only", [False, True])
def test_events_not_yet_published_count_as_backlog(ready_only: bool) -> None:
    """Work waiting in PostgreSQL for its publish wakes and scales the workers like messages."""
    policy = replace(POLICY, ready_only=ready_only)
    waiting = Observation(ready=10, unacked=0, unpublished=190)
    decision = desired_replicas(steady(0), waiting, policy, 0.0)
    assert decision.messages == 200 and decision.desired == 4  # ceil(200 / 50)
    assert "190 unpublished" in decision.reason
    # Nothing in the queue, all of it in the database: active, not idle.
    alone = desired_replicas(steady(1), Observation(0, 0, unpublished=6), policy, 0.0)
    assert alone.desired == 1 and alone.recommendation == 1
    # Not counted (None) is not zero waiting, and adds nothing.
    assert Observation(3, 2).messages(ready_only) == (3 if ready_only else 5)


def test_ready_only_counts_ready_messages_but_unacked_still_block_zero() -> None:
    policy = replace(POLICY, ready_only=True)
    assert decide(steady(4), ready=0, unacked=500, policy=policy).desired == 1
    assert decide(steady(1), ready=100, unacked=500, policy=policy).desired == 2


def test_broker_total_counts_when_larger_than_the_sum() -> None:
    observation = Observation(ready=10, unacked=0, total=240)
    assert desired_replicas(steady(1), observation, POLICY, 0.0).desired == 5


def test_min_replicas_is_enforced_even_when_idle() -> None:
    policy = replace(POLICY, min_replicas=2)
    assert decide(steady(2), ready=0, policy=policy).desired == 2
    assert decide(steady(0), ready=0, policy=policy).desired == 2


# --- activation (acceptance 4 as a unit) -------------------------------------------------------


@pytest.mark.parametrize("ready", [0, 1, 5])
def test_below_activation_nothing_scales_from_zero(ready: int) -> None:
    decision = decide(steady(0), ready=ready)
    assert decision.desired == 0
    assert decision.direction == "none"
    assert "activation" in decision.reason


@pytest.mark.parametrize(("ready", "expected"), [(6, 1), (60, 2), (180, 4), (5000, 4)])
def test_above_activation_scales_from_zero_at_once(ready: int, expected: int) -> None:
    # From zero the step limit is +scale_up_step, so a burst wakes several workers at once.
    decision = decide(steady(0), ready=ready)
    assert decision.desired == expected
    assert decision.direction == "up"


def test_activation_is_independent_of_the_target() -> None:
    # activation 5 < target 50: six messages wake one worker, which then keeps them.
    assert decide(steady(0), ready=6).desired == 1
    assert decide(steady(1), ready=6).desired == 1


# --- tolerance and stabilisation: no flapping ----------------------------------------------------


@pytest.mark.parametrize("messages", [91, 95, 100, 105, 109])
def test_within_tolerance_nothing_changes(messages: int) -> None:
    # 2 replicas × 50 = 100; ±10 % changes nothing although ceil(101 / 50) = 3.
    decision = decide(steady(2), ready=messages)
    assert decision.desired == 2
    if messages > 100:
        assert "tolerance" in decision.reason


def test_outside_tolerance_scales() -> None:
    assert decide(steady(2), ready=111).desired == 3
    assert decide(steady(2), ready=50, now=0).desired == 1


def test_no_flapping_when_the_backlog_hovers_at_a_boundary() -> None:
    """A backlog oscillating around 2 × target for minutes changes the replicas once at most."""
    state = ScalerState.initial(2, now=0.0)
    replicas = [2]
    for tick in range(1, 60):
        messages = 100 + (12 if tick % 2 else -12)  # 112 / 88: outside the tolerance each way
        decision = decide(state, ready=messages, now=tick * 5.0)
        state = replace(decision.state, current_replicas=decision.desired)
        replicas.append(decision.desired)
    changes = sum(1 for a, b in itertools.pairwise(replicas) if a != b)
    assert changes <= 1
    assert replicas[-1] == 3  # went up once to cover the peaks, never back down in between


def test_scale_down_uses_the_highest_recommendation_of_the_window() -> None:
    state = ScalerState.initial(6, now=0.0)
    state = decide(state, ready=300, now=10).state  # recommends 6
    decision = decide(state, ready=100, now=20)  # recommends 2, window still holds 6
    assert decision.desired == 6
    assert "highest recommendation" in decision.reason
    state = decision.state
    decision = decide(state, ready=100, now=75)  # the 6 of t=10 has left the 60 s window
    assert decision.desired == 2
    assert decision.direction == "down"


def test_no_scale_in_while_the_last_scale_up_is_younger_than_the_statistics_lag() -> None:
    state = replace(steady(4), last_scale_up_at=100.0)
    held = decide(state, ready=50, now=105)
    assert held.desired == 4
    assert "statistics lag" in held.reason
    assert decide(state, ready=50, now=111).desired == 1


# --- scale-up policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "expected"),
    [(1, 5), (2, 6), (4, 8), (5, 10)],  # max(current × 2, current + 4), capped at max 10
)
def test_scale_up_grows_at_most_double_or_plus_step(current: int, expected: int) -> None:
    decision = decide(steady(current), ready=10_000)
    assert decision.desired == expected
    assert decision.recommendation == 10


# --- cooldown and zero --------------------------------------------------------------------


def test_last_replica_goes_only_after_the_cooldown() -> None:
    state = replace(steady(1), last_active_at=1000.0)
    kept = decide(state, ready=0, now=1000 + 119)
    assert kept.desired == 1
    assert "cooldown" in kept.reason
    assert decide(kept.state, ready=0, now=1000 + 121).desired == 0


def test_below_activation_counts_as_idle_for_the_cooldown() -> None:
    state = replace(steady(1), last_active_at=0.0)
    assert decide(state, ready=5, now=200).desired == 0


@pytest.mark.parametrize("unacked", [1, 3, 400])
def test_never_zero_while_messages_are_unacked(unacked: int) -> None:
    decision = decide(steady(1, idle_since=-10_000), ready=0, unacked=unacked, now=0)
    assert decision.desired >= 1


# --- metrics failures: fallback -----------------------------------------------------------------


def test_failures_hold_then_fall_back_then_recover() -> None:
    state = steady(1)
    desired = []
    for tick in range(4):
        decision = desired_replicas(state, None, POLICY, now=float(tick))
        state = replace(decision.state, current_replicas=decision.desired)
        desired.append((decision.desired, decision.fallback))
    assert desired == [(1, False), (1, False), (2, True), (2, True)]
    recovered = decide(state, ready=400, now=10.0)
    assert recovered.desired == 6  # ceil(400 / 50) = 8, limited to max(2 × 2, 2 + 4) = 6
    assert recovered.state.consecutive_failures == 0


def test_fallback_never_scales_in_blind() -> None:
    state = replace(steady(7), consecutive_failures=5)
    assert desired_replicas(state, None, POLICY, 0.0).desired == 7


def test_fallback_from_zero_starts_workers() -> None:
    state = replace(steady(0), consecutive_failures=2)
    assert desired_replicas(state, None, POLICY, 0.0).desired == 2


# --- validation and explanation --------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"min_replicas": 3, "max_replicas": 2},
        {"max_replicas": 0},
        {"target_per_replica": 0},
        {"activation": -1},
        {"scale_up_factor": 0.5},
        {"cooldown_s": -1},
        {"fallback_after_failures": 0},
    ],
)
def test_invalid_policies_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid scaling policy"):
        replace(POLICY, **changes)


def test_reason_tells_direction_numbers_and_rule() -> None:
    reason = decide(steady(2), ready=150, unacked=50).reason
    assert reason.startswith("scale up 2 → 4: ")
    assert "150 ready + 50 unacked" in reason
    assert "target 50" in reason


# --- properties -----------------------------------------------------------------------------

policies = st.builds(
    lambda lo, span, target, activation, window, cooldown, ready_only: ScalingPolicy(
        min_replicas=lo,
        max_replicas=max(1, lo + span),
        target_per_replica=target,
        activation=activation,
        scale_down_stabilization_s=window,
        cooldown_s=cooldown,
        ready_only=ready_only,
    ),
    st.integers(0, 5),
    st.integers(0, 20),
    st.floats(1, 1000, allow_nan=False),
    st.integers(0, 100),
    st.floats(0, 600),
    st.floats(0, 600),
    st.booleans(),
)
observations = st.builds(
    Observation, st.integers(0, 100_000), st.integers(0, 10_000), st.integers(0, 50)
)
states = st.builds(
    ScalerState,
    current_replicas=st.integers(0, 40),
    recommendations=st.lists(st.tuples(st.floats(-1000, 0), st.integers(0, 40)), max_size=5).map(
        tuple
    ),
    last_active_at=st.none() | st.floats(-2000, 0),
    last_scale_up_at=st.none() | st.floats(-2000, 0),
    consecutive_failures=st.integers(0, 5),
)


@given(policies, states, st.none() | observations, st.floats(0, 1000))
def test_result_is_always_within_bounds(
    policy: ScalingPolicy, state: ScalerState, observation: Observation | None, now: float
) -> None:
    decision = desired_replicas(state, observation, policy, now)
    assert policy.min_replicas <= decision.desired <= policy.max_replicas
    assert decision.reason


@given(policies, states, observations, st.floats(0, 1000))
def test_never_zero_while_messages_are_unacked_property(
    policy: ScalingPolicy, state: ScalerState, observation: Observation, now: float
) -> None:
    decision = desired_replicas(state, observation, policy, now)
    if observation.unacked > 0:
        assert decision.desired >= 1


@given(policies, states, st.floats(0, 1000))
def test_metric_failures_never_scale_in(
    policy: ScalingPolicy, state: ScalerState, now: float
) -> None:
    decision = desired_replicas(state, None, policy, now)
    assert decision.desired >= min(state.current_replicas, policy.max_replicas)


@given(
    policies,
    st.integers(0, 40),
    st.integers(0, 100_000),
    st.integers(0, 100_000),
    st.integers(0, 1_000),
)
def test_monotone_in_the_backlog_for_a_fresh_state(
    policy: ScalingPolicy, current: int, smaller: int, extra: int, unacked: int
) -> None:
    state = ScalerState.initial(current, now=0.0)
    low = desired_replicas(state, Observation(ready=smaller, unacked=unacked), policy, 1.0)
    high = desired_replicas(state, Observation(ready=smaller + extra, unacked=unacked), policy, 1.0)
    assert low.desired <= high.desired


# --- the publish rate as a second metric --------------------------------------------------------

RATE_POLICY = replace(POLICY, rate_per_replica=40.0)


def decide_rate(
    state: ScalerState,
    ready: int,
    rate: float | None,
    *,
    unacked: int = 0,
    policy: ScalingPolicy = RATE_POLICY,
) -> Decision:
    observation = Observation(ready=ready, unacked=unacked, publish_rate=rate)
    return desired_replicas(state, observation, policy, 0.0)


@pytest.mark.parametrize(
    ("current", "ready", "rate", "expected", "winner"),
    [
        (2, 100, 200.0, 5, "rate"),  # max(ceil(100 / 50), ceil(200 / 40)) = max(2, 5)
        (2, 400, 40.0, 6, "backlog"),  # max(8, 1), step-limited to 2 + 4
        (1, 0, 30.0, 1, "rate"),  # a stream with no backlog yet still wants one worker
        (4, 150, 160.0, 4, "rate"),  # rate 160 = 4 × 40 on target; backlog 3 is lower
        (4, 200, 170.0, 4, "tie"),  # 170 / 160 = 106 %: within the 10 % tolerance
        (4, 200, 180.0, 5, "rate"),  # 180 / 160 = 112 %: outside
        (10, 0, 10_000.0, 10, "rate"),  # clamped to max
        (3, 150, None, 3, "backlog"),  # no rate read: backlog only
    ],
)
def test_rate_and_backlog_the_larger_proposal_wins(
    current: int, ready: int, rate: float | None, expected: int, winner: str
) -> None:
    decision = decide_rate(steady(current), ready, rate)
    assert decision.desired == expected
    if rate is not None and winner == "rate":
        assert decision.reason.split(": ", 1)[1].startswith("publish rate")


def test_without_a_rate_target_the_rate_is_ignored() -> None:
    assert decide_rate(steady(2), 100, 10_000.0, policy=POLICY).desired == 2


def test_a_publish_rate_wakes_the_workers_from_zero() -> None:
    # Below the backlog activation (5), but messages keep arriving: the rate trigger is active.
    assert decide_rate(steady(0), 3, 12.0).desired == 1
    assert decide_rate(steady(0), 3, 0.0).desired == 0
    assert decide_rate(steady(0), 3, 12.0, policy=POLICY).desired == 0


def test_a_falling_rate_scales_in_only_after_the_window() -> None:
    fast = decide_rate(ScalerState.initial(5, now=0.0), 0, 200.0)
    assert fast.desired == 5
    later = desired_replicas(
        fast.state, Observation(ready=0, unacked=0, publish_rate=40.0), RATE_POLICY, 30.0
    )
    assert later.desired == 5 and "highest recommendation" in later.reason
    much_later = desired_replicas(
        later.state, Observation(ready=0, unacked=0, publish_rate=40.0), RATE_POLICY, 100.0
    )
    assert much_later.desired == 1


def test_a_rate_target_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate_per_replica"):
        replace(POLICY, rate_per_replica=0.0)


rates = st.floats(0, 50_000, allow_nan=False)


@given(policies, st.floats(0.5, 500), states, observations, rates, st.floats(0, 1000))
def test_the_rate_never_lowers_the_backlogs_decision(
    policy: ScalingPolicy,
    per_replica: float,
    state: ScalerState,
    observation: Observation,
    rate: float,
    now: float,
) -> None:
    """A second metric can only add replicas (max over metrics), and stays within bounds."""
    backlog_only = desired_replicas(state, observation, policy, now)
    both = desired_replicas(
        state,
        replace(observation, publish_rate=rate),
        replace(policy, rate_per_replica=per_replica),
        now,
    )
    assert both.desired >= backlog_only.desired
    assert policy.min_replicas <= both.desired <= policy.max_replicas


@given(policies, st.floats(0.5, 500), st.integers(0, 40), st.integers(0, 10_000), rates, rates)
def test_monotone_in_the_rate_for_a_fresh_state(
    policy: ScalingPolicy, per_replica: float, current: int, ready: int, low: float, extra: float
) -> None:
    policy = replace(policy, rate_per_replica=per_replica)
    state = ScalerState.initial(current, now=0.0)
    slow = desired_replicas(state, Observation(ready, 0, publish_rate=low), policy, 1.0)
    fast = desired_replicas(state, Observation(ready, 0, publish_rate=low + extra), policy, 1.0)
    assert slow.desired <= fast.desired
