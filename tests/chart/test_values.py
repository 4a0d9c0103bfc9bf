"""values.yaml, values.schema.json and the README agree, and wrong values are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.chart import values_doc
from tests.chart.rendering import CHART, run_helm

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def test_every_values_key_is_documented() -> None:
    _, undocumented = values_doc.parse()
    assert undocumented == []


def test_readme_table_matches_values_yaml() -> None:
    params, _ = values_doc.parse()
    assert values_doc.readme_table() == values_doc.table(params), (
        "README values table is stale: run .venv/bin/python tests/chart/values_doc.py --write"
    )


def _schema_paths(schema: dict[str, Any], leaves: set[str], prefix: str = "") -> set[str]:
    """Property paths of the schema, down to the documented parameters."""
    out = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        out.add(path)
        if path not in leaves:
            out |= _schema_paths(sub, leaves, f"{path}.")
    return out


def test_schema_describes_exactly_the_documented_values() -> None:
    params, _ = values_doc.parse()
    leaves = {p.path for p in params}
    sections = {".".join(p.split(".")[:i]) for p in leaves for i in range(1, p.count(".") + 1)}
    assert SCHEMA["additionalProperties"] is False
    assert _schema_paths(SCHEMA, leaves) == leaves | sections


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--set=replicas=3"], "additional properties 'replicas' not allowed"),
        (["--set=api.replicas=3"], "additional properties 'replicas' not allowed"),
        (["--set=config.maxAttempts=many"], "/config/maxAttempts"),
        (["--set=config.environment=staging"], "/config/environment"),
        (["--set=config.logLevel=verbose"], "/config/logLevel"),
        (["--set=autoscaling.enabled=yes"], "/autoscaling/enabled"),
        (["--set=autoscaling.minReplicas=-1"], "/autoscaling/minReplicas"),
        (["--set=autoscaling.targetPerReplica=0"], "/autoscaling/targetPerReplica"),
        (["--set=api.port=70000"], "/api/port"),
        (["--set=image.digest=latest"], "/image/digest"),
        (["--set=global.imageRegistry=https://mirror.example.com"], "/global/imageRegistry"),
        (["--set=api.ingress.pathType=Anything"], "/api/ingress/pathType"),
        (["--set=api.ingress.host=Not_A_Host"], "/api/ingress/host"),
        (["--set=externalDatabase.sslMode=maybe"], "/externalDatabase/sslMode"),
        (["--set=image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set=secrets.apiKeys={short}"], "/secrets/apiKeys/0"),
        (['--set-json=worker.extraEnv=[{"value":"x"}]'], "/worker/extraEnv/0"),
        (["--set=postgresql.persistence.size=lots"], "/postgresql/persistence/size"),
        (["--set=metrics.prometheusRule.failureRatio=2"], "/metrics/prometheusRule/failureRatio"),
        # Checks across values, made by the templates:
        (["--set=worker.drainTimeoutSeconds=90"], "must exceed worker.drainTimeoutSeconds"),
        (
            ["--set=autoscaling.minReplicas=5", "--set=autoscaling.maxReplicas=2"],
            "maxReplicas must be at least",
        ),
        # The modes and what each requires:
        (["--set=postgresql.enabled=false"], "additional properties 'enabled' not allowed"),
        (["--set=postgresql.mode=cnpg"], "/postgresql/mode"),
        (["--set=rabbitmq.mode=cluster"], "/rabbitmq/mode"),
        (["--set=postgresql.mode=external"], "/externalDatabase/host"),
        (
            [
                "--set=rabbitmq.mode=external",
                "--set=externalRabbitmq.managementUrl=http://mq:15672",
            ],
            "/externalRabbitmq/host",
        ),
        (
            ["--set=rabbitmq.mode=external", "--set=externalRabbitmq.host=mq"],
            "/externalRabbitmq/managementUrl",
        ),
        (
            [
                "--set=rabbitmq.mode=external",
                "--set=externalRabbitmq.host=mq",
                "--set=externalRabbitmq.managementUrl=http://mq:15672",
            ],
            "externalRabbitmq.username is required",
        ),
        (["--set=rabbitmq.operator.replicas=2"], "/rabbitmq/operator/replicas"),
        (["--set=postgresql.cloudnativepg.instances=0"], "/postgresql/cloudnativepg/instances"),
        (
            ["--set=postgresql.cloudnativepg.synchronous.method=all"],
            "/postgresql/cloudnativepg/synchronous/method",
        ),
        (
            [
                "--set=postgresql.mode=cloudnativepg",
                "--set=postgresql.cloudnativepg.synchronous.number=3",
            ],
            "synchronous.number must be below postgresql.cloudnativepg.instances",
        ),
        (
            [
                "--set=postgresql.cloudnativepg.scheduledBackup.enabled=true",
                "--set=postgresql.cloudnativepg.scheduledBackup.method=plugin",
            ],
            "/postgresql/cloudnativepg/plugins",
        ),
        (
            ["--set=postgresql.cloudnativepg.scheduledBackup.schedule=daily"],
            "/postgresql/cloudnativepg/scheduledBackup/schedule",
        ),
        (
            ["--set-string=postgresql.cloudnativepg.parameters.max_connections=500"],
            "/postgresql/cloudnativepg/parameters",
        ),
        (["--set=externalDatabase.existingSecret=Not_A_Name"], "/externalDatabase/existingSecret"),
        (
            ["--set=api.ingress.enabled=true", "--set=api.ingress.tls.enabled=true"],
            "needs api.ingress.host",
        ),
        (["--set=api.ingress.enabled=true"], "TLS is required"),
        # The operator conventions (tests/chart/test_conventions.py):
        (["--set=gateway.enabled=true", "--set=gateway.force=true"], "gateway.parentRefs"),
        (
            ['--set-json=commonAnnotations={"helm.sh/hook":"pre-install"}'],
            "propertyName 'helm.sh/hook'",
        ),
        (["--set=api.autoscaling.targetCPUUtilizationPercentage=0"], "/api/autoscaling"),
        (
            [
                "--set=api.autoscaling.enabled=true",
                "--set=api.autoscaling.minReplicas=4",
                "--set=api.autoscaling.maxReplicas=3",
            ],
            "api.autoscaling.maxReplicas must be at least",
        ),
        (['--set-json=api.extraVolumeMounts=[{"name":"x"}]'], "/api/extraVolumeMounts/0"),
        (
            ['--set-json=worker.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"zone"}]'],
            "/worker/topologySpreadConstraints/0",
        ),
        (["--set=api.priorityClassName=Not_Valid"], "/api/priorityClassName"),
    ],
)
def test_wrong_values_are_rejected(helm: str, args: list[str], error: str) -> None:
    result = run_helm(helm, "template", "ce", str(CHART), *args)
    assert result.returncode != 0, f"accepted {args}"
    assert error in result.stderr


def test_sections_reject_unknown_keys() -> None:
    params, _ = values_doc.parse()
    sections = {
        ".".join(p.path.split(".")[:i]) for p in params for i in range(1, p.path.count(".") + 1)
    }
    # Helm passes a parent chart's globals down into `global`: it stays open.
    for section in sections - {"global"}:
        sub = SCHEMA
        for part in section.split("."):
            sub = sub["properties"][part]
        assert sub.get("additionalProperties") is False, section
