"""What matters on the rendered objects: selectors, autoscaling, security, probes, RBAC, hooks."""

from __future__ import annotations

import base64
import hashlib
import itertools
from typing import Any

import pytest

from tests.chart.rendering import (
    COMBINATIONS,
    FULLNAME,
    NAMESPACE,
    Render,
    by_kind,
    env_of,
    one,
    pod_labels,
    pod_specs,
    selects,
)

WORKER = f"{FULLNAME}-worker"
SCALER = f"{FULLNAME}-scaler"
LONG_RUNNING = ("Deployment", "StatefulSet")
APP_PROBES = {
    # component: (port, liveness path, readiness path)
    "api": (8000, "/healthz", "/readyz?broker=optional"),  # outages of the broker: see the chart
    "worker": (9100, "/healthz", "/readyz"),
    "scaler": (9200, "/healthz", "/healthz"),
    "deletion-cost": (9200, "/healthz", "/healthz"),
}
#: The only pods that talk to the Kubernetes API, and so get a token.
API_CLIENTS = ("scaler", "deletion-cost")


def _selectors(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
            out.append((name, d["spec"]["selector"]))
        elif d["kind"] == "Service":
            out.append((name, {"matchLabels": d["spec"]["selector"]}))
    return out


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_selectors_never_overlap_between_components(render: Render, combination: str) -> None:
    docs = render(combination)
    pods = [(d, pod_labels(d)) for d, _ in pod_specs(docs)]
    components = {labels["app.kubernetes.io/component"] for _, labels in pods}
    assert len(components) == len(pods), "two workloads share a component label"
    for name, selector in _selectors(docs):
        selected = {
            labels["app.kubernetes.io/component"] for _, labels in pods if selects(selector, labels)
        }
        assert len(selected) == 1, f"{name} selects {sorted(selected) or 'nothing'}"
    for (a, la), (b, lb) in itertools.combinations(pods, 2):
        if a["kind"] in LONG_RUNNING:
            assert not selects(a["spec"]["selector"], lb), f"{a['metadata']['name']} selects {b}"
        if b["kind"] in LONG_RUNNING:
            assert not selects(b["spec"]["selector"], la), f"{b['metadata']['name']} selects {a}"


@pytest.mark.parametrize("combination", ["defaults", "keda", "keda-forced", "scale-to-zero"])
def test_autoscaled_worker_has_no_replicas(render: Render, combination: str) -> None:
    worker = one(render(combination), "Deployment", WORKER)
    assert "replicas" not in worker["spec"]


def test_worker_has_replicas_without_autoscaling(render: Render) -> None:
    worker = one(render("autoscaling-off", "--set=worker.replicaCount=3"), "Deployment", WORKER)
    assert worker["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("combination", "expected"),
    [
        ("defaults", "scaler"),
        ("external-services", "scaler"),
        ("keda", "keda"),
        ("keda-forced", "keda"),
        ("keda-external", "keda"),
        ("autoscaling-off", None),
    ],
)
def test_exactly_one_autoscaler(render: Render, combination: str, expected: str | None) -> None:
    docs = render(combination)
    scaled = by_kind(docs, "ScaledObject")
    auths = by_kind(docs, "TriggerAuthentication")
    scaler = [d for d in docs if d["metadata"]["name"] == SCALER]
    if expected == "keda":
        assert len(scaled) == 1 and len(auths) == 1 and not scaler
    elif expected == "scaler":
        assert not scaled and not auths
        assert {d["kind"] for d in scaler} == {
            "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy",
        }  # fmt: skip
    else:
        assert not scaled and not auths and not scaler


def test_scaled_object_follows_the_autoscaling_values(render: Render) -> None:
    docs = render(
        "keda",
        "--set=autoscaling.minReplicas=0",
        "--set=autoscaling.maxReplicas=7",
        "--set=autoscaling.targetPerReplica=25",
        "--set=autoscaling.activationValue=3",
        "--set=autoscaling.pollingIntervalSeconds=15",
        "--set=autoscaling.cooldownSeconds=200",
        "--set=autoscaling.scaleDownStabilizationSeconds=90",
    )
    so = one(docs, "ScaledObject", WORKER)["spec"]
    assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER}
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (0, 7)
    assert (so["pollingInterval"], so["cooldownPeriod"]) == (15, 200)
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 90
    [trigger] = so["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] == {
        "protocol": "http",
        "mode": "QueueLength",
        "value": "25",
        "activationValue": "3",
        "queueName": "conversation_events_processing",
        "vhostName": "/",
    }
    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    secret = one(docs, "Secret", ref["name"])
    url = base64.b64decode(secret["data"][ref["key"]]).decode()
    # The KEDA operator resolves names in its own namespace: the host names the release's.
    # It reads as the scaler's broker user (the monitoring tag).
    assert url.startswith(f"http://{FULLNAME}-scaler:") and url.endswith(
        f"@{FULLNAME}-rabbitmq.{NAMESPACE}.svc:15672/"
    )


def test_keda_and_the_scaler_read_the_same_fallback_values(render: Render) -> None:
    values = [
        "--set=autoscaling.fallback.failureThreshold=5",
        "--set=autoscaling.fallback.replicas=2",
    ]
    so = one(render("keda", *values), "ScaledObject", WORKER)["spec"]
    assert so["fallback"] == {
        "failureThreshold": 5, "replicas": 2, "behavior": "currentReplicasIfHigher",
    }  # fmt: skip
    scaler = next(
        d
        for d in render("defaults", *values)
        if d["kind"] == "Deployment" and "scaler" in d["metadata"]["name"]
    )
    env = {
        e["name"]: e.get("value")
        for e in scaler["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (env["CE_SCALER_FALLBACK_AFTER_FAILURES"], env["CE_SCALER_FALLBACK_REPLICAS"]) == (
        "5",
        "2",
    )


@pytest.mark.parametrize("combination", ["defaults", "external-services"])
def test_scaler_role_grants_only_the_worker_scale_subresource(
    render: Render, combination: str
) -> None:
    docs = render(combination)
    assert one(docs, "Role", SCALER)["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "resourceNames": [WORKER],
            "verbs": ["get", "patch"],
        }
    ]
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == [SCALER]
    binding = one(docs, "RoleBinding", SCALER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SCALER,
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SCALER, "namespace": NAMESPACE}
    ]
    pod = one(docs, "Deployment", SCALER)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SCALER
    env = env_of(pod["containers"][0])
    assert env["CE_SCALER_DEPLOYMENT"]["value"] == WORKER
    assert env["CE_SCALER_ACTUATOR"]["value"] == "kubernetes"
    assert env["CE_SCALER_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def _effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_secure_contexts_resources_and_probes_everywhere(render: Render, combination: str) -> None:
    for owner, pod in pod_specs(render(combination)):
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        component = pod_labels(owner)["app.kubernetes.io/component"]
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, where
        assert pod["automountServiceAccountToken"] is (component in API_CLIENTS), where
        containers = pod["containers"] + pod.get("initContainers", [])
        for c in containers:
            what = f"{where} container {c['name']}"
            assert _effective(pod, c, "runAsNonRoot") is True, what
            assert (_effective(pod, c, "runAsUser") or 0) > 0, what
            assert _effective(pod, c, "seccompProfile") == {"type": "RuntimeDefault"}, what
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc["capabilities"] == {"drop": ["ALL"]}, what
            assert sc.get("privileged") is not True, what
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"].get(bound, {})), what
            if owner["kind"] in LONG_RUNNING:
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    assert probe in c, f"{what} has no {probe}"
        if owner["kind"] in LONG_RUNNING and component in APP_PROBES:
            port, live, ready = APP_PROBES[component]
            [c] = pod["containers"]
            assert c["ports"][0] == {"name": "http", "containerPort": port, "protocol": "TCP"}
            # The API's metrics have a port of their own (not routed by any Ingress).
            assert [p["name"] for p in c["ports"]] == (
                ["http", "metrics"] if component == "api" else ["http"]
            )
            for probe, path in (("livenessProbe", live), ("readinessProbe", ready)):
                assert c[probe]["httpGet"] == {"path": path, "port": "http"}, f"{where} {probe}"
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_worker_grace_period_exceeds_the_drain_timeout(render: Render) -> None:
    pod = one(render("defaults"), "Deployment", WORKER)["spec"]["template"]["spec"]
    drain = int(env_of(pod["containers"][0])["CE_WORKER_DRAIN_TIMEOUT_S"]["value"])
    assert pod["terminationGracePeriodSeconds"] > drain


def test_worker_pdb_exists(render: Render) -> None:
    pdb = one(render("defaults"), "PodDisruptionBudget", WORKER)
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("combination", "events"),
    [
        ("defaults", "post-install,pre-upgrade"),
        ("external-services", "pre-install,pre-upgrade"),
        ("existing-secret-external", "pre-install,pre-upgrade"),
        # A broker or database of the release exists only once it is installed.
        ("external-database-bundled-broker", "post-install,pre-upgrade"),
        ("operators", "post-install,pre-upgrade"),
    ],
)
def test_migrations_run_as_a_hook_job(render: Render, combination: str, events: str) -> None:
    docs = render(combination)
    job = one(docs, "Job", f"{FULLNAME}-migrations")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == events
    [c] = job["spec"]["template"]["spec"]["containers"]
    assert c["command"][0] == "conversation-events-migrate"
    env = env_of(c)
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for k, e in env.items()
        if k.startswith(("CE_DATABASE_", "CE_AMQP_")) and "valueFrom" in e
    }
    if combination.startswith("existing-secret"):
        assert refs == {"ce-credentials"}
        return
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    hooked = [
        secrets[name]
        for name in refs
        if name in secrets and "helm.sh/hook" in secrets[name]["metadata"].get("annotations", {})
    ]
    # Before install (an external database and broker) no release Secret exists yet: the Job's
    # must be a hook created first. After install it may read the release's own Secrets.
    if events.startswith("pre-install"):
        assert [s["metadata"]["name"] for s in hooked] == [f"{FULLNAME}-migrations"]
        assert len(refs) == 1
    if not hooked:  # every credential is in the operators' Secrets, written after install
        assert events.startswith("post-install") and not refs & set(secrets)
        return
    [secret] = hooked
    # The Job may run before the release's resources exist: its Secret must be a hook created first.
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == events
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )
    assert env["CE_ENVIRONMENT"]["value"] == "production"


def test_external_services_use_tls(render: Render) -> None:
    docs = render("external-services")
    secret = one(docs, "Secret", FULLNAME)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["database-url"] == (
        "postgresql+psycopg2://conversation_events:s3cret-db-password@db.example.com:5432/"
        "conversation_events?sslmode=verify-full"
        "&sslrootcert=/etc/conversation-events/postgresql-ca/ca.crt"
    )
    assert data["amqp-url"] == "amqps://ce:s3cret-mq-password@mq.example.com:5671/%2F"
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    api = one(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in api["containers"][0]["volumeMounts"]}
    assert {"/etc/conversation-events/postgresql-ca", "/etc/conversation-events/rabbitmq-ca"} <= (
        mounts
    )


def test_existing_secret_replaces_every_generated_secret(render: Render) -> None:
    docs = render("existing-secret")
    assert not by_kind(docs, "Secret")
    for _, pod in pod_specs(docs):
        for c in pod["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "ce-credentials", e


def test_generated_credentials_are_consistent(render: Render) -> None:
    docs = render("defaults")
    app = {
        k: base64.b64decode(v).decode() for k, v in one(docs, "Secret", FULLNAME)["data"].items()
    }
    pg = base64.b64decode(
        one(docs, "Secret", f"{FULLNAME}-postgresql")["data"]["postgresql-password"]
    ).decode()
    mq = base64.b64decode(
        one(docs, "Secret", f"{FULLNAME}-rabbitmq")["data"]["rabbitmq-password"]
    ).decode()
    assert len(pg) >= 32 and len(mq) >= 32 and len(app["api-keys"]) >= 32
    assert f":{pg}@" in app["database-url"]
    # Each process has its own broker user; the scaler's reads the management API.
    passwords = {
        k: base64.b64decode(v).decode()
        for k, v in one(docs, "Secret", f"{FULLNAME}-rabbitmq")["data"].items()
        if k.endswith("-password")
    }
    assert len(set(passwords.values())) == 5 and all(len(p) >= 32 for p in passwords.values())
    assert app["management-password"] == passwords["scaler-password"] != mq
    assert "amqp-url" not in app  # the URL holds no credential: they come apart
    for name in (f"{FULLNAME}-postgresql", f"{FULLNAME}-rabbitmq"):
        assert one(docs, "Secret", name)["metadata"]["annotations"] == {
            "helm.sh/resource-policy": "keep"
        }


def test_checksum_annotation_follows_the_config(render: Render) -> None:
    def checksum(*extra: str) -> str:
        pod = one(render(None, *extra), "Deployment", f"{FULLNAME}-api")["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/config"]

    config = one(render("defaults"), "ConfigMap", f"{FULLNAME}-config")
    assert config["data"]["CE_ENVIRONMENT"] == "production"
    assert checksum() != checksum("--set=config.logLevel=DEBUG")
    assert len(checksum()) == len(hashlib.sha256().hexdigest())


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_standard_labels_on_every_object(render: Render, combination: str) -> None:
    for d in render(combination):
        labels = d["metadata"].get("labels", {})
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/component",
            "helm.sh/chart",
        ):
            assert key in labels, f"{d['kind']}/{d['metadata']['name']} lacks {key}"


def test_ingress_with_tls(render: Render) -> None:
    ingress = one(render("ingress-tls"), "Ingress", f"{FULLNAME}-api")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [
        {"hosts": ["events.example.com"], "secretName": f"{FULLNAME}-api-tls"}
    ]
    [rule] = ingress["rules"]
    assert rule["host"] == "events.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULLNAME}-api", "port": {"name": "http"}}


def test_network_policies_let_only_the_app_reach_the_data_services(render: Render) -> None:
    docs = render("network-policies")
    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "NetworkPolicy")}
    assert set(policies) == {
        f"{FULLNAME}-{c}" for c in ("postgresql", "rabbitmq", "api", "worker", "scaler", "purge")
    } | {f"{FULLNAME}-{c}-egress" for c in ("api", "worker", "migrations")}
    pods = {pod_labels(o)["app.kubernetes.io/component"]: pod_labels(o) for o, _ in pod_specs(docs)}

    def allowed(policy: str, port: str) -> set[str]:
        out = set()
        for rule in policies[policy]["ingress"]:
            if port not in {p["port"] for p in rule["ports"]}:
                continue
            for peer in rule["from"]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    out |= {c for c, lab in pods.items() if selects(peer["podSelector"], lab)}
        return out

    # The scaler counts the events not yet published (autoscaling.countUnpublished).
    assert allowed(f"{FULLNAME}-postgresql", "postgresql") == {
        "api",
        "worker",
        "migrations",
        "purge",
        "scaler",
    }
    assert allowed(f"{FULLNAME}-rabbitmq", "amqp") == {"api", "worker"}
    # The queue policy is applied by every process on start, and by the migration step.
    assert allowed(f"{FULLNAME}-rabbitmq", "management") == {
        "api",
        "worker",
        "migrations",
        "scaler",
    }
    for name, spec in policies.items():
        # Where pods connect to: the purge's own, and the -egress ones (test_secure_defaults.py).
        expected = {"-purge": ["Ingress", "Egress"], "-egress": ["Egress"]}
        suffix = next((k for k in expected if name.endswith(k)), "")
        assert spec["policyTypes"] == expected.get(suffix, ["Ingress"]), name


def test_helm_test_calls_the_api_through_its_service(render: Render) -> None:
    docs = render("defaults")
    [pod] = by_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service", f"{FULLNAME}-api")
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/healthz"
    assert url in "\n".join(pod["spec"]["containers"][0]["command"])
