"""The environment the chart gives each process is one its settings class accepts in production.

Every `CE_*` variable must be a field of the process's settings (they ignore unknown names, so
a typo would silently fall back to a default), and the whole environment, Secrets resolved,
must pass the settings' validation, which refuses placeholder credentials in production.
"""

from __future__ import annotations

import base64
from typing import Any

import pika
import pytest
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from conversation_events import telemetry
from conversation_events.settings import CommonSettings
from conversation_events_api.settings import ApiSettings
from conversation_events_scaler.decision import ScalingPolicy
from conversation_events_scaler.settings import ProcessSettings, ScalerSettings
from conversation_events_worker.settings import WorkerSettings
from tests.chart.rendering import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    Render,
    by_kind,
    pod_labels,
    pod_specs,
    run_helm,
)

SETTINGS: dict[str, type[CommonSettings]] = {
    "api": ApiSettings,
    "worker": WorkerSettings,
    "scaler": ProcessSettings,
    "deletion-cost": ProcessSettings,
    "migrations": CommonSettings,
}


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    """The variables a settings class reads: its prefix + each field, nested settings too."""
    prefix = settings_class.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings_class.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            names |= env_names(nested)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


#: Secrets the operators (and a managed service's owner) write, as they would hold them: the
#: chart only names them. Passwords with the characters URLs treat apart.
OUTSIDE_SECRETS: dict[str, dict[str, str]] = {
    f"{FULLNAME}-postgresql-app": {
        "username": "conversation_events",
        "password": "cnpg/pw@1:x",
        "host": f"{FULLNAME}-postgresql-rw",
    },
    **{
        f"{FULLNAME}-rabbitmq-{c}-user-credentials": {
            "username": f"generated-{c}",
            "password": f"{c}+pw/1",
        }
        for c in ("api", "worker", "scaler", "migrations")
    },
    f"{FULLNAME}-rabbitmq-default-user": {"username": "default_user_x", "password": "d3f@ult"},
    "db-credentials": {"db-password": "managed db pw"},
    "mq-credentials": {"user": "managed-mq", "pass": "managed:mq"},
}


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would build it from the rendered objects."""
    maps = {d["metadata"]["name"]: d["data"] for d in by_kind(docs, "ConfigMap")}
    secrets = OUTSIDE_SECRETS | {
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


@pytest.mark.parametrize(
    "combination",
    [
        "defaults",
        "external-services",
        "keda",
        "scale-to-zero",
        "rate-trigger",
        "deletion-cost",
        "keda-deletion-cost",
        "operators",
        "operators-shared-user",
        "external-existing-secrets",
    ],
)
def test_each_process_accepts_its_environment(
    render: Render, combination: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(combination)
    seen = set()
    for owner, pod in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        if component not in SETTINGS:
            continue
        seen.add(component)
        settings_class = SETTINGS[component]
        env = _environment(docs, pod["containers"][0])
        fields = env_names(settings_class)
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


def test_containers_listen_where_the_probes_look(render: Render) -> None:
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


@pytest.mark.parametrize(
    ("combination", "users"),
    [
        ("operators", {"api": "generated-api", "worker": "generated-worker"}),
        ("external-existing-secrets", {"api": "managed-mq", "worker": "managed-mq"}),
    ],
)
def test_credentials_from_outside_secrets_reach_the_urls(
    render: Render, combination: str, users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process connects with, once the settings put the Secrets' keys into its URLs."""
    docs = render(combination)
    for owner, pod in pod_specs(docs):
        component = pod_labels(owner)["app.kubernetes.io/component"]
        if component not in users:
            continue
        for key in list(__import__("os").environ):
            if key.startswith("CE_"):
                monkeypatch.delenv(key)
        for key, value in _environment(docs, pod["containers"][0]).items():
            monkeypatch.setenv(key, value)
        settings = SETTINGS[component]()
        amqp = pika.URLParameters(settings.amqp_url.get_secret_value())
        assert amqp.credentials.username == users[component]
        expected = OUTSIDE_SECRETS[
            f"{FULLNAME}-rabbitmq-{component}-user-credentials"
            if combination == "operators"
            else "mq-credentials"
        ]
        assert amqp.credentials.password == expected.get("password", expected.get("pass"))
        db = make_url(settings.database_url.get_secret_value())
        assert db.password == ("cnpg/pw@1:x" if combination == "operators" else "managed db pw")


@pytest.mark.parametrize("combination", ["defaults", "external-services"])
def test_every_process_that_declares_the_queue_can_apply_its_policy(
    render: Render, combination: str, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        api = settings.management_api()
        amqp_host = settings.amqp_url.get_secret_value().split("@")[-1].split(":")[0]
        assert amqp_host in api.base_url, component
        assert api.user and api.password, component
        if component == "migrations":
            assert "--broker" in container["command"]


def test_the_scalers_defaults_are_the_charts() -> None:
    """One set of scaling defaults: the chart's `autoscaling` values are the scaler's own."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]
    policy = ScalerSettings().scaling_policy()
    assert policy == ScalingPolicy()
    chart = {
        "min_replicas": values["minReplicas"],
        "max_replicas": values["maxReplicas"],
        "target_per_replica": values["targetPerReplica"],
        "activation": values["activationValue"],
        "cooldown_s": values["cooldownSeconds"],
        "scale_down_stabilization_s": values["scaleDownStabilizationSeconds"],
        "fallback_after_failures": values["fallback"]["failureThreshold"],
        "fallback_replicas": values["fallback"]["replicas"],
    }
    assert chart == {name: getattr(policy, name) for name in chart}
    # The rate is a metric only when turned on, in the chart as in the scaler.
    assert values["rateTrigger"]["enabled"] is False and policy.rate_per_replica is None
    assert values["pollingIntervalSeconds"] == ScalerSettings().polling_interval_s


def test_tracing_settings_reach_the_api_the_workers_and_the_scaler_only_when_enabled(
    render: Render,
) -> None:
    """The chart passes `OTEL_*` through: off by default, OTLP/HTTP to the endpoint when on."""
    for combination, expected in (("defaults", None), ("tracing", "otlp")):
        docs = render(combination)
        seen = set()
        for owner, pod in pod_specs(docs):
            component = pod_labels(owner)["app.kubernetes.io/component"]
            if component not in {"api", "worker", "scaler"}:
                continue
            seen.add(component)
            env = _environment(docs, pod["containers"][0])
            assert telemetry.exporter_from_env(env) == expected, (combination, component)
            if expected is None:
                assert not [k for k in env if k.startswith("OTEL_")], component
                continue
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
            assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
            assert env["OTEL_TRACES_SAMPLER_ARG"] == "1.0"
            assert env["OTEL_BSP_SCHEDULE_DELAY"] == "500"
        assert seen == {"api", "worker", "scaler"}


def test_tracing_without_an_endpoint_is_refused(helm: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set=tracing.enabled=true")
    assert result.returncode != 0
    assert "tracing.endpoint is required" in result.stderr
