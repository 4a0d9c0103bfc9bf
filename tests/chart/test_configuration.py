"""The environment the chart gives each process is one its settings class accepts in production.

Every `CE_*` variable must be a field of the process's settings (they ignore unknown names, so
a typo would silently fall back to a default), and the whole environment, Secrets resolved,
must pass the settings' validation, which refuses placeholder credentials in production.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from conversation_events.settings import CommonSettings
from conversation_events_api.settings import ApiSettings
from conversation_events_scaler.settings import ScalerSettings
from conversation_events_worker.settings import WorkerSettings
from tests.chart.rendering import NAMESPACE, by_kind, pod_labels, pod_specs

SETTINGS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "worker": WorkerSettings,
    "scaler": ScalerSettings,
    "migrations": CommonSettings,
}


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would build it from the rendered objects."""
    maps = {d["metadata"]["name"]: d["data"] for d in by_kind(docs, "ConfigMap")}
    secrets = {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
        for d in by_kind(docs, "Secret")
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
        elif e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace":
            env[e["name"]] = NAMESPACE
    return env


@pytest.mark.parametrize("combination", ["defaults", "external-services", "keda", "scale-to-zero"])
def test_each_process_accepts_its_environment(render, combination, monkeypatch):
    docs = render(combination)
    seen = set()
    for owner, pod in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        if component not in SETTINGS:
            continue
        seen.add(component)
        settings_class = SETTINGS[component]
        env = _environment(docs, pod["containers"][0])
        fields = {f"CE_{name.upper()}" for name in settings_class.model_fields}
        unknown = {k for k in env if k.startswith("CE_")} - fields
        assert not unknown, f"{component}: {sorted(unknown)} are not settings of {settings_class}"
        for key in list(__import__("os").environ):
            if key.startswith("CE_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = settings_class()
        assert settings.environment == "production"
    assert {"api", "worker", "migrations"} <= seen


def test_containers_listen_where_the_probes_look(render):
    docs = render("defaults")
    expected = {
        "api": {"CE_HOST": "0.0.0.0", "CE_PORT": "8000"},
        "worker": {"CE_WORKER_HTTP_PORT": "9100"},
        "scaler": {"CE_SCALER_HTTP_HOST": "0.0.0.0", "CE_SCALER_HTTP_PORT": "9200"},
    }
    for owner, pod in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        if component in expected:
            env = _environment(docs, pod["containers"][0])
            for key, value in expected[component].items():
                assert env[key] == value, (component, key)


@pytest.mark.parametrize("combination", ["defaults", "external-services"])
def test_every_process_that_declares_the_queue_can_apply_its_policy(
    render, combination, monkeypatch
):
    """The API, the workers and the migration step reach the management API of the broker
    their AMQP URL names, and the migration step applies the policy (`--broker`)."""
    docs = render(combination)
    for owner, pod in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        if component not in {"api", "worker", "migrations"}:
            continue
        container = pod["containers"][0]
        env = _environment(docs, container)
        for key in list(__import__("os").environ):
            if key.startswith("CE_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = SETTINGS[component]()
        api = settings.management_api()  # type: ignore[attr-defined]
        amqp_host = settings.amqp_url.get_secret_value().split("@")[-1].split(":")[0]  # type: ignore[attr-defined]
        assert amqp_host in api.base_url, component
        assert api.user and api.password, component
        if component == "migrations":
            assert "--broker" in container["command"]
