"""`helm lint --strict` and offline validation of every object of every supported combination.

Kubernetes kinds are validated with kubernetes-validate in strict mode (unknown fields fail)
against the oldest Kubernetes the chart supports and a current one; KEDA and Prometheus
Operator objects against their CRD models; the RabbitMQ and CloudNativePG operators' objects
against schemas written from their CRDs (operator_schemas); the Gateway API's HTTPRoute against
its published CRD schema (gateway_schema); all rejecting unknown fields.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

from tests.chart import gateway_schema, operator_schemas
from tests.chart.rendering import CHART, COMBINATIONS, Render, run_helm

KUBERNETES_VERSIONS = ["1.27.0", "1.35.0"]  # Chart.yaml's kubeVersion floor, and a current one
CRD_MODELS = {
    "keda.sh/v1alpha1": keda,
    "monitoring.coreos.com/v1": monitoring,
}


# Fields of CRD versions newer than the installed models (cloudcoil-models-keda 2.16 is the
# newest for this Python): checked here against the newer CRD's enum, then left out of the model
# round trip. kind, path: allowed values.
NEWER_CRD_FIELDS: dict[tuple[str, tuple[str, ...]], set[str]] = {
    # KEDA 2.17 (kedacore/keda#6464)
    ("ScaledObject", ("spec", "fallback", "behavior")): {
        "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower",
    },
}  # fmt: skip


def _without_newer_fields(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for (kind, path), allowed in NEWER_CRD_FIELDS.items():
        *parents, last = path
        parent: Any = doc if doc["kind"] == kind else None
        for key in parents:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and last in parent:
            assert parent.pop(last) in allowed, f"{kind} {'.'.join(path)}"
    return doc


def _validate_crd(doc: dict[str, Any]) -> None:
    module = CRD_MODELS[doc["apiVersion"]]
    doc = _without_newer_fields(doc)
    model = getattr(module, doc["kind"]).model_validate(doc)
    # The models ignore unknown fields; a round trip that loses one means the CRD has no such field.
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == doc, (
        f"{doc['kind']}/{doc['metadata']['name']} has fields the CRD does not define"
    )


GATEWAY_API = "gateway.networking.k8s.io/v1"
HTTPROUTE = gateway_schema.validator()


def _validate_gateway(doc: dict[str, Any]) -> None:
    assert doc["kind"] == "HTTPRoute", doc["kind"]
    errors = sorted(HTTPROUTE.iter_errors(doc), key=str)
    assert not errors, f"HTTPRoute/{doc['metadata']['name']}: " + "; ".join(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_lint_strict(helm: str, combination: str) -> None:
    # `helm lint` cannot simulate API versions; "keda-forced" lints the KEDA templates.
    args = [a for a in COMBINATIONS[combination] if not a.startswith("--api-versions")]
    result = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_object_validates(render: Render, combination: str) -> None:
    docs = render(combination)
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["apiVersion"] in CRD_MODELS:
            _validate_crd(doc)
            continue
        if doc["apiVersion"] in operator_schemas.API_VERSIONS:
            try:
                operator_schemas.validate(doc)
            except jsonschema.ValidationError as exc:
                pytest.fail(
                    f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.json_path}"
                )
            continue
        if doc["apiVersion"] == GATEWAY_API:
            _validate_gateway(doc)
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc}")
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap"} & kinds


def test_crd_check_rejects_unknown_fields() -> None:
    doc = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "w"},
        "spec": {"scaleTargetRef": {"name": "w"}, "triggers": [], "replicas": 3},
    }
    with pytest.raises(AssertionError, match="fields the CRD does not define"):
        _validate_crd(doc)
    doc["spec"] = {"scaleTargetRef": {"name": "w"}, "triggers": [], "fallback": {
        "failureThreshold": 3, "replicas": 1, "behavior": "sometimes",
    }}  # fmt: skip
    with pytest.raises(AssertionError, match=r"spec\.fallback\.behavior"):
        _validate_crd(doc)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda spec: spec.update(replica=3), "Additional properties"),
        (
            lambda spec: spec["postgresql"]["synchronous"].update(method="all"),
            "'all' is not one of",
        ),
        (lambda spec: spec["postgresql"]["synchronous"].update(number=0), "less than or equal"),
        (lambda spec: spec.pop("instances"), "'instances' is a required property"),
    ],
)
def test_the_operator_schemas_refuse_what_the_crds_refuse(
    render: Render, change: Callable[[dict[str, Any]], object], error: str
) -> None:
    [cluster] = [d for d in render("operators") if d["kind"] == "Cluster"]
    operator_schemas.validate(cluster)
    broken = copy.deepcopy(cluster)
    change(broken["spec"])
    with pytest.raises(jsonschema.ValidationError, match=error):
        operator_schemas.validate(broken)


def test_every_operator_kind_the_chart_renders_has_a_schema(render: Render) -> None:
    rendered = {
        (d["apiVersion"], d["kind"])
        for name in COMBINATIONS
        for d in render(name)
        if d["apiVersion"].split("/")[0] in {"rabbitmq.com", "postgresql.cnpg.io"}
    }
    assert rendered == set(operator_schemas.SCHEMAS)


def test_gateway_check_follows_the_published_schema() -> None:
    route: dict[str, Any] = {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "s"}]}]},
    }
    _validate_gateway(route)
    route["spec"]["rules"][0]["timeout"] = "10s"  # not a field: timeouts.request is
    with pytest.raises(AssertionError, match="timeout"):
        _validate_gateway(route)
    route["spec"]["rules"][0] = {"matches": [{"path": {"type": "Prefix", "value": "/"}}]}
    with pytest.raises(AssertionError, match="Prefix"):  # Gateway API says PathPrefix
        _validate_gateway(route)
