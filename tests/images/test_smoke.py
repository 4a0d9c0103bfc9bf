"""The image works: built once with podman, run non-root on a read-only root filesystem against
the machine's PostgreSQL and RabbitMQ, its processes take an event over HTTP and process it.

Every process runs from the same image, chosen by its command: the migrations, then the API, a
worker and the autoscaler as containers with host networking on free ports, with their own
database, exchange and queue.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.images import podman
from tests.support import payloads, services

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def image() -> str:
    podman.require_tools()
    return podman.build(podman.base_image())


@pytest.fixture
def stack(image: str) -> Iterator[dict[str, str]]:
    services.require(services.port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    services.require(services.port_open("127.0.0.1", 5672), "RabbitMQ at 127.0.0.1:5672")
    suffix = uuid.uuid4().hex[:10]
    database = f"ce_smoke_{suffix}"
    exchange, queue = services.unique_names("smoke")
    url = make_url(services.PG_ADMIN_URL).set(database=database)
    env = {
        "CE_ENVIRONMENT": "development",  # the host's broker only knows guest/guest
        "CE_DATABASE_URL": url.render_as_string(hide_password=False),
        "CE_AMQP_URL": services.AMQP_URL,
        "CE_EXCHANGE_NAME": exchange,
        "CE_QUEUE_NAME": queue,
        "CE_LOG_LEVEL": "INFO",
    }
    names = {c: f"ce-smoke-{c}-{suffix}" for c in ("api", "worker", "scaler")}
    api_port, worker_port, scaler_port = (services.free_port() for _ in range(3))
    api_key = uuid.uuid4().hex
    try:
        out = podman.run_once(image, env, "conversation-events-migrate", "--create-database")
        podman.run_detached(
            names["api"], image,
            {**env, "CE_API_KEYS": api_key, "CE_HOST": "127.0.0.1", "CE_PORT": str(api_port)},
        )  # fmt: skip
        podman.run_detached(
            names["worker"], image,
            {**env, "CE_WORKER_HTTP_HOST": "127.0.0.1", "CE_WORKER_HTTP_PORT": str(worker_port)},
            "conversation-events-worker",
        )  # fmt: skip
        # The autoscaler reads the queue through the host's management API; --dry-run: it
        # decides and never starts a worker of its own.
        podman.run_detached(
            names["scaler"], image,
            {
                "CE_ENVIRONMENT": "development",
                "CE_QUEUE_NAME": queue,
                "CE_DATABASE_URL": env["CE_DATABASE_URL"],  # to count unpublished events
                "CE_SCALER_ACTUATOR": "local",
                "CE_SCALER_POLLING_INTERVAL_S": "1",
                "CE_SCALER_HTTP_HOST": "127.0.0.1",
                "CE_SCALER_HTTP_PORT": str(scaler_port),
            },
            "conversation-events-scaler", "--dry-run",
        )  # fmt: skip
        yield {
            "api": f"http://127.0.0.1:{api_port}",
            "worker": f"http://127.0.0.1:{worker_port}",
            "scaler": f"http://127.0.0.1:{scaler_port}",
            "api_key": api_key,
            "migrate_output": out,
            **{f"{k}_container": v for k, v in names.items()},
        }
    finally:
        for name in names.values():
            podman.podman("rm", "--force", "--time=5", name, check=False)
        services.delete_topology(exchange, queue)
        services.drop_database(url.render_as_string(hide_password=False))


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _logs(stack: dict[str, str]) -> str:
    return "\n".join(podman.logs(stack[f"{c}_container"]) for c in ("api", "worker", "scaler"))


def _wait_until_ready(stack: dict[str, str]) -> None:
    try:
        checks = [("api", "/healthz"), ("api", "/readyz"), ("worker", "/readyz")]
        for component, path in [*checks, ("scaler", "/healthz")]:
            services.wait_for(
                functools.partial(_ready, stack[component] + path),
                timeout=60, interval=0.5, what=f"{component} {path}",
            )  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_logs(stack)}") from exc


def test_images_process_an_event_read_only_and_non_root(stack: dict[str, str]) -> None:
    _wait_until_ready(stack)
    try:
        body = payloads.conversation()
        headers = {"X-API-Key": stack["api_key"]}
        response = httpx.post(
            f"{stack['api']}/v1/conversations/end", json=body, headers=headers, timeout=10
        )
        assert response.status_code == 202, response.text
        status_url = f"{stack['api']}/v1/conversations/{body['conversation_id']}"

        def processed() -> dict | None:
            event = httpx.get(status_url, headers=headers, timeout=5).json()
            return event if event.get("status") == "PROCESSED" else None

        event = services.wait_for(processed, timeout=60, interval=0.5, what="PROCESSED")
        assert event["friendship_score_change"] is not None
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_logs(stack)}") from exc


def test_containers_are_non_root_read_only_and_stop_on_sigterm(stack: dict[str, str]) -> None:
    _wait_until_ready(stack)  # the handlers exist once the process is up
    check = (
        "import os, importlib.util\n"
        "assert os.getuid() == 10001 and os.getgid() == 10001, os.getuid()\n"
        "for path in ('/opt/venv/probe', '/probe'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(f'{path} is writable')\n"
        "assert importlib.util.find_spec('pytest') is None, 'test tools in the image'\n"
        "import conversation_events, conversation_events_api, conversation_events_worker\n"
        "import conversation_events_scaler\n"
        "for module in (conversation_events, conversation_events_api, conversation_events_worker,\n"
        "               conversation_events_scaler):\n"
        "    assert module.__file__.startswith('/opt/venv/lib/'), module.__file__\n"
        "assert not os.path.exists('/app'), 'a source tree in the image'\n"
        "print('ok')\n"
    )
    for component in ("api", "worker", "scaler"):
        name = stack[f"{component}_container"]
        result = podman.podman("exec", name, "/opt/venv/bin/python", "-c", check, check=False)
        assert result.stdout.strip() == "ok", result.stdout + result.stderr
    for component in ("scaler", "worker", "api"):
        name = stack[f"{component}_container"]
        # SIGTERM reaches the interpreter (PID 1, the console script run in exec form); it exits
        # cleanly well before podman would resort to SIGKILL.
        podman.podman("stop", "--time=30", name, timeout=60)
        state = podman.podman("inspect", "--format={{.State.ExitCode}}", name).stdout.strip()
        assert state == "0", f"{component} exited {state}\n{podman.logs(name)}"


def test_scaler_from_the_same_image_reads_the_queue(stack: dict[str, str]) -> None:
    _wait_until_ready(stack)
    consumers = "conversation_events_scaler_queue_consumers 1.0"
    # Counted in the database too, with nothing waiting there.
    unpublished = "conversation_events_scaler_outbox_unpublished 0.0"

    def sees_the_worker() -> bool:
        try:
            exposition = httpx.get(f"{stack['scaler']}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        return consumers in exposition and unpublished in exposition

    try:
        services.wait_for(sees_the_worker, timeout=60, interval=0.5, what="the worker's consumer")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_logs(stack)}") from exc
