"""The chart is closed by default: nothing public, policies on, credentials where they are used."""

from __future__ import annotations

import json
from typing import Any

from tests.chart.rendering import FULLNAME, Render, by_kind, env_of, pod_labels, pod_specs


def test_the_defaults_expose_nothing_and_isolate_the_pods(render: Render) -> None:
    docs = render("defaults")
    assert not by_kind(docs, "Ingress")
    policies = {d["metadata"]["name"] for d in by_kind(docs, "NetworkPolicy")}
    assert policies == {
        f"{FULLNAME}-{c}" for c in ("postgresql", "rabbitmq", "api", "worker", "scaler", "purge")
    } | {f"{FULLNAME}-{c}-egress" for c in ("api", "worker", "migrations")}
    for service in by_kind(docs, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_a_plaintext_ingress_needs_an_explicit_waiver(render: Render) -> None:
    [ingress] = by_kind(render("ingress-plaintext"), "Ingress")
    assert "tls" not in ingress["spec"]
    [ingress] = by_kind(render("ingress-tls"), "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["events.example.com"]


def _egress(docs: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    [policy] = [
        d["spec"]
        for d in by_kind(docs, "NetworkPolicy")
        if d["metadata"]["name"] == f"{FULLNAME}-{component}-egress"
    ]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    return policy["egress"]


def _peers(rules: list[dict[str, Any]]) -> dict[str, set[int]]:
    """Ports per destination: a component's pods, or "any" address."""
    out: dict[str, set[int]] = {}
    for rule in rules:
        peers = [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in rule.get("to", [])
        ]
        for peer in peers or ["any"]:
            out.setdefault(peer, set()).update(p["port"] for p in rule["ports"])
    return out


def test_the_app_connects_only_to_postgresql_rabbitmq_and_dns(render: Render) -> None:
    docs = render("defaults")
    for component in ("api", "worker"):
        assert _peers(_egress(docs, component)) == {
            "postgresql": {5432},
            "rabbitmq": {5672, 15672},
            "any": {53},
        }
    # The migration step applies the queue policy through the management API only.
    assert _peers(_egress(docs, "migrations")) == {
        "postgresql": {5432},
        "rabbitmq": {15672},
        "any": {53},
    }
    # External servers: their ports, on any address (the chart knows only host names).
    assert _peers(_egress(render("external-services"), "api")) == {"any": {5432, 5671, 15671, 53}}
    collector = {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"port": 4317}]}
    docs = render(None, f"--set-json=networkPolicy.extraEgress=[{json.dumps(collector)}]")
    assert _egress(docs, "worker")[-1] == collector


def test_network_policies_can_be_turned_off(render: Render) -> None:
    assert not by_kind(render("no-network-policies"), "NetworkPolicy")


def test_each_process_gets_only_the_credentials_it_uses(render: Render) -> None:
    docs = render("defaults")
    for owner, pod in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        for container in pod["containers"]:
            env = env_of(container)
            # The API key serves the API only; the scaler reads the management API, and the
            # database only to count the events not yet published, never AMQP.
            assert ("CE_API_KEYS" in env) == (component == "api"), component
            if component == "scaler":
                assert "CE_AMQP_URL" not in env, env
                assert env["CE_SCALER_COUNT_UNPUBLISHED"]["value"] == "true"
                assert "secretKeyRef" in env["CE_DATABASE_URL"]["valueFrom"], env
            if component == "purge":  # PostgreSQL only
                secrets = {k for k, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
                assert secrets == {"CE_DATABASE_URL"} and not container.get("envFrom"), env


def test_a_scaler_that_counts_only_the_queue_holds_no_database_credentials(
    render: Render,
) -> None:
    docs = render("network-policies", "--set=autoscaling.countUnpublished=false")
    [scaler] = [c for o, p in pod_specs(docs) for c in p["containers"]
                if pod_labels(o)["app.kubernetes.io/component"] == "scaler"]  # fmt: skip
    env = env_of(scaler)
    assert env["CE_SCALER_COUNT_UNPUBLISHED"]["value"] == "false"
    assert not {"CE_DATABASE_URL", "CE_DATABASE_PASSWORD", "CE_AMQP_URL"} & set(env), env
    [policy] = [d for d in by_kind(docs, "NetworkPolicy")
                if d["metadata"]["name"] == f"{FULLNAME}-postgresql"]  # fmt: skip
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert "scaler" not in peer["podSelector"]["matchExpressions"][0]["values"]


def test_metrics_and_docs_are_not_served_where_the_api_is_routed(render: Render) -> None:
    docs = render("ingress-tls")
    [ingress] = by_kind(docs, "Ingress")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["port"] == {"name": "http"}
    [api] = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == f"{FULLNAME}-api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    env = {k: v.get("value") for k, v in env_of(container).items()}
    assert env["CE_METRICS_PORT"] == "9090" and env["CE_DOCS_ENABLED"] == "false"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000,
        "metrics": 9090,
    }
    [service] = [d for d in by_kind(docs, "Service") if d["metadata"]["name"] == f"{FULLNAME}-api"]
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        "http": "http",
        "metrics": "metrics",
    }
    [policy] = [
        d for d in by_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == f"{FULLNAME}-api"
    ]
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        if "metrics" in ports:
            # Only the scraper's namespace reaches the metrics port.
            assert ports == {"metrics"}
            assert [list(peer) for peer in rule["from"]] == [["namespaceSelector"]]
        else:
            assert ports == {"http"}
