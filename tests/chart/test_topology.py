"""The modes of the broker and the database: what each renders and where the credentials come from.

`bundled` runs the development StatefulSets; `operator` / `cloudnativepg` render the operators'
clusters and wire every process to the Secrets those operators write; `external` takes the
credentials from any existing Secret under configurable keys. With the chart in charge of the
broker, each component has a broker user of its own.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.chart.rendering import (
    CHART,
    COMBINATIONS,
    FULLNAME,
    NAMESPACE,
    Render,
    by_kind,
    component_of,
    env_of,
    one,
    pod_specs,
    run_helm,
)

PG = f"{FULLNAME}-postgresql"
MQ = f"{FULLNAME}-rabbitmq"
APP_COMPONENTS = ("api", "worker", "migrations")


def _containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component_of(owner): pod["containers"][0] for owner, pod in pod_specs(docs)}


def _ref(env: dict[str, dict[str, Any]], name: str) -> tuple[str, str]:
    ref = env[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def _secret(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    secret = one(docs, "Secret", name)
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def test_operator_modes_render_no_bundled_server(render: Render) -> None:
    docs = render("operators")
    assert by_kind(docs, "StatefulSet") == []
    [cluster] = by_kind(docs, "Cluster")
    assert cluster["metadata"]["name"] == PG
    spec = cluster["spec"]
    assert spec["instances"] == 3
    # The production settings: a commit (the 202) is on a standby too, never lost in a failover.
    assert spec["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
    }
    assert spec["bootstrap"]["initdb"] == {
        "database": "conversation_events",
        "owner": "conversation_events",
    }
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    [rabbit] = by_kind(docs, "RabbitmqCluster")
    assert rabbit["metadata"]["name"] == MQ
    assert rabbit["spec"]["replicas"] == 3
    assert (
        "continuous_membership_reconciliation.enabled = true"
        in (rabbit["spec"]["rabbitmq"]["additionalConfig"])
    )
    pod = rabbit["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    [spread] = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": MQ}
    # The chart's NetworkPolicies guard its own pods only; the operators' need their operators.
    policies = {p["metadata"]["name"] for p in by_kind(docs, "NetworkPolicy")}
    assert PG not in policies and MQ not in policies


def test_the_database_credentials_come_from_cloudnativepgs_secret(render: Render) -> None:
    docs = render("operators")
    containers = _containers(docs)
    for component in APP_COMPONENTS:
        env = env_of(containers[component])
        assert _ref(env, "CE_DATABASE_USERNAME") == (f"{PG}-app", "username")
        assert _ref(env, "CE_DATABASE_PASSWORD") == (f"{PG}-app", "password")
        url = env["CE_DATABASE_URL"]["value"]
        # The primary's Service, verified with the cluster's own CA; no password in the URL.
        assert url.startswith(f"postgresql+psycopg2://conversation_events@{PG}-rw:5432/")
        assert "sslmode=verify-full" in url and "sslrootcert=" in url
    [owner] = [o for o, _ in pod_specs(docs) if component_of(o) == "api"]
    volumes = {v["name"]: v for v in owner["spec"]["template"]["spec"]["volumes"]}
    # Only the certificate of the CA Secret, never its key.
    assert volumes["postgresql-ca"]["secret"] == {
        "secretName": f"{PG}-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    # Nothing of the database's credentials is in the chart's Secrets.
    for secret in by_kind(docs, "Secret"):
        assert "database-url" not in secret.get("data", {}), secret["metadata"]["name"]


def test_each_component_has_its_own_broker_user_from_the_topology_operator(render: Render) -> None:
    docs = render("operators")
    users = {u["metadata"]["name"]: u["spec"] for u in by_kind(docs, "User")}
    permissions = {
        p["spec"]["userReference"]["name"]: p["spec"] for p in by_kind(docs, "Permission")
    }
    components = ("api", "worker", "scaler", "migrations")
    assert set(users) == set(permissions) == {f"{MQ}-{c}" for c in components}
    assert users[f"{MQ}-scaler"]["tags"] == ["monitoring"]
    assert users[f"{MQ}-migrations"]["tags"] == ["policymaker"]
    assert "tags" not in users[f"{MQ}-api"] and "tags" not in users[f"{MQ}-worker"]
    for spec in [*users.values(), *permissions.values()]:
        assert spec["rabbitmqClusterReference"] == {"name": MQ}
    containers = _containers(docs)
    seen = set()
    for component in APP_COMPONENTS:
        env = env_of(containers[component])
        secret = f"{MQ}-{component}-user-credentials"  # what the operator writes for the User
        assert _ref(env, "CE_AMQP_USERNAME") == (secret, "username")
        assert _ref(env, "CE_AMQP_PASSWORD") == (secret, "password")
        assert env["CE_AMQP_URL"]["value"] == f"amqp://{MQ}:5672/%2F"
        seen.add(secret)
        # Only the migration step may set the queue policy (policymaker).
        assert ("CE_QUEUE_POLICY_ON_START" in env) == (component != "migrations")
    scaler = env_of(containers["scaler"])
    assert _ref(scaler, "CE_SCALER_MANAGEMENT_PASSWORD") == (
        f"{MQ}-scaler-user-credentials",
        "password",
    )
    assert len(seen) == 3


def test_keda_reads_an_operators_credentials_apart_from_the_host(render: Render) -> None:
    docs = render("operators-keda")
    [auth] = by_kind(docs, "TriggerAuthentication")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"] == (f"{MQ}-scaler-user-credentials", "username")
    assert refs["password"] == (f"{MQ}-scaler-user-credentials", "password")
    host = _secret(docs, refs["host"][0])[refs["host"][1]]
    assert host == f"http://{MQ}.{NAMESPACE}.svc:15672/"


def test_without_own_users_every_process_is_the_operators_default_user(render: Render) -> None:
    docs = render("operators-shared-user")
    assert by_kind(docs, "User") == [] and by_kind(docs, "Permission") == []
    for component, container in _containers(docs).items():
        env = env_of(container)
        if component in APP_COMPONENTS:
            assert _ref(env, "CE_AMQP_PASSWORD") == (f"{MQ}-default-user", "password")
            assert "CE_QUEUE_POLICY_ON_START" not in env


def test_asynchronous_replication_is_a_choice_said_aloud(render: Render, helm: str) -> None:
    docs = render("asynchronous-replication")
    [cluster] = by_kind(docs, "Cluster")
    assert "synchronous" not in cluster["spec"]["postgresql"]
    notes = run_helm(
        helm,
        "install",
        "ce",
        str(CHART),
        "--dry-run=client",
        *COMBINATIONS["asynchronous-replication"],
    ).stdout
    assert "ASYNCHRONOUS replication: a failover may lose events answered 202" in notes


def test_a_vhost_and_scheduled_backups_through_a_plugin(render: Render) -> None:
    docs = render("operators-vhost-backup")
    [vhost] = by_kind(docs, "Vhost")
    assert vhost["spec"]["name"] == "events"
    assert {p["spec"]["vhost"] for p in by_kind(docs, "Permission")} == {"events"}
    [backup] = by_kind(docs, "ScheduledBackup")
    assert backup["spec"]["cluster"] == {"name": PG}
    assert backup["spec"]["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}
    [cluster] = by_kind(docs, "Cluster")
    assert cluster["spec"]["plugins"][0]["isWALArchiver"] is True


def test_external_credentials_come_from_existing_secrets_under_their_keys(render: Render) -> None:
    docs = render("external-existing-secrets")
    containers = _containers(docs)
    for component in APP_COMPONENTS:
        env = env_of(containers[component])
        assert _ref(env, "CE_DATABASE_PASSWORD") == ("db-credentials", "db-password")
        assert "CE_DATABASE_USERNAME" not in env  # the URL's: externalDatabase.username
        assert env["CE_DATABASE_URL"]["value"].startswith(
            "postgresql+psycopg2://ce@db.example.com:5432/"
        )
        assert _ref(env, "CE_AMQP_USERNAME") == ("mq-credentials", "user")
        assert _ref(env, "CE_AMQP_PASSWORD") == ("mq-credentials", "pass")
        assert env["CE_AMQP_URL"]["value"] == "amqps://mq.example.com:5671/%2F"
    scaler = env_of(containers["scaler"])
    assert _ref(scaler, "CE_SCALER_MANAGEMENT_USER") == ("mq-credentials", "user")
    # No chart Secret carries a URL with a password.
    for secret in by_kind(docs, "Secret"):
        assert not {"database-url", "amqp-url", "management-password"} & set(
            secret.get("data", {})
        ), secret["metadata"]["name"]


def test_an_external_database_user_name_can_come_from_the_existing_secret(render: Render) -> None:
    docs = render("external-existing-secrets", "--set=externalDatabase.usernameKey=db-user")
    for component in APP_COMPONENTS:
        env = env_of(_containers(docs)[component])
        assert _ref(env, "CE_DATABASE_USERNAME") == ("db-credentials", "db-user")
        assert _ref(env, "CE_DATABASE_PASSWORD") == ("db-credentials", "db-password")


def test_keda_reads_external_credentials_from_the_existing_secret(render: Render) -> None:
    docs = render("keda-external-existing-secrets")
    [auth] = by_kind(docs, "TriggerAuthentication")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"] == ("mq-credentials", "user")
    assert refs["password"] == ("mq-credentials", "pass")


def _definitions(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(json.loads(_secret(docs, MQ)["definitions.json"]))


def test_the_bundled_broker_loads_a_user_per_component_at_boot(render: Render) -> None:
    docs = render("defaults")
    definitions = _definitions(docs)
    passwords = _secret(docs, MQ)
    users = {u["name"]: u for u in definitions["users"]}
    grants = {p["user"]: p for p in definitions["permissions"]}
    containers = _containers(docs)
    names = set()
    for component in APP_COMPONENTS:
        env = env_of(containers[component])
        name = env["CE_AMQP_USERNAME"]["value"]
        assert _ref(env, "CE_AMQP_PASSWORD") == (MQ, f"{component}-password")
        assert users[name]["password"] == passwords[f"{component}-password"]
        assert name in grants
        names.add(name)
    assert len(names) == 3
    scaler = env_of(containers["scaler"])
    assert users[scaler["CE_SCALER_MANAGEMENT_USER"]["value"]]["tags"] == ["monitoring"]
    admin = users["conversation_events"]
    assert (
        admin["tags"] == ["administrator"] and admin["password"] == passwords["rabbitmq-password"]
    )
    # The broker reads the definitions from the Secret at boot.
    sts = one(docs, "StatefulSet", MQ)["spec"]["template"]["spec"]
    [mount] = [m for m in sts["containers"][0]["volumeMounts"] if m["name"] == "definitions"]
    config = one(docs, "ConfigMap", MQ)["data"]["conversation-events.conf"]
    assert f"load_definitions = {mount['mountPath']}/definitions.json" in config


def test_the_bundled_servers_say_they_are_for_development(helm: str) -> None:
    notes = run_helm(helm, "install", "ce", str(CHART), "--dry-run=client").stdout
    assert "FOR DEVELOPMENT ONLY" in notes
    assert "postgresql.mode=cloudnativepg and rabbitmq.mode=operator" in notes
    operators = run_helm(
        helm,
        "install",
        "ce",
        str(CHART),
        "--dry-run=client",
        "--set=postgresql.mode=cloudnativepg",
        "--set=rabbitmq.mode=operator",
    ).stdout
    assert "FOR DEVELOPMENT ONLY" not in operators
    assert "1 synchronous standby(s)" in operators


@pytest.mark.parametrize("combination", ["operators", "bundled-shared-user"])
def test_every_process_reaches_its_broker_under_one_user(render: Render, combination: str) -> None:
    """With shared credentials (bundled-shared-user) every process is the administrator."""
    containers = _containers(render(combination))
    users = set()
    for component in APP_COMPONENTS:
        env = env_of(containers[component])
        user = env["CE_AMQP_USERNAME"]
        users.add(json.dumps(user, sort_keys=True))
    assert len(users) == (3 if combination == "operators" else 1)


def test_an_external_cluster_is_reached_through_each_of_its_nodes(render: Render) -> None:
    docs = render("external-broker-nodes")
    nodes = [f"mq-{i}.example.com" for i in range(3)]
    # The URLs carry the user's credentials in the chart's Secret, one URL per node.
    amqp = _secret(docs, FULLNAME)["amqp-url"]
    assert amqp == ",".join(f"amqps://ce:s3cret-mq-password@{n}:5671/%2F" for n in nodes)
    management = ",".join(f"https://{n}:15671" for n in nodes)
    config = one(docs, "ConfigMap", f"{FULLNAME}-config")["data"]
    assert config["CE_MANAGEMENT_URL"] == management
    scaler = env_of(_containers(docs)["scaler"])
    assert scaler["CE_SCALER_MANAGEMENT_URL"]["value"] == management
    # KEDA's rabbitmq trigger takes one management API: the first node's.
    keda = render("keda-external-broker-nodes")
    [auth] = by_kind(keda, "TriggerAuthentication")
    host = next(r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "host")
    assert _secret(keda, host["name"])[host["key"]] == (
        "https://ce:s3cret-mq-password@mq-0.example.com:15671/"
    )
