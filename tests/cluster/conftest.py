"""The replicated stack for the cluster scenarios: `STACK_TOPOLOGY=cluster scripts/stack up`.

One stack serves the whole module (starting three RabbitMQ nodes and two PostgreSQL servers is
the expensive part); every scenario leaves it whole again (nodes restarted, the old primary
rebuilt as the standby), and uses users of its own, so the scenarios' verdicts do not mix. The
stack lives in a temporary directory with ports of its own and is stopped and removed after
the module, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from tests.chaos.harness import FAST
from tests.chaos.report import REPORTS, table
from tests.support.ci import unavailable
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "conversation_events_processing"  # the stack's default queue


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [r for r in REPORTS if r.scenario.startswith("cluster")]
    if reports:
        terminalreporter.section("replicated topology report")
        for line in table(reports):
            terminalreporter.write_line(line)


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the cluster stack runs PostgreSQL as the postgres user: needs root"
    for tool in ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/lib/postgresql/15/bin/initdb"):
        if not Path(tool).exists():
            return f"{tool} is not installed"
    return None


@dataclass
class ClusterStack:
    """A running replicated stack and the commands of `scripts/stack` on it."""

    env: dict[str, str]
    state: Path
    base_url: str
    api_key: str
    database_url: str

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "scripts" / "stack"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def drill(self, *args: str) -> dict[str, Any]:
        """Run one drill; its JSON summary. Fails the test with the drill's output if it failed."""
        result = self.run(*args)
        assert result.returncode == 0, f"scripts/stack {' '.join(args)}:\n{result.stderr}"
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", timeout=60)
        return dict(json.loads(result.stdout))

    def topology(self) -> dict[str, Any]:
        return dict(self.status()["topology"])

    def node_indices(self) -> tuple[int, list[int]]:
        """(the main queue's leader, its followers), as node numbers 1-3."""
        rabbit = self.topology()["rabbitmq"]
        by_name = {n["name"]: n["node"] for n in rabbit["nodes"]}
        leader = by_name[rabbit["leader"]]
        return leader, sorted(i for i in by_name.values() if i != leader)

    def management_url(self) -> str:
        """The management API of a running node (the scenarios' redelivery counts)."""
        for node in self.topology()["rabbitmq"]["nodes"]:
            if node["running"]:
                return f"http://127.0.0.1:{node['management_port']}"
        raise AssertionError("no RabbitMQ node is running")

    def whole(self) -> bool:
        """Three nodes running, the queue's three members online, the standby streaming."""
        topology = self.topology()
        rabbit, pg = topology["rabbitmq"], topology["postgresql"]
        return (
            all(n["running"] for n in rabbit["nodes"])
            and len(rabbit["online"]) == 3
            and sorted(s["role"] for s in pg["servers"]) == ["primary", "standby"]
            and any(r["state"] == "streaming" for r in pg["replication"])
        )

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.state / "logs").glob("*.log"))


@pytest.fixture(scope="module")
def cluster_stack(request: pytest.FixtureRequest) -> Iterator[ClusterStack]:
    missing = _missing()
    if missing:
        unavailable(missing)
    # Not pytest's tmp_path: the postgres user must reach its data directories inside.
    state = Path(tempfile.mkdtemp(prefix="ce-cluster-"))
    state.chmod(0o755)
    pg = [free_port() for _ in range(2)]

    def ports(n: int) -> str:
        return ",".join(str(free_port()) for _ in range(n))

    env = (
        dict(os.environ)
        | FAST
        | {
            "STACK_TOPOLOGY": "cluster",
            "STACK_DIR": str(state),
            "STACK_PORT": str(free_port()),
            "STACK_SCALER_PORT": str(free_port()),
            "STACK_WORKER_BASE_PORT": "0",
            "STACK_MIN_WORKERS": "2",
            "STACK_AMQP_PORTS": ports(3),
            "STACK_MANAGEMENT_PORTS": ports(3),
            "STACK_DIST_PORTS": ports(3),
            "STACK_EPMD_PORT": str(free_port()),
            "STACK_PG_PORTS": ",".join(map(str, pg)),
            "STACK_SYNC_COMMIT": "on",
        }
    )
    stack = ClusterStack(env, state, "", "", "")
    failed_before = request.session.testsfailed
    started = time.monotonic()
    broke = False
    try:
        up = stack.run("up", timeout=420)
        assert up.returncode == 0, f"scripts/stack up failed:\n{up.stdout}\n{up.stderr}"
        values = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines())
        stack.base_url, stack.api_key = values["E2E_BASE_URL"], values["E2E_API_KEY"]
        stack.database_url = (
            f"postgresql+psycopg2://postgres@/conversation_events?host=127.0.0.1:{pg[0]}"
            f"&host=127.0.0.1:{pg[1]}&target_session_attrs=read-write"
        )
        print(f"cluster stack up in {time.monotonic() - started:.1f} s: {up.stdout.strip()}")
        yield stack
    except BaseException:
        broke = True
        raise
    finally:
        # After a failure the processes' logs outlive the stack, for the post-mortem.
        failed = broke or request.session.testsfailed > failed_before
        if failed and (state / "logs").exists():
            kept = Path(tempfile.mkdtemp(prefix="ce-cluster-logs-"))
            shutil.copytree(state / "logs", kept / "logs")
            print(f"cluster stack logs kept in {kept}")
        down = stack.run("down", timeout=180)
        shutil.rmtree(state, ignore_errors=True)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def cluster_engine(cluster_stack: ClusterStack) -> Iterator[Engine]:
    """The verdict's view of the database: whichever server is the primary now."""
    engine = create_engine(
        cluster_stack.database_url,
        pool_size=2,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 2},
    )
    yield engine
    engine.dispose()
