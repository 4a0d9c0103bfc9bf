"""Idle-first scale-in in the chart: rendered only when on, RBAC on the namespace's pods only.

`worker.deletionCost.enabled` runs the deletion-cost loop in the built-in scaler, or, when the
scaler does not run (KEDA, no autoscaling), as its own Deployment; either way one Role grants
exactly `get`/`list`/`patch` on `pods`, bound to the one ServiceAccount that runs the loop.
Strict schema validation of these combinations is in test_render.py (COMBINATIONS).
"""

from __future__ import annotations

import pytest

from tests.chart import rendering
from tests.chart.rendering import FULLNAME, NAMESPACE, Render, by_kind, env_of, one, pod_specs

COSTS = f"{FULLNAME}-deletion-cost"
SCALER = f"{FULLNAME}-scaler"
WORKER = f"{FULLNAME}-worker"
RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
# combination: the ServiceAccount that runs the loop
ON = {
    "deletion-cost": SCALER,
    "keda-deletion-cost": COSTS,
    "autoscaling-off-deletion-cost": COSTS,
}


@pytest.mark.parametrize("combination", sorted(set(rendering.COMBINATIONS) - set(ON)))
def test_nothing_is_rendered_when_off(render: Render, combination: str) -> None:
    docs = render(combination)
    assert not [d for d in docs if d["metadata"]["name"] == COSTS]
    for role in by_kind(docs, "Role"):
        assert all("pods" not in rule.get("resources", []) for rule in role["rules"])
    for _, pod in pod_specs(docs):
        for container in pod["containers"]:
            assert "CE_SCALER_DELETION_COST" not in env_of(container)


@pytest.mark.parametrize("combination", sorted(ON))
def test_the_role_grants_only_get_list_patch_on_pods_in_the_namespace(
    render: Render, combination: str
) -> None:
    docs = render(combination)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    role = one(docs, "Role", COSTS)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}
    ]
    binding = one(docs, "RoleBinding", COSTS)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": COSTS,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": ON[combination], "namespace": NAMESPACE}
    ]
    # Namespaced objects only: nothing names another namespace.
    for d in docs:
        if d["kind"] in RBAC_KINDS:
            assert d["metadata"].get("namespace") in (None, NAMESPACE), d["metadata"]["name"]
    # Every other rule in the release is the scaler's own scale subresource, as before.
    others = [
        r for d in by_kind(docs, "Role") if d["metadata"]["name"] != COSTS for r in d["rules"]
    ]
    assert all(rule["resources"] == ["deployments/scale"] for rule in others)


@pytest.mark.parametrize("combination", sorted(ON))
def test_exactly_one_pod_runs_the_loop_and_reaches_the_workers(
    render: Render, combination: str
) -> None:
    docs = render(combination)
    runners = [
        (owner, pod)
        for owner, pod in pod_specs(docs)
        if env_of(pod["containers"][0]).get("CE_SCALER_DELETION_COST", {}).get("value") == "true"
    ]
    [(owner, pod)] = runners
    assert pod["serviceAccountName"] == ON[combination]
    assert pod["automountServiceAccountToken"] is True
    env = env_of(pod["containers"][0])
    worker = one(docs, "Deployment", WORKER)
    selector = dict(
        pair.split("=") for pair in env["CE_SCALER_WORKER_SELECTOR"]["value"].split(",")
    )
    assert selector == worker["spec"]["selector"]["matchLabels"]
    assert env["CE_SCALER_WORKER_HTTP_PORT"]["value"] == "9100"
    assert env["CE_SCALER_DELETION_COST_INTERVAL_S"]["value"] == "10"
    if ON[combination] == COSTS:
        assert env["CE_SCALER_MODE"]["value"] == "deletion-cost"
        # It reads pods and /metrics only: no credentials of the database or the broker.
        assert not [
            e
            for e in pod["containers"][0]["env"]
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        ]
        assert one(docs, "Deployment", COSTS)["spec"]["replicas"] == 1
    # The worker NetworkPolicy lets the loop's pod read the workers' http port.
    policy = one(docs, "NetworkPolicy", WORKER)
    loop_labels = rendering.pod_labels(owner)
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert any(
        "podSelector" in peer and rendering.selects(peer["podSelector"], loop_labels)
        for peer in rule["from"]
    )
