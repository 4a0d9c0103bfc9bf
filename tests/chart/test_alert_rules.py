"""The chart's alert rules, unit-tested by Prometheus's own `promtool test rules`.

For every alert, a series that must fire it and one that must not, evaluated by promtool
against the rules exactly as the chart renders them (default thresholds).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.rendering import FULLNAME, NAMESPACE, one, require_tool

APP = f'namespace="{NAMESPACE}", job="{FULLNAME}-worker"'
API = f'namespace="{NAMESPACE}", job="{FULLNAME}-api"'
QUEUE = 'queue="conversation_events_processing", vhost="/"'
DEAD = 'queue="conversation_events_processing.dead", vhost="/"'

#: alert -> (series that fire it, series that must not, minutes until it has fired).
CASES: dict[str, tuple[dict[str, str], dict[str, str], int]] = {
    "ConversationEventsBacklogGrowing": (
        {f"rabbitmq_detailed_queue_messages{{{QUEUE}}}": "1000+100x60"},
        {f"rabbitmq_detailed_queue_messages{{{QUEUE}}}": "5000x60"},  # large but draining: flat
        45,
    ),
    "ConversationEventsBacklogOld": (
        {
            f'conversation_events_lag_seconds_bucket{{{APP}, le="600"}}': "0x40",
            f'conversation_events_lag_seconds_bucket{{{APP}, le="1800"}}': "0+10x40",
            f'conversation_events_lag_seconds_bucket{{{APP}, le="+Inf"}}': "0+10x40",
        },
        {
            f'conversation_events_lag_seconds_bucket{{{APP}, le="1"}}': "0+10x40",
            f'conversation_events_lag_seconds_bucket{{{APP}, le="600"}}': "0+10x40",
            f'conversation_events_lag_seconds_bucket{{{APP}, le="+Inf"}}': "0+10x40",
        },
        30,
    ),
    "ConversationEventsUnfinishedEventOld": (
        {f"conversation_events_oldest_unfinished_event_age_seconds{{{API}}}": "600+60x30"},
        # Re-driven events keep the gauge bounded by the horizon.
        {f"conversation_events_oldest_unfinished_event_age_seconds{{{API}}}": "100+1x30"},
        20,
    ),
    "ConversationEventsDeadLetters": (
        {f"rabbitmq_detailed_queue_messages{{{DEAD}}}": "0 0 3x20"},
        {
            f"rabbitmq_detailed_queue_messages{{{DEAD}}}": "0x20",
            f"conversation_events_dead_lettered_total{{{APP}}}": "4x20",  # long ago, replayed
        },
        15,
    ),
    "ConversationEventsWorkersHolding": (
        {f"conversation_events_worker_held{{{APP}}}": "0 0 30x20"},
        # A blip shorter than the alert's `for`: the database answered again.
        {f"conversation_events_worker_held{{{APP}}}": "0 30 30 0x20"},
        15,
    ),
    "ConversationEventsNoConsumers": (
        {
            f"rabbitmq_detailed_queue_messages{{{QUEUE}}}": "40x30",
            f"rabbitmq_detailed_queue_consumers{{{QUEUE}}}": "0x30",
        },
        {
            f"rabbitmq_detailed_queue_messages{{{QUEUE}}}": "40x30",
            f"rabbitmq_detailed_queue_consumers{{{QUEUE}}}": "2x30",
        },
        20,
    ),
    # Retries without a single FAILED event: a series that does not exist yet must not hide
    # the retries (a sum over no series is empty, not zero).
    "ConversationEventsFailureRate": (
        {
            f'conversation_events_processed_total{{{APP}, outcome="processed"}}': "0+60x40",
            f"conversation_events_retried_total{{{APP}}}": "0+60x40",
        },
        {
            f'conversation_events_processed_total{{{APP}, outcome="processed"}}': "0+600x40",
            f"conversation_events_retried_total{{{APP}}}": "0+1x40",
        },
        30,
    ),
    "ConversationEventsApi5xx": (
        {
            f'conversation_events_http_request_seconds_count{{{API}, status="2xx"}}': "0+60x30",
            f'conversation_events_http_request_seconds_count{{{API}, status="5xx"}}': "0+60x30",
        },
        {
            f'conversation_events_http_request_seconds_count{{{API}, status="2xx"}}': "0+600x30",
            f'conversation_events_http_request_seconds_count{{{API}, status="5xx"}}': "0+1x30",
        },
        20,
    ),
    # promtool's clock starts at 0: a run recorded at 1 h, then none (fires after 36 h + 1 h),
    # against runs recorded every day (the last one 9 h before).
    "ConversationEventsPurgeOverdue": (
        {f"conversation_events_purge_last_run_timestamp_seconds{{{API}}}": "3600x2400"},
        {
            f"conversation_events_purge_last_run_timestamp_seconds{{{API}}}": (
                "3600x1439 90000x1439"
            )
        },
        2400,
    ),
}


def _series(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": name, "values": text} for name, text in values.items()]


def _test_file(rules: Path, alerts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tests = []
    for name, (firing, quiet, minutes) in CASES.items():
        rule = alerts[name]
        expected = {
            "exp_labels": dict(rule.get("labels", {})),
            "exp_annotations": dict(rule.get("annotations", {})),
        }
        tests.append(
            {
                "name": f"{name} fires",
                "interval": "1m",
                "input_series": _series(firing),
                "alert_rule_test": [
                    {"eval_time": f"{minutes}m", "alertname": name, "exp_alerts": [expected]}
                ],
            }
        )
        tests.append(
            {
                "name": f"{name} stays quiet",
                "interval": "1m",
                "input_series": _series(quiet),
                "alert_rule_test": [
                    {"eval_time": f"{minutes}m", "alertname": name, "exp_alerts": []}
                ],
            }
        )
    return {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool(shutil.which("promtool"), "promtool")


def test_every_alert_fires_on_its_signal_and_only_then(
    render: Any, promtool: str, tmp_path: Path
) -> None:
    rule = one(render("monitoring"), "PrometheusRule", FULLNAME)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(CASES) == set(alerts), "every alert needs its promtool cases"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(_test_file(rules, alerts), sort_keys=False))

    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
