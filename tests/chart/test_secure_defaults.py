"""The chart is closed by default: nothing public, policies on, credentials where they are used."""

from __future__ import annotations

from tests.chart.rendering import FULLNAME, by_kind, env_of, pod_labels, pod_specs


def test_the_defaults_expose_nothing_and_isolate_the_pods(render):
    docs = render("defaults")
    assert not by_kind(docs, "Ingress")
    policies = {d["metadata"]["name"] for d in by_kind(docs, "NetworkPolicy")}
    assert policies == {
        f"{FULLNAME}-{c}" for c in ("postgresql", "rabbitmq", "api", "worker", "scaler")
    }
    for service in by_kind(docs, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_a_plaintext_ingress_needs_an_explicit_waiver(render):
    [ingress] = by_kind(render("ingress-plaintext"), "Ingress")
    assert "tls" not in ingress["spec"]
    [ingress] = by_kind(render("ingress-tls"), "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["events.example.com"]


def test_network_policies_can_be_turned_off(render):
    assert not by_kind(render("no-network-policies"), "NetworkPolicy")


def test_each_process_gets_only_the_credentials_it_uses(render):
    docs = render("defaults")
    for owner, pod in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        for container in pod["containers"]:
            env = env_of(container)
            # The API key serves the API only.
            assert ("CE_API_KEYS" in env) == (component == "api"), component
