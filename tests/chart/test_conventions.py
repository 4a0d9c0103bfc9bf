"""The conventions operators expect of a chart: extra labels, annotations, volumes, env sources
and objects, priority classes, rollout history, topology spread, an HPA for the API, and an
edge that is not tied to one ingress controller (Ingress or Gateway API HTTPRoute)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.rendering import (
    COMBINATIONS,
    DIGEST,
    FULLNAME,
    Render,
    by_kind,
    one,
    pod_labels,
    pod_specs,
)

API = f"{FULLNAME}-api"
WORKER = f"{FULLNAME}-worker"
SCALER = f"{FULLNAME}-scaler"
APP_DEPLOYMENTS = {API: "api", WORKER: "worker", SCALER: "autoscaling.scaler"}


def _pod(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    owner = one(docs, kind, name)
    return owner["spec"]["template"]["spec"]


def test_app_pods_get_their_labels_priority_env_sources_and_volumes(render: Render) -> None:
    docs = render("conventions")
    for name, block in APP_DEPLOYMENTS.items():
        deployment = one(docs, "Deployment", name)
        labels = pod_labels(deployment)
        assert labels["example.com/team"] == "events", name
        # An extra label never replaces one the selectors and policies rely on.
        assert (
            labels["app.kubernetes.io/component"]
            == deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        )
        assert labels["app.kubernetes.io/component"] != "overridden"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "events-high", name
        [container] = pod["containers"]
        assert container["envFrom"] == [
            {"configMapRef": {"name": f"{FULLNAME}-config"}},
            {"secretRef": {"name": "shared-env"}},
            {"configMapRef": {"name": f"{block}-env"}},
        ], name
        assert {"name": "extra", "configMap": {"name": "extra"}} in pod["volumes"], name
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"], name
        assert {"name": "extra", "mountPath": "/etc/extra"} in container["volumeMounts"], name
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name
        assert deployment["spec"]["revisionHistoryLimit"] == 2, name
    job = _pod(docs, "Job", f"{FULLNAME}-migrations")
    assert job["priorityClassName"] == "events-high"
    assert job["containers"][0]["envFrom"] == [{"secretRef": {"name": "shared-env"}}]
    for name in (f"{FULLNAME}-postgresql", f"{FULLNAME}-rabbitmq"):
        assert _pod(docs, "StatefulSet", name)["priorityClassName"] == "events-data"
        # A StatefulSet's revisionHistoryLimit cannot change once it exists: left alone.
        assert "revisionHistoryLimit" not in one(docs, "StatefulSet", name)["spec"]


def test_defaults_set_no_priority_extra_env_or_volume(render: Render) -> None:
    docs = render("defaults")
    for owner, pod in pod_specs(docs):
        assert "priorityClassName" not in pod, owner["metadata"]["name"]
        for container in pod["containers"]:
            sources = container.get("envFrom", [])
            assert all("configMapRef" in s for s in sources), owner["metadata"]["name"]
    for deployment in by_kind(docs, "Deployment"):
        assert deployment["spec"]["revisionHistoryLimit"] == 5


@pytest.mark.parametrize("combination", ["conventions", "keda-deletion-cost", "gateway-forced"])
def test_common_annotations_on_every_object_beside_their_own(
    render: Render, combination: str
) -> None:
    extra = ['--set-json=commonAnnotations={"example.com/owner":"events-team"}']
    args = [] if combination == "conventions" else extra
    docs = render(combination, *args)
    assert docs
    for d in docs:
        annotations = d["metadata"].get("annotations", {})
        assert annotations.get("example.com/owner") == "events-team", (
            f"{d['kind']}/{d['metadata']['name']}"
        )
    # The chart's own annotations are kept next to them.
    secret = one(docs, "Secret", f"{FULLNAME}-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    job = one(docs, "Job", f"{FULLNAME}-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    if combination == "conventions":
        ingress = one(docs, "Ingress", API)["metadata"]["annotations"]
        assert ingress["example.com/edge"] == "on"


def test_no_annotations_by_default(render: Render) -> None:
    for d in render("defaults"):
        if d["kind"] not in ("Secret", "Job", "Pod"):  # keep-policies and hooks
            assert "annotations" not in d["metadata"], f"{d['kind']}/{d['metadata']['name']}"


def test_extra_objects_are_rendered_with_the_release_context(render: Render) -> None:
    extra = one(render("conventions"), "ConfigMap", "ce-extra")
    assert extra["data"] == {"release": "ce"}
    assert extra["metadata"]["labels"]["app.kubernetes.io/instance"] == "ce"
    docs = render(
        None,
        '--set-json=extraObjects=[{"apiVersion":"v1","kind":"ConfigMap",'
        '"metadata":{"name":"{{ .Release.Name }}-map"},"data":{"ns":"{{ .Release.Namespace }}"}}]',
    )
    assert one(docs, "ConfigMap", "ce-map")["data"] == {"ns": "events"}


# --- topology spread ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [API, WORKER])
def test_topology_spread_is_on_by_default_and_counts_only_the_components_pods(
    render: Render, name: str
) -> None:
    deployment = one(render("defaults"), "Deployment", name)
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    for c in constraints:
        # Best effort: a one-node cluster (kind) still schedules every pod.
        assert c["whenUnsatisfiable"] == "ScheduleAnyway" and c["maxSkew"] == 1
        assert c["labelSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
        # Old and new ReplicaSets of a rollout are not counted together.
        assert c["matchLabelKeys"] == ["pod-template-hash"]


def test_topology_spread_can_be_turned_off_or_replaced(render: Render) -> None:
    for name in (API, WORKER):
        pod = _pod(render("no-topology-spread"), "Deployment", name)
        assert "topologySpreadConstraints" not in pod
    own = {
        "maxSkew": 2,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"tier": "events"}},
    }
    pod = _pod(
        render(None, f"--set-json=api.topologySpreadConstraints=[{_json(own)}]"),
        "Deployment",
        API,
    )
    assert pod["topologySpreadConstraints"] == [own]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- the API's HPA -----------------------------------------------------------------------------


def test_api_hpa_scales_the_api_deployment_on_cpu(render: Render) -> None:
    docs = render("api-autoscaling")
    hpa = one(docs, "HorizontalPodAutoscaler", API)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": API}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    [metric] = hpa["metrics"]
    assert metric["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    # Scale in slowly, one pod a minute after 5 minutes, so a lull does not take capacity away.
    down = hpa["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    # The replica count belongs to the HPA: an upgrade must not reset it.
    assert "replicas" not in one(docs, "Deployment", API)["spec"]
    # A CPU utilisation target needs a CPU request.
    [container] = _pod(docs, "Deployment", API)["containers"]
    assert container["resources"]["requests"]["cpu"]


def test_no_api_hpa_by_default(render: Render) -> None:
    docs = render("defaults")
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    assert one(docs, "Deployment", API)["spec"]["replicas"] == 2


# --- the edge: Ingress and HTTPRoute -----------------------------------------------------------


def test_ingress_uses_the_cluster_default_class_unless_named(render: Render) -> None:
    ingress = one(render("ingress-plaintext"), "Ingress", API)
    assert "ingressClassName" not in ingress["spec"]
    assert "annotations" not in ingress["metadata"]
    assert one(render("conventions"), "Ingress", API)["spec"]["ingressClassName"] == "traefik"


def test_body_size_annotations_carry_the_apis_own_limit(render: Render) -> None:
    annotations = one(render("conventions"), "Ingress", API)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "1048576"
    docs = render("conventions", "--set=api.maxBodyBytes=2097152")
    annotations = one(docs, "Ingress", API)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "2097152"
    [container] = _pod(docs, "Deployment", API)["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CE_MAX_BODY_BYTES"] == "2097152"


@pytest.mark.parametrize("combination", ["gateway-forced", "gateway-served"])
def test_httproute_sends_the_api_port_only_to_the_api_service(
    render: Render, combination: str
) -> None:
    docs = render(combination)
    route = one(docs, "HTTPRoute", API)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {"name": "public", "namespace": "gateway", "sectionName": "https"}
    ]
    assert spec["hostnames"] == ["events.example.com"]
    [rule] = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    service = one(docs, "Service", API)
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert rule["backendRefs"] == [{"name": API, "port": http["port"]}]
    assert http["targetPort"] == "http"  # not the metrics port
    assert not by_kind(docs, "Ingress")


def test_httproute_needs_the_gateway_api_or_force(render: Render) -> None:
    args = [a for a in COMBINATIONS["gateway-served"] if not a.startswith("--api-versions")]
    assert not by_kind(render(None, *args), "HTTPRoute")
    assert not by_kind(render("defaults"), "HTTPRoute")


def _images(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Image of every container, by '<object> <container>'."""
    return {
        f"{owner['metadata']['name']} {c['name']}": c["image"]
        for owner, pod in pod_specs(docs)
        for c in [*pod.get("initContainers", []), *pod["containers"]]
    }


def test_images_come_from_their_registry_or_the_global_one_pinned_by_digest(
    render: Render,
) -> None:
    images = _images(render("image-registries"))
    mirror = "mirror.example.com:5000"
    app = f"{mirror}/conversation-events@{DIGEST}"
    expected = {
        f"{API} api": app,
        f"{FULLNAME}-migrations migrations": app,
        f"{FULLNAME}-test-api healthz": app,
        f"{WORKER} worker": app,
        f"{SCALER} scaler": app,
        f"{FULLNAME}-postgresql postgresql": f"{mirror}/postgres@{DIGEST}",
        f"{FULLNAME}-rabbitmq rabbitmq": "ghcr.io/acme/rabbitmq:4.1.4-management",
    }
    for container, image in expected.items():
        assert images[container] == image, container
    # Every container is covered: none keeps a bare repository.
    assert all(image.startswith((mirror, "ghcr.io/acme/")) for image in images.values()), images
    operated = one(render("image-registries-operators"), "RabbitmqCluster", f"{FULLNAME}-rabbitmq")
    assert operated["spec"]["image"] == "ghcr.io/acme/rabbitmq:4.1.4-management"


def test_images_are_bare_repositories_and_tags_by_default(render: Render) -> None:
    images = _images(render("defaults"))
    assert images[f"{FULLNAME}-postgresql postgresql"] == "postgres:16.10-bookworm"
    assert images[f"{FULLNAME}-rabbitmq rabbitmq"] == "rabbitmq:4.1.4-management"
    assert all("/" not in image and "@" not in image for image in images.values()), images
