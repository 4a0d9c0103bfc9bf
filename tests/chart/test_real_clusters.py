"""What an install, an upgrade or a rollout on a real cluster would break, caught offline.

Each test stands for one failure a cluster would show: KEDA resolving the broker in its own
namespace, a chart release restarting the database, a rollout dropping requests, a node drain
blocked by unready pods, credentials mangled by form-encoding, image tags that move.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiormq
import pika
import pytest
import yaml
from sqlalchemy.engine import make_url

from conversation_events_api.settings import ApiSettings
from conversation_events_worker.consumer import batches_at_once
from conversation_events_worker.settings import WorkerSettings
from tests.chart.rendering import (
    CHART,
    COMBINATIONS,
    EXTERNAL,
    FULLNAME,
    NAMESPACE,
    ROOT,
    Render,
    by_kind,
    one,
    pod_specs,
    run_helm,
    template,
)

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# Every character that form-encoding and URL parsers disagree on, and the URL delimiters.
AWKWARD = "a b+c/d@e:f%g"


def _secret_data(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret", name)["data"].items()}


@pytest.mark.parametrize("combination", ["keda", "keda-forced"])
def test_keda_reaches_the_bundled_broker_by_its_namespaced_name(
    render: Render, combination: str
) -> None:
    docs = render(combination)
    [auth] = by_kind(docs, "TriggerAuthentication")
    [host] = [r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "host"]
    url = urlsplit(_secret_data(docs, host["name"])[host["key"]])
    service = one(docs, "Service", f"{FULLNAME}-rabbitmq")
    assert url.hostname == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert url.port in {p["port"] for p in service["spec"]["ports"] if p["name"] == "management"}


def test_keda_verifies_an_external_broker_with_its_ca(render: Render) -> None:
    docs = render("keda-external")
    [auth] = by_kind(docs, "TriggerAuthentication")
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"host", "tls", "ca"}
    assert (refs["ca"]["name"], refs["ca"]["key"]) == ("mq-ca", "ca.crt")
    tls = one(docs, "Secret", refs["tls"]["name"])
    assert tls["stringData"][refs["tls"]["key"]] == "enable"
    assert urlsplit(_secret_data(docs, refs["host"]["name"])["management-url"]).scheme == "https"
    # Without a CA Secret, KEDA keeps its default TLS client (the system roots).
    docs = render("keda-external", "--set=externalRabbitmq.tls.caSecret=")
    [auth] = by_kind(docs, "TriggerAuthentication")
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["host"]


def test_keda_fallback_never_scales_a_busy_fleet_in(render: Render) -> None:
    so = one(render("keda"), "ScaledObject", f"{FULLNAME}-worker")["spec"]
    assert so["fallback"]["behavior"] == "currentReplicasIfHigher"
    so = one(render("keda", "--set=autoscaling.fallback.behavior=static"), "ScaledObject",
             f"{FULLNAME}-worker")["spec"]  # fmt: skip
    assert so["fallback"]["behavior"] == "static"


def _bumped_chart(tmp_path: Path) -> Path:
    """A copy of the chart one patch release later, app version included."""
    copy = tmp_path / CHART.name
    shutil.copytree(CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    bump = re.sub(r"(\d+)$", lambda m: str(int(m[1]) + 1), meta["version"])
    meta["version"] = meta["appVersion"] = bump
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return copy


@pytest.mark.parametrize("combination", ["defaults", "network-policies", "monitoring"])
def test_a_chart_release_leaves_the_stateful_pods_alone(
    helm: str, render: Render, tmp_path: Path, combination: str
) -> None:
    before = render(combination)
    after = template(helm, COMBINATIONS[combination], chart=_bumped_chart(tmp_path))
    statefulsets = by_kind(before, "StatefulSet")
    assert {s["metadata"]["name"] for s in statefulsets} == {
        f"{FULLNAME}-postgresql", f"{FULLNAME}-rabbitmq",
    }  # fmt: skip
    for old in statefulsets:
        new = one(after, "StatefulSet", old["metadata"]["name"])
        # The bump took: the object's own labels carry the new versions...
        assert new["metadata"]["labels"] != old["metadata"]["labels"]
        # ...but nothing that would restart the pod or touch the immutable fields changed.
        assert new["spec"] == old["spec"], old["metadata"]["name"]


def test_the_api_keeps_serving_while_it_leaves_the_endpoints(render: Render) -> None:
    pod = one(render("defaults"), "Deployment", f"{FULLNAME}-api")["spec"]["template"]["spec"]
    [api] = pod["containers"]
    command = api["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/opt/venv/bin/python"  # the image has no shell tools
    sleep = int(re.fullmatch(r"import time; time\.sleep\((\d+)\)", command[-1])[1])  # type: ignore[index]
    assert sleep == VALUES["api"]["preStopSleepSeconds"] > 0
    assert pod["terminationGracePeriodSeconds"] > sleep + _api_graceful_shutdown_s()


def _api_graceful_shutdown_s() -> int:
    """uvicorn's timeout_graceful_shutdown in the API's entry point, which the chart assumes."""
    tree = ast.parse((ROOT / "services/api/conversation_events_api/__main__.py").read_text())
    [value] = [
        kw.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "timeout_graceful_shutdown"
    ]
    assert isinstance(value, ast.Constant) and isinstance(value.value, int | float)
    return int(value.value)


def test_the_chart_knows_the_apis_graceful_shutdown(helm: str) -> None:
    # The chart's check of the grace period uses the same number as the API's entry point.
    grace = VALUES["api"]["preStopSleepSeconds"] + _api_graceful_shutdown_s()
    result = template_result(helm, f"--set=api.terminationGracePeriodSeconds={grace}")
    assert result.returncode != 0 and "must exceed api.preStopSleepSeconds" in result.stderr
    template(helm, [f"--set=api.terminationGracePeriodSeconds={grace + 1}"])


def template_result(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_helm(helm, "template", "ce", str(CHART), *args)


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_pdb_lets_a_drain_evict_unready_pods(render: Render, combination: str) -> None:
    pdbs = by_kind(render(combination), "PodDisruptionBudget")
    assert pdbs
    for pdb in pdbs:
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", pdb["metadata"]["name"]


def _aiormq(url: str) -> tuple[str | None, str | None, str]:
    """User, password and vhost as aio-pika's connection (aiormq, on yarl) reads them."""

    async def parse() -> tuple[str | None, str | None, str]:
        connection = aiormq.Connection(url)
        return connection.url.user, connection.url.password, connection.vhost

    return asyncio.run(parse())


def test_awkward_credentials_and_vhost_survive_every_parser(render: Render) -> None:
    # --set wins over --set-json in helm: leave out the credentials EXTERNAL sets.
    docs = render(
        None,
        *[a for a in EXTERNAL if not re.search(r"\.(username|password)=", a)],
        "--api-versions=keda.sh/v1alpha1",
        f"--set-json=externalDatabase.username={json.dumps(AWKWARD)}",
        f"--set-json=externalDatabase.password={json.dumps(AWKWARD)}",
        f"--set-json=externalDatabase.database={json.dumps(AWKWARD)}",
        f"--set-json=externalRabbitmq.username={json.dumps(AWKWARD)}",
        f"--set-json=externalRabbitmq.password={json.dumps(AWKWARD)}",
        f"--set-json=externalRabbitmq.vhost={json.dumps(AWKWARD)}",
    )
    for name in (FULLNAME, f"{FULLNAME}-migrations"):
        data = _secret_data(docs, name)
        db = make_url(data["database-url"])  # SQLAlchemy, as every process reads it
        assert (db.username, db.password, db.database) == (AWKWARD, AWKWARD, AWKWARD)
        assert (db.host, db.port) == ("db.example.com", 5432)
        mq = pika.URLParameters(data["amqp-url"])  # the workers
        assert mq.credentials.username == mq.credentials.password == AWKWARD
        assert (mq.virtual_host, mq.host, mq.port) == (AWKWARD, "mq.example.com", 5671)
        assert _aiormq(data["amqp-url"]) == (AWKWARD, AWKWARD, AWKWARD)  # the API
    management = urlsplit(_secret_data(docs, FULLNAME)["management-url"])  # KEDA's host
    assert (unquote(management.username or ""), unquote(management.password or "")) == (
        AWKWARD,
        AWKWARD,
    )
    assert "+" not in management.netloc.split("@")[0]


def _api_amqp_url(docs: list[dict[str, Any]]) -> str:
    """The API's CE_AMQP_URL: a value (its user and password come apart, from Secrets)."""
    api = one(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["spec"]
    [url] = [e["value"] for e in api["containers"][0]["env"] if e["name"] == "CE_AMQP_URL"]
    return str(url)


def test_the_bundled_brokers_vhost_is_percent_encoded(render: Render) -> None:
    docs = render(None, f"--set-json=rabbitmq.vhost={json.dumps(AWKWARD)}")
    url = _api_amqp_url(docs)
    assert pika.URLParameters(url).virtual_host == AWKWARD
    assert _aiormq(url)[2] == AWKWARD
    assert url.endswith("/a%20b%2Bc%2Fd%40e%3Af%25g")


def test_default_vhost_is_the_root_for_every_client(render: Render) -> None:
    url = _api_amqp_url(render("defaults"))
    assert pika.URLParameters(url).virtual_host == "/" == _aiormq(url)[2]


@pytest.mark.parametrize("combination", ["defaults", "network-policies"])
def test_data_images_are_pinned(render: Render, combination: str) -> None:
    images = {
        owner["metadata"]["name"]: pod["containers"][0]["image"]
        for owner, pod in pod_specs(render(combination))
        if owner["kind"] == "StatefulSet"
    }
    # postgres: major.minor and the Debian release (its glibc fixes the collation of indexes).
    assert re.fullmatch(r"postgres:\d+\.\d+-(bookworm|trixie)", images[f"{FULLNAME}-postgresql"])
    assert re.fullmatch(r"rabbitmq:\d+\.\d+\.\d+-management", images[f"{FULLNAME}-rabbitmq"])


@pytest.mark.parametrize("tag", ["16", "16.10", "latest", "bookworm"])
def test_floating_postgres_tags_are_refused(helm: str, tag: str) -> None:
    result = template_result(helm, f"--set-string=postgresql.image.tag={tag}")
    assert result.returncode != 0 and "/postgresql/image/tag" in result.stderr


@pytest.mark.parametrize("tag", ["4.1-management", "4-management", "management", "4.1.4"])
def test_floating_rabbitmq_tags_are_refused(helm: str, tag: str) -> None:
    result = template_result(helm, f"--set-string=rabbitmq.image.tag={tag}")
    assert result.returncode != 0 and "/rabbitmq/image/tag" in result.stderr


def test_a_digest_pins_a_data_image(render: Render) -> None:
    digest = "sha256:" + "0" * 64
    docs = render(None, f"--set=postgresql.image.tag=16.10-bookworm@{digest}")
    sts = one(docs, "StatefulSet", f"{FULLNAME}-postgresql")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"].endswith(digest)


def test_every_pod_gets_the_pull_secrets(render: Render) -> None:
    docs = render(None, "--set=imagePullSecrets[0].name=regcred")
    for owner, pod in pod_specs(docs):
        assert pod.get("imagePullSecrets") == [{"name": "regcred"}], owner["metadata"]["name"]


def test_the_migration_job_has_its_own_scheduling(render: Render) -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname",
         "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}}},
    ]}}  # fmt: skip
    toleration = {"key": "batch", "operator": "Exists", "effect": "NoSchedule"}
    docs = render(
        None,
        f"--set-json=api.affinity={_json(anti)}",
        f"--set-json=migrations.tolerations=[{_json(toleration)}]",
        "--set=migrations.nodeSelector.pool=batch",
    )
    job = one(docs, "Job", f"{FULLNAME}-migrations")["spec"]["template"]["spec"]
    assert "affinity" not in job
    assert job["tolerations"] == [toleration] and job["nodeSelector"] == {"pool": "batch"}
    api = one(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["spec"]
    assert api["affinity"] == anti and "tolerations" not in api


def test_the_helm_test_pod_can_be_scheduled_on_tainted_nodes(render: Render) -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "events"}
    docs = render(None, f"--set-json=tests.tolerations=[{_json(toleration)}]")
    [pod] = by_kind(docs, "Pod")
    assert pod["spec"]["tolerations"] == [toleration]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _non_hook_objects(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The release's own objects, without the (randomly generated) data of their Secrets and its
    checksum on the pods."""
    out = {}
    for d in docs:
        if "helm.sh/hook" in d["metadata"].get("annotations", {}):
            continue
        if d["kind"] == "Secret":
            d = {**d, "data": sorted(d.get("data", {}))}
        if "checksum/secret" in d.get("spec", {}).get("template", {}).get("metadata", {}).get(
            "annotations", {}
        ):
            d = copy.deepcopy(d)
            d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"] = "generated"
        out[(d["kind"], d["metadata"]["name"])] = d
    return out


def test_a_repair_upgrade_can_skip_the_migration_hook(render: Render) -> None:
    # An upgrade meant to repair the bundled PostgreSQL (here: a higher memory limit after OOM
    # kills) cannot wait for a pre-upgrade migration against the database it repairs.
    repair = "--set=postgresql.resources.limits.memory=2Gi"
    with_hook = render(None, repair)
    without = render(None, repair, "--set=migrations.enabled=false")
    hooks = {
        (d["kind"], d["metadata"]["name"])
        for d in without
        if "pre-upgrade" in d["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    }
    assert hooks == set()
    # Everything else is the same release: only the hook is left out.
    assert _non_hook_objects(without) == _non_hook_objects(with_hook)
    sts = one(without, "StatefulSet", f"{FULLNAME}-postgresql")["spec"]["template"]["spec"]
    assert sts["containers"][0]["resources"]["limits"]["memory"] == "2Gi"


def test_default_pools_fit_postgresqls_connections(render: Render) -> None:
    sts = one(render("defaults"), "StatefulSet", f"{FULLNAME}-postgresql")
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["-c", f"max_connections={VALUES['postgresql']['maxConnections']}"]
    api_pool = ApiSettings.model_fields["db_pool_size"].default
    worker = WorkerSettings.model_construct(
        worker_prefetch=VALUES["worker"]["prefetch"],
        worker_batch_size=VALUES["worker"]["batchSize"],
    )
    worker_pool = batches_at_once(worker) + 1  # conversation_events_worker.__main__
    # The migration Job (1), the operator CLI (2) and PostgreSQL's reserved superuser slots (3).
    others = 1 + 2 + 3
    # With the API's HPA on, up to its maxReplicas API pods.
    api_pods = max(VALUES["api"]["replicaCount"], VALUES["api"]["autoscaling"]["maxReplicas"])
    needed = api_pods * api_pool + VALUES["autoscaling"]["maxReplicas"] * worker_pool + others
    assert needed <= VALUES["postgresql"]["maxConnections"], needed
