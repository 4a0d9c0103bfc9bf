"""Rendering the chart with the real helm binary (.tools/bin/helm, from scripts/install-tools).

Locally the chart tests skip when a tool is missing; in CI (CI=true) they fail instead, so a
missing tool can never pass for a green run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "conversation-events"
RELEASE = "ce"
NAMESPACE = "events"
FULLNAME = f"{RELEASE}-conversation-events"
#: The `render` fixture: a combination's name (or None) and extra helm arguments -> the objects.
Render = Callable[..., list[dict[str, Any]]]

# Every supported combination of values: (helm template arguments).
EXTERNAL = [
    "--set=postgresql.mode=external",
    "--set=externalDatabase.host=db.example.com",
    "--set=externalDatabase.password=s3cret-db-password",
    "--set=externalDatabase.sslMode=verify-full",
    "--set=externalDatabase.caSecret=db-ca",
    "--set=rabbitmq.mode=external",
    "--set=externalRabbitmq.host=mq.example.com",
    "--set=externalRabbitmq.port=5671",
    "--set=externalRabbitmq.username=ce",
    "--set=externalRabbitmq.password=s3cret-mq-password",
    "--set=externalRabbitmq.tls.enabled=true",
    "--set=externalRabbitmq.tls.caSecret=mq-ca",
    "--set=externalRabbitmq.managementUrl=https://mq.example.com:15671",
]
# The operators users run in production: CloudNativePG and the RabbitMQ Cluster Operator.
OPERATORS = ["--set=postgresql.mode=cloudnativepg", "--set=rabbitmq.mode=operator"]
# Managed services whose credentials are in Secrets of their own, under their own key names.
EXTERNAL_FROM_SECRETS = [
    *(a for a in EXTERNAL if not re.search(r"\.(username|password)=", a)),
    "--set=externalDatabase.username=ce",
    "--set=externalDatabase.existingSecret=db-credentials",
    "--set=externalDatabase.passwordKey=db-password",
    "--set=externalRabbitmq.existingSecret=mq-credentials",
    "--set=externalRabbitmq.usernameKey=user",
    "--set=externalRabbitmq.passwordKey=pass",
]
EXTERNAL_DATABASE = [a for a in EXTERNAL if "Database" in a or "postgresql" in a]
EXTERNAL_BROKER = [a for a in EXTERNAL if a not in EXTERNAL_DATABASE]
# An external RabbitMQ cluster with no single address in front of its nodes.
EXTERNAL_BROKER_NODES = [
    *(a for a in EXTERNAL_BROKER if not re.search(r"\.(host|managementUrl)=", a)),
    "--set=externalRabbitmq.host=mq-0.example.com\\,mq-1.example.com\\, mq-2.example.com",
    "--set=externalRabbitmq.managementUrl="
    "https://mq-0.example.com:15671/\\,https://mq-1.example.com:15671\\,https://mq-2.example.com:15671",
]
# The operator conventions, every one of them set (tests/chart/test_conventions.py).
EXTRA_CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-extra
  labels:
    {{- include "conversation-events.labels" (list $ "extra") | nindent 4 }}
  {{- with include "conversation-events.annotations" (list $) }}{{ . | nindent 2 }}{{ end }}
data:
  release: {{ .Release.Name | quote }}
"""
CONVENTIONS = [
    '--set-json=commonAnnotations={"example.com/owner":"events-team"}',
    "--set=revisionHistoryLimit=2",
    '--set-json=config.extraEnvFrom=[{"secretRef":{"name":"shared-env"}}]',
    *(
        arg
        for block in ("api", "worker", "autoscaling.scaler")
        for arg in (
            f'--set-json={block}.podLabels={{"example.com/team":"events",'
            '"app.kubernetes.io/component":"overridden"}',
            f"--set={block}.priorityClassName=events-high",
            f'--set-json={block}.extraEnvFrom=[{{"configMapRef":{{"name":"{block}-env"}}}}]',
            f'--set-json={block}.extraVolumes=[{{"name":"extra","configMap":{{"name":"extra"}}}}]',
            f'--set-json={block}.extraVolumeMounts=[{{"name":"extra","mountPath":"/etc/extra"}}]',
        )
    ),
    "--set=migrations.priorityClassName=events-high",
    "--set=postgresql.priorityClassName=events-data",
    "--set=rabbitmq.priorityClassName=events-data",
    "--set=api.ingress.enabled=true",
    "--set=api.ingress.allowPlaintext=true",
    "--set=api.ingress.className=traefik",
    '--set-json=api.ingress.annotations={"example.com/edge":"on"}',
    '--set-json=api.ingress.bodySizeAnnotations=["nginx.ingress.kubernetes.io/proxy-body-size"]',
    "--set-json=extraObjects=" + json.dumps([EXTRA_CONFIGMAP]),
]
GATEWAY = [
    "--set=gateway.enabled=true",
    '--set-json=gateway.parentRefs=[{"name":"public","namespace":"gateway","sectionName":"https"}]',
    '--set-json=gateway.hostnames=["events.example.com"]',
]
DIGEST = "sha256:" + "ab" * 32
IMAGE_REGISTRIES = [
    "--set=global.imageRegistry=mirror.example.com:5000",
    f"--set=image.digest={DIGEST}",
    "--set=rabbitmq.image.registry=ghcr.io/acme",
    f"--set=postgresql.image.digest={DIGEST}",
]
COMBINATIONS: dict[str, list[str]] = {
    "defaults": [],
    "external-services": EXTERNAL,
    "keda": ["--api-versions=keda.sh/v1alpha1"],
    "keda-forced": ["--set=autoscaling.keda.force=true"],
    "keda-external": ["--api-versions=keda.sh/v1alpha1", *EXTERNAL],
    "autoscaling-off": ["--set=autoscaling.enabled=false"],
    "ingress-tls": [
        "--set=api.ingress.enabled=true",
        "--set=api.ingress.className=nginx",
        "--set=api.ingress.host=events.example.com",
        "--set=api.ingress.tls.enabled=true",
        "--set=api.ingress.annotations.cert-manager\\.io/cluster-issuer=letsencrypt",
    ],
    "network-policies": ["--set=networkPolicy.enabled=true"],  # the default, said explicitly
    "no-network-policies": ["--set=networkPolicy.enabled=false"],
    "ingress-plaintext": [
        "--set=api.ingress.enabled=true",
        "--set=api.ingress.allowPlaintext=true",
    ],
    "existing-secret": ["--set=secrets.existingSecret=ce-credentials"],
    "existing-secret-external": ["--set=secrets.existingSecret=ce-credentials", *EXTERNAL],
    "monitoring": [
        "--set=metrics.serviceMonitor.enabled=true",
        "--set=metrics.prometheusRule.enabled=true",
        "--set=metrics.grafanaDashboard.enabled=true",
    ],
    "scale-to-zero": ["--set=autoscaling.minReplicas=0", "--set=autoscaling.activationValue=5"],
    "rate-trigger": ["--set=autoscaling.rateTrigger.enabled=true"],
    "keda-rate-trigger": [
        "--api-versions=keda.sh/v1alpha1",
        "--set=autoscaling.rateTrigger.enabled=true",
    ],
    "operators": OPERATORS,
    "operators-keda": ["--api-versions=keda.sh/v1alpha1", *OPERATORS],
    "operators-shared-user": [*OPERATORS, "--set=rabbitmq.users.perComponent=false"],
    "operators-vhost-backup": [
        *OPERATORS,
        "--set=rabbitmq.vhost=events",
        "--set-json=postgresql.cloudnativepg.plugins="
        '[{"name":"barman-cloud.cloudnative-pg.io","isWALArchiver":true,'
        '"parameters":{"barmanObjectName":"store"}}]',
        "--set=postgresql.cloudnativepg.scheduledBackup.enabled=true",
        "--set=postgresql.cloudnativepg.scheduledBackup.method=plugin",
    ],
    "asynchronous-replication": [*OPERATORS, "--set=postgresql.cloudnativepg.synchronous.number=0"],
    "external-existing-secrets": EXTERNAL_FROM_SECRETS,
    "keda-external-existing-secrets": ["--api-versions=keda.sh/v1alpha1", *EXTERNAL_FROM_SECRETS],
    "bundled-shared-user": ["--set=rabbitmq.users.perComponent=false"],
    # Every other pairing of the two modes.
    "cloudnativepg-bundled-broker": [OPERATORS[0]],
    "operator-bundled-database": [OPERATORS[1]],
    "cloudnativepg-external-broker": [OPERATORS[0], *EXTERNAL_BROKER],
    "operator-external-database": [OPERATORS[1], *EXTERNAL_DATABASE],
    "external-database-bundled-broker": EXTERNAL_DATABASE,
    "bundled-database-external-broker": EXTERNAL_BROKER,
    "external-broker-nodes": EXTERNAL_BROKER_NODES,
    "keda-external-broker-nodes": ["--api-versions=keda.sh/v1alpha1", *EXTERNAL_BROKER_NODES],
    "deletion-cost": ["--set=worker.deletionCost.enabled=true"],
    "keda-deletion-cost": [
        "--api-versions=keda.sh/v1alpha1",
        "--set=worker.deletionCost.enabled=true",
    ],
    "tracing": [
        "--set=tracing.enabled=true",
        "--set=tracing.endpoint=http://otel-collector.observability:4318",
        "--set-string=tracing.env.OTEL_BSP_SCHEDULE_DELAY=500",
    ],
    "autoscaling-off-deletion-cost": [
        "--set=autoscaling.enabled=false",
        "--set=worker.deletionCost.enabled=true",
    ],
    "conventions": CONVENTIONS,
    "image-registries": IMAGE_REGISTRIES,
    "image-registries-operators": [*OPERATORS, *IMAGE_REGISTRIES],
    "api-autoscaling": ["--set=api.autoscaling.enabled=true"],
    "no-topology-spread": [
        "--set-json=api.topologySpreadConstraints=[]",
        "--set-json=worker.topologySpreadConstraints=[]",
    ],
    "gateway-forced": ["--set=gateway.force=true", *GATEWAY],
    "gateway-served": ["--api-versions=gateway.networking.k8s.io/v1/HTTPRoute", *GATEWAY],
}


def find_helm() -> str | None:
    local = ROOT / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


def require_tool(path: str | None, name: str) -> str:
    """The tool's path; skip locally, fail in CI, when it is missing."""
    if path:
        return path
    message = f"{name} not found: run scripts/install-tools"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


#: What every offline render here is given: without a cluster to read generated credentials
#: back from, the chart refuses to render them unless told the output is thrown away. A test
#: of that refusal passes `--set=secrets.generateOffline=false`, which comes later and wins.
OFFLINE = ("--set=secrets.generateOffline=true",)


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """helm `args`; `template`, `lint` and a client-side `--dry-run` get OFFLINE first."""
    offline = any(a.startswith("--dry-run") for a in args)
    if args and (args[0] in ("template", "lint") or offline):
        args = (args[0], *OFFLINE, *args[1:])
    return subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def template(helm: str, args: Iterable[str] = (), chart: Path = CHART) -> list[dict[str, Any]]:
    """Render the chart (hooks and test Pod included) and parse every document."""
    result = run_helm(helm, "template", RELEASE, str(chart), f"--namespace={NAMESPACE}", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(owning object, pod spec) of every workload, the Jobs, CronJobs and test Pod included."""
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            out.append((d, d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            out.append((d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((d, d["spec"]))
    return out


def pod_labels(d: dict[str, Any]) -> dict[str, str]:
    if d["kind"] == "Pod":
        return d["metadata"]["labels"]
    if d["kind"] == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return d["spec"]["template"]["metadata"]["labels"]


def component_of(owner: dict[str, Any]) -> str:
    """The component a workload's pods are labelled with (`app.kubernetes.io/component`)."""
    return pod_labels(owner)["app.kubernetes.io/component"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not present:
            return False
        if expr["operator"] == "DoesNotExist" and present:
            return False
    return True
