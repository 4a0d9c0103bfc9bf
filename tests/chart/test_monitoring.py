"""The dashboard and the alerts are built on metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.chart.rendering import FULLNAME, ROOT, Render, by_kind, one

METRIC = re.compile(
    r"(?<![\"\w])(conversation_events_[a-z_]+|rabbitmq_detailed_[a-z_]+)\b"
)  # not label values
# The families the RabbitMQ ServiceMonitor asks /metrics/detailed for, and what they expose.
RABBITMQ_DETAILED = {
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_consumers",
}


def _app_metric_names() -> set[str]:
    """Metric names registered by the services (first argument of Counter/Gauge/Histogram)."""
    names = set()
    for path in Path(ROOT, "services").rglob("*.py"):
        names |= set(re.findall(r"\"(conversation_events_[a-z_]+)\"", path.read_text()))
    return names


def _exists(name: str, app: set[str]) -> bool:
    if name.startswith("rabbitmq_detailed_"):
        return name in RABBITMQ_DETAILED
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return name in app or base in app


def test_alerts_and_dashboard_use_real_metric_names(render: Render) -> None:
    docs = render("monitoring")
    rule = one(docs, "PrometheusRule", FULLNAME)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "ConversationEventsBacklogGrowing",
        "ConversationEventsBacklogOld",
        "ConversationEventsUnfinishedEventOld",
        "ConversationEventsDeadLetters",
        "ConversationEventsNoConsumers",
        "ConversationEventsWorkersHolding",
        "ConversationEventsFailureRate",
        "ConversationEventsApi5xx",
        "ConversationEventsPurgeOverdue",
    }
    [dashboard] = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    ]
    board = json.loads(dashboard["data"]["conversation-events.json"])
    exprs = [r["expr"] for r in alerts.values()] + [
        t["expr"] for p in board["panels"] for t in p["targets"]
    ]
    app = _app_metric_names()
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used, "no metric found"
    missing = sorted(m for m in used if not _exists(m, app))
    assert not missing, f"metrics no service exports: {missing}"
    defaults = {v["name"]: v.get("current", {}).get("value") for v in board["templating"]["list"]}
    assert defaults["queue"] == "conversation_events_processing"
    assert defaults["namespace"] == "events"


def test_service_monitors_scrape_app_and_queue_metrics(render: Render) -> None:
    docs = render("monitoring")
    app = one(docs, "ServiceMonitor", FULLNAME)["spec"]
    assert app["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    mq = one(docs, "ServiceMonitor", f"{FULLNAME}-rabbitmq")["spec"]
    [endpoint] = mq["endpoints"]
    assert endpoint["path"] == "/metrics/detailed"
    assert endpoint["params"] == {"family": ["queue_coarse_metrics", "queue_consumer_count"]}
