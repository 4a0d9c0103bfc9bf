"""A real Prometheus scrapes a running API, a worker and RabbitMQ: every dashboard panel and
every metric the alert rules name must have data.

The processes run as in production (subprocesses); Prometheus (Debian's package) scrapes them
every second with the labels the chart's ServiceMonitors give them (`namespace`, `job`), and
RabbitMQ's Prometheus plugin for the queue series. The test then causes what each panel shows
(accepted, duplicate, rejected, processed, failed and dead-lettered events, a returned publish
that the relay republishes) and queries each panel's expression as Grafana would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pika
import pytest
import yaml
from tests.chart.rendering import FULLNAME, NAMESPACE, find_helm, require_tool, template
from tests.support import services
from tests.support.payloads import conversation
from tests.support.pipeline import publish
from tests.support.processes import common_env, start_api, start_worker

from conversation_events.messaging.topology import Topology

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "conversation-events" / "dashboards" / "conversation-events.json"
API_KEY = "observability-test-key-0123456789"
#: A metric name where an expression selects it (not a label value such as a queue name).
METRIC = re.compile(r"\b((?:conversation_events|rabbitmq)_[a-z_]+)\s*[{\[]")


def prometheus_config(api_port: int, worker_port: int, vhost: str) -> dict[str, Any]:
    def job(name: str, port: int) -> dict[str, Any]:
        return {
            "job_name": f"{FULLNAME}-{name}",
            "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE}}
            ],
        }

    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            job("api", api_port),
            job("worker", worker_port),
            {
                "job_name": "rabbitmq",
                "metrics_path": "/metrics/detailed",
                "params": {
                    "family": ["queue_coarse_metrics", "queue_consumer_count"],
                    "vhost": [vhost],
                },
                "static_configs": [{"targets": ["127.0.0.1:15692"]}],
            },
        ],
    }


@pytest.fixture
def prometheus() -> Iterator[Any]:
    """Start Prometheus with a config written by the test; yields a function to start it."""
    binary = require_tool(shutil.which("prometheus"), "prometheus")
    services.require(
        services.port_open("127.0.0.1", 15692), "RabbitMQ's Prometheus plugin at 127.0.0.1:15692"
    )
    started: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = []

    def start(config: dict[str, Any]) -> str:
        workdir = Path(tempfile.mkdtemp(prefix="ce-prometheus-"))
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = services.free_port()
        log = (workdir / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        started.append((proc, workdir, log))
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
            try:
                return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        services.wait_for(ready, timeout=60, what="Prometheus ready")
        return base

    yield start
    for proc, workdir, log in started:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def panel_queries(queue: str, vhost: str) -> dict[str, str]:
    """Every target expression of the dashboard, with its variables as Grafana fills them."""
    board = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in board["panels"]:
        for n, target in enumerate(panel.get("targets", [])):
            expr = (
                target["expr"]
                .replace("$namespace", NAMESPACE)
                .replace("$queue", queue)
                .replace("$vhost", vhost)
                .replace("$__rate_interval", "1m")
            )
            queries[f"{panel['title']} #{n}"] = expr
    return queries


def rule_metrics() -> set[str]:
    """Every metric the rendered alert rules name."""
    helm = require_tool(find_helm(), "helm")
    docs = template(helm, ["--set=metrics.prometheusRule.enabled=true"])
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    return {m.removesuffix("_bucket") for e in exprs for m in METRIC.findall(e)}


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", (expr, answer)
    return list(answer["data"]["result"])


def bind(topology: Topology, *, bound: bool) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(services.AMQP_URL))
    try:
        channel = connection.channel()
        if bound:
            channel.queue_bind(topology.queue, topology.exchange, routing_key=topology.routing_key)
        else:
            channel.queue_unbind(
                topology.queue, topology.exchange, routing_key=topology.routing_key
            )
    finally:
        connection.close()


def test_every_dashboard_panel_and_alert_metric_has_data(
    database_url: str, amqp_url: str, names: tuple[str, str], prometheus: Any
) -> None:
    exchange, queue = names
    topology = services.apply_policy(exchange, queue)
    env = {
        **common_env(database_url, amqp_url, exchange, queue),
        "CE_RELAY_DELAY_S": "1",
        "CE_RELAY_INTERVAL_S": "0.5",
        "CE_LOG_LEVEL": "WARNING",
    }
    closing: list[httpx.Client] = []
    api, base = start_api(env, API_KEY)
    worker_port = services.free_port()
    worker = start_worker(env, CE_WORKER_HTTP_PORT=str(worker_port))
    try:
        promql = prometheus(prometheus_config(int(base.rsplit(":", 1)[1]), worker_port, "/"))
        client = httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=10)
        closing.append(client)
        bodies = [conversation() for _ in range(20)]
        for body in bodies:
            assert client.post("/v1/conversations/end", json=body).status_code == 202
        assert client.post("/v1/conversations/end", json=bodies[0]).status_code == 202  # dup
        assert client.post("/v1/conversations/end", json={"user_id": ""}).status_code == 422
        # A message whose event this database does not know: FAILED, dead-lettered.
        publish(topology, str(uuid.uuid4()), conversation())
        # A publish the broker returns (the queue unbound), republished by the relay later.
        bind(topology, bound=False)
        returned = conversation()
        assert client.post("/v1/conversations/end", json=returned).status_code == 202
        services.wait_for(
            lambda: query(promql, "sum(conversation_events_publish_failures_total) > 0"),
            timeout=60,
            what="the returned publish counted",
        )
        bind(topology, bound=True)
        services.wait_for(
            lambda: (
                client.get(f"/v1/conversations/{returned['conversation_id']}").json()["status"]
                == "PROCESSED"
            ),
            timeout=60,
            what="the returned event processed after the relay republished it",
        )

        def empty_panels() -> list[str]:
            return [
                title
                for title, expr in panel_queries(queue, "/").items()
                if not query(promql, expr)
            ]

        services.wait_for(
            lambda: not empty_panels(), timeout=90, what=f"data in every panel: {empty_panels()}"
        )
        names_seen = set(
            httpx.get(f"{promql}/api/v1/label/__name__/values", timeout=5).json()["data"]
        )
        missing = sorted(
            m for m in rule_metrics() if not ({m, f"{m}_bucket", f"{m}_count"} & names_seen)
        )
        assert not missing, f"alert rules name metrics nothing exports: {missing}"
    finally:
        for opened in closing:
            opened.close()
        worker.stop()
        api.stop()
