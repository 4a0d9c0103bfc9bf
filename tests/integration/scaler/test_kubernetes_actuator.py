"""The Kubernetes actuator, driven by the real ``kubernetes`` client against kmock's emulator.

The emulator keeps Deployments in memory and serves them over real HTTP; the scale
subresource is rendered as an ``autoscaling/v1`` ``Scale`` built from the stored Deployment,
and a PATCH of ``.../scale`` merges into the Deployment's ``spec.replicas``, as on a cluster.
"""

from __future__ import annotations

import kmock
import pytest
from kubernetes import client
from tests.integration.scaler.scaler_helpers import Cluster
from tests.support.services import free_port

from conversation_events.errors import PermanentError, RetryableError
from conversation_events_scaler.actuators import KubernetesActuator
from conversation_events_scaler.errors import (
    ActuatorUnavailable,
    ScaleConflict,
    ScaleForbidden,
    ScaleTargetNotFound,
)

NAMESPACE = "ce"


@pytest.fixture
def apps(kubernetes_api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kubernetes_api)


def test_reads_the_replicas_from_the_scale_subresource(
    cluster: Cluster, apps: client.AppsV1Api
) -> None:
    cluster.add_deployment("worker", 3)
    assert KubernetesActuator(apps, NAMESPACE, "worker").current() == 3
    assert cluster.requests() == [
        ("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/worker/scale")
    ]


def test_patches_only_the_scale_of_its_own_deployment(
    cluster: Cluster, apps: client.AppsV1Api
) -> None:
    cluster.add_deployment("worker", 1)
    cluster.add_deployment("api", 2)
    cluster.add_deployment("worker", 4, namespace="other")
    actuator = KubernetesActuator(apps, NAMESPACE, "worker")

    actuator.scale(5)
    assert actuator.current() == 5
    actuator.scale(0)

    assert cluster.replicas("worker") == 0
    assert cluster.replicas("api") == 2
    assert cluster.replicas("worker", namespace="other") == 4
    scale_path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/worker/scale"
    assert cluster.requests() == [("PATCH", scale_path), ("GET", scale_path), ("PATCH", scale_path)]
    patches = [r.data for r in cluster.emulator[kmock.method.PATCH]]
    assert patches == [{"spec": {"replicas": 5}}, {"spec": {"replicas": 0}}]


def test_missing_deployment_is_a_permanent_not_found(
    cluster: Cluster, apps: client.AppsV1Api
) -> None:
    actuator = KubernetesActuator(apps, NAMESPACE, "worker")
    with pytest.raises(ScaleTargetNotFound, match=f"deployment {NAMESPACE}/worker") as read:
        actuator.current()
    with pytest.raises(ScaleTargetNotFound):
        actuator.scale(2)
    assert isinstance(read.value, PermanentError)


def test_forbidden_names_the_missing_rbac_permission(
    cluster: Cluster, apps: client.AppsV1Api
) -> None:
    cluster.add_deployment("worker", 1, namespace="locked")
    cluster.emulator[kmock.namespace("locked")] << kmock.KubernetesError(
        status=403, reason="Forbidden", message='deployments.apps "worker" is forbidden'
    )
    actuator = KubernetesActuator(apps, "locked", "worker")
    with pytest.raises(ScaleForbidden, match="deployments/scale") as read:
        actuator.current()
    with pytest.raises(ScaleForbidden):
        actuator.scale(2)
    assert isinstance(read.value, PermanentError)


def test_conflict_is_retryable(cluster: Cluster, apps: client.AppsV1Api) -> None:
    cluster.add_deployment("worker", 1)
    cluster.emulator["patch", kmock.name("worker")] << kmock.KubernetesError(
        status=409, reason="Conflict", message="the object has been modified"
    )
    with pytest.raises(ScaleConflict) as patch:
        KubernetesActuator(apps, NAMESPACE, "worker").scale(2)
    assert isinstance(patch.value, RetryableError)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_overload_and_server_errors_are_retryable(
    cluster: Cluster, apps: client.AppsV1Api, status: int
) -> None:
    cluster.add_deployment("worker", 1)
    cluster.emulator["get", kmock.name("worker")] << kmock.KubernetesError(
        status=status, reason="Busy", message="try later"
    )
    with pytest.raises(ActuatorUnavailable, match=f"HTTP {status}"):
        KubernetesActuator(apps, NAMESPACE, "worker").current()


def test_unreachable_api_server_is_retryable() -> None:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"
    configuration.retries = 0
    with client.ApiClient(configuration) as api_client:
        actuator = KubernetesActuator(client.AppsV1Api(api_client), NAMESPACE, "worker")
        with pytest.raises(ActuatorUnavailable, match="unreachable"):
            actuator.current()


def test_negative_replicas_are_refused_before_any_call(
    cluster: Cluster, apps: client.AppsV1Api
) -> None:
    with pytest.raises(ValueError, match="negative"):
        KubernetesActuator(apps, NAMESPACE, "worker").scale(-1)
    assert cluster.requests() == []
