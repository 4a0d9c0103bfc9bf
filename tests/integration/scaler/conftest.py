"""Fixtures for the scaler's integration tests: the real local RabbitMQ and its management API.

Locally, a missing broker skips these tests; with CI=true it fails them, loudly.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from kubernetes import client
from tests.integration.scaler.scaler_helpers import (
    AMQP_HOST,
    AMQP_PORT,
    AUTH,
    Cluster,
    kubernetes_emulator,
)
from tests.support.services import port_open, require

ROOT = Path(__file__).resolve().parents[3]
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")


@pytest.fixture(scope="session")
def management_url() -> str:
    """The management API base URL, after enabling the plugin if needed."""
    require(port_open(AMQP_HOST, AMQP_PORT), f"RabbitMQ at {AMQP_HOST}:{AMQP_PORT}")
    result = subprocess.run(
        [str(ROOT / "scripts" / "rabbitmq-management")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    require(
        result.returncode == 0,
        f"RabbitMQ management API ({result.stderr.strip() or 'scripts/rabbitmq-management'})",
    )
    return MANAGEMENT_URL


@pytest.fixture
def management(management_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=management_url, auth=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
def vhost(management: httpx.Client) -> Iterator[str]:
    """A fresh vhost whose name contains a slash, so only correct URL-encoding finds it."""
    name = f"ce-test/{uuid.uuid4().hex[:8]}"
    encoded = quote(name, safe="")
    management.put(f"/api/vhosts/{encoded}").raise_for_status()
    management.put(
        f"/api/permissions/{encoded}/guest",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    ).raise_for_status()
    yield name
    management.delete(f"/api/vhosts/{encoded}")


@pytest.fixture
def unique_name() -> str:
    return f"ce-scaler-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """An in-memory Kubernetes API (kmock) on a real local port."""
    with kubernetes_emulator() as emulated:
        yield emulated


@pytest.fixture
def kubernetes_api(cluster: Cluster) -> Iterator[client.ApiClient]:
    """The official client, pointed at the emulated cluster (wrap it in CoreV1Api, AppsV1Api)."""
    configuration = client.Configuration()
    configuration.host = cluster.url
    with client.ApiClient(configuration) as api_client:
        yield api_client
