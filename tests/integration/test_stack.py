"""`scripts/stack up|status|down`: the one-machine system, as a user starts it."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from tests.support.payloads import conversation
from tests.support.services import delete_topology, drop_database, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_stack_up_processes_an_event_and_down_leaves_nothing_behind(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    database, queue = f"ce_stack_{suffix}", f"stack.{suffix}.queue"
    env = dict(os.environ) | {
        "STACK_DIR": str(tmp_path / "stack"),
        "STACK_PORT": str(free_port()),
        "STACK_DATABASE": database,
        "STACK_QUEUE": queue,
        "STACK_SCALER_PORT": str(free_port()),
        "STACK_WORKER_BASE_PORT": "0",
        "STACK_POLLING_INTERVAL_S": "1",
    }

    def stack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "scripts" / "stack"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        up = stack("up")
        assert up.returncode == 0, up.stdout + up.stderr
        values = dict(
            line.split("=", 1) for line in (tmp_path / "stack" / "env").read_text().splitlines()
        )
        base, key = values["E2E_BASE_URL"], values["E2E_API_KEY"]
        assert base in up.stdout

        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10) as client:
            body = conversation()
            assert client.post("/v1/conversations/end", json=body).status_code == 202
            wait_for(
                lambda: (
                    client.get(f"/v1/conversations/{body['conversation_id']}").json()["status"]
                    == "PROCESSED"
                ),
                timeout=30,
                what="the event PROCESSED through the stack",
            )

        wait_for(
            lambda: (
                (s := json.loads(stack("status", "--json").stdout))
                .get("scaler", {})
                .get("current_replicas", 0)
                >= 1
                and s
            ),
            timeout=30,
            what="scaler status with a running worker",
        )
        status = json.loads(stack("status", "--json").stdout)
        assert status["ready"]["status"] == "ready"
        pids = [p["pid"] for p in status["processes"].values()]
        pids += [w["pid"] for w in status["scaler"]["actuator_status"]["workers"]]
        assert all(alive(pid) for pid in pids)

        down = stack("down")
        assert down.returncode == 0, down.stderr
        assert not [pid for pid in pids if alive(pid)]
        assert stack("status").returncode != 0
    finally:
        stack("down")
        drop_database(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}")
        delete_topology(f"{queue}.exchange", queue)
