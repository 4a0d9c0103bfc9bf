"""Credentials the chart generates: never different from one offline render to the next, and a
changed credential rolls the pods that read it."""

from __future__ import annotations

import base64
from typing import Any

from conversation_events.access import KEY_PREFIX, MIN_KEY_LENGTH
from tests.chart.rendering import (
    CHART,
    EXTERNAL,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    Render,
    one,
    run_helm,
)

REFUSE = "--set=secrets.generateOffline=false"  # what a user's `helm template` gets
ROLLED = ("api", "worker", "scaler")  # the Deployments that read the Secret


def _template(helm: str, *args: str) -> Any:
    return run_helm(helm, "template", RELEASE, str(CHART), f"--namespace={NAMESPACE}", *args)


def _secret_checksums(docs: list[dict[str, Any]]) -> set[str]:
    return {
        one(docs, "Deployment", f"{FULLNAME}-{c}")["spec"]["template"]["metadata"]["annotations"][
            "checksum/secret"
        ]
        for c in ROLLED
    }


def test_an_offline_render_refuses_to_generate_credentials_it_cannot_read_back(
    helm: str,
) -> None:
    result = _template(helm, REFUSE)
    assert result.returncode != 0
    generated = "api-keys, api-password, migrations-password, postgresql-password, "
    assert generated + "rabbitmq-password, scaler-password, worker-password" in result.stderr
    assert "set secrets.existingSecret" in result.stderr
    assert "secrets.generateOffline=true" in result.stderr
    # Only what would be generated is named: given keys and external passwords are not.
    result = _template(helm, REFUSE, *EXTERNAL)
    assert result.returncode != 0 and "credentials (api-keys) from" in result.stderr


def test_offline_renders_that_generate_nothing_are_identical(helm: str) -> None:
    for args in (
        ["--set=secrets.existingSecret=ce-credentials"],
        [*EXTERNAL, "--set=secrets.apiKeys={ce_0123456789abcdef0123}"],
    ):
        first, second = _template(helm, REFUSE, *args), _template(helm, REFUSE, *args)
        assert first.returncode == 0, first.stderr
        assert first.stdout == second.stdout, args


def test_pods_that_read_the_secret_roll_when_a_credential_changes(
    helm: str, render: Render
) -> None:
    given = [*EXTERNAL, "--set=secrets.apiKeys={ce_0123456789abcdef0123}"]
    [base] = _secret_checksums(render(None, *given))  # one value, on every such pod
    rotated_key = render(None, *given, "--set=secrets.apiKeys={ce_fedcba9876543210fedc}")
    rotated_db = render(None, *given, "--set=externalDatabase.password=rotated-db-password")
    assert base not in _secret_checksums(rotated_key) | _secret_checksums(rotated_db)
    # Generated credentials count too: each throwaway render generates others, and so differs,
    # as an upgrade does after a generated password was changed in the cluster.
    [one_render] = _secret_checksums(render("defaults"))
    [another] = _secret_checksums(render(None, "--set=commonLabels.render=second"))
    assert one_render != another
    # The configuration's checksum does not move with the credentials.
    config = {
        one(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        for docs in (render(None, *given), rotated_key, rotated_db)
    }
    assert len(config) == 1


def test_the_generated_api_key_is_recognisable(render: Render) -> None:
    data = one(render("defaults"), "Secret", FULLNAME)["data"]
    [key] = base64.b64decode(data["api-keys"]).decode().split(",")
    assert key.startswith(KEY_PREFIX) and len(key) >= MIN_KEY_LENGTH + len(KEY_PREFIX)
