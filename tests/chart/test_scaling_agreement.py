"""KEDA's HPA and the built-in scaler reach the same replicas from the same rendered values.

The ScaledObject's triggers are read from the rendered chart and fed to the HPA's documented
algorithm (each metric proposes ``ceil(value / target)``, or the current replicas within the
0.1 tolerance; the HPA takes the largest proposal and clamps it to min/max). The built-in
scaler's policy is built from the scaler Deployment rendered with the same values. Both see
the same observations of the queue and must recommend the same count (the behaviour that
follows, step limits and stabilisation, is compared rule by rule in tests/unit).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversation_events_scaler.decision import Observation, ScalerState, desired_replicas
from conversation_events_scaler.settings import ScalerSettings
from tests.chart.rendering import COMBINATIONS, FULLNAME, env_of, one, template

HPA_TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance default
VALUES = [
    "--set=autoscaling.minReplicas=0",
    "--set=autoscaling.maxReplicas=12",
    "--set=autoscaling.targetPerReplica=50",
    "--set=autoscaling.rateTrigger.ratePerReplica=40",
]


def hpa_desired(
    current: int, metrics: list[tuple[float, float]], min_replicas: int, max_replicas: int
) -> int:
    """The HPA's replicas for ``AverageValue`` external metrics: ``(value, target)`` pairs.

    KEDA runs the HPA with at least one replica and takes 1 → 0 itself, only when no trigger
    is active (a value above its activation, 0 here): a publish rate too small for any
    proposal (say 5e-324 messages/s) still keeps one worker, as it does in the scaler.
    """
    proposals = []
    for value, target in metrics:
        ratio = value / (target * current)
        proposals.append(current if abs(ratio - 1) <= HPA_TOLERANCE else math.ceil(value / target))
    if any(value > 0 for value, _ in metrics):
        min_replicas = max(1, min_replicas)
    return max(min_replicas, min(max_replicas, max(proposals)))


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, Any]:
    keda = template(helm, [*COMBINATIONS["keda-rate-trigger"], *VALUES])
    scaler = template(helm, [*COMBINATIONS["rate-trigger"], *VALUES])
    so = one(keda, "ScaledObject", f"{FULLNAME}-worker")["spec"]
    container = one(scaler, "Deployment", f"{FULLNAME}-scaler")["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {
        name.removeprefix("CE_SCALER_").lower(): e["value"]
        for name, e in env_of(container).items()
        if name.startswith("CE_SCALER_") and "value" in e
    }
    fields = {f.name for f in dataclasses.fields(ScalerSettings().scaling_policy())}
    policy = ScalerSettings(**{k: v for k, v in env.items() if k in fields}).scaling_policy()
    return {"so": so, "policy": policy}


def test_the_rendered_triggers_are_backlog_and_rate(rendered: dict[str, Any]) -> None:
    modes = [(t["metadata"]["mode"], t["metadata"]["value"]) for t in rendered["so"]["triggers"]]
    assert modes == [("QueueLength", "50"), ("MessageRate", "40")]
    assert {t["metadata"]["protocol"] for t in rendered["so"]["triggers"]} == {"http"}
    policy = rendered["policy"]
    assert (policy.target_per_replica, policy.rate_per_replica) == (50, 40)
    assert (policy.min_replicas, policy.max_replicas) == (0, 12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    current=st.integers(1, 12),
    ready=st.integers(0, 2_000),
    unacked=st.integers(0, 500),
    rate=st.floats(0, 1_000, allow_nan=False),
)
def test_the_scaler_recommends_what_the_hpa_computes(
    rendered: dict[str, Any], current: int, ready: int, unacked: int, rate: float
) -> None:
    so, policy = rendered["so"], rendered["policy"]
    by_mode = {t["metadata"]["mode"]: float(t["metadata"]["value"]) for t in so["triggers"]}
    # KEDA's HTTP mode reads `messages` (ready + unacked) and the publish rate.
    metrics = [(ready + unacked, by_mode["QueueLength"]), (rate, by_mode["MessageRate"])]
    expected = hpa_desired(current, metrics, so["minReplicaCount"], so["maxReplicaCount"])
    observation = Observation(
        ready=ready, unacked=unacked, total=ready + unacked, publish_rate=rate
    )
    decision = desired_replicas(ScalerState(current_replicas=current), observation, policy, 0.0)
    assert decision.recommendation == expected, decision.reason


@pytest.mark.parametrize(
    ("current", "messages", "rate", "expected"),
    [
        (2, 100, 200.0, 5),  # the worked example of docs/autoscaling.md: max(2, 5)
        (1, 0, 0.0, 0),  # idle: both propose 0 (KEDA then deactivates after the cooldown)
        (4, 190, 150.0, 4),  # both within the tolerance of 4
        (3, 2_000, 1_000.0, 12),  # clamped to maxReplicaCount
    ],
)
def test_decision_table_on_the_rendered_values(
    rendered: dict[str, Any], current: int, messages: int, rate: float, expected: int
) -> None:
    so, policy = rendered["so"], rendered["policy"]
    by_mode = {t["metadata"]["mode"]: float(t["metadata"]["value"]) for t in so["triggers"]}
    metrics = [(messages, by_mode["QueueLength"]), (rate, by_mode["MessageRate"])]
    assert hpa_desired(current, metrics, so["minReplicaCount"], so["maxReplicaCount"]) == expected
    observation = Observation(ready=messages, unacked=0, publish_rate=rate)
    decision = desired_replicas(ScalerState(current_replicas=current), observation, policy, 0.0)
    assert decision.recommendation == expected
