"""The replicated stack's plan (scripts/stack_cluster.py): ports, addresses, replication mode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from conversation_events.messaging.brokers import amqp_urls
from conversation_events.messaging.policy import ManagementApi

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack_cluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "stack_cluster", ROOT / "scripts" / "stack_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("stack_cluster", module)
    spec.loader.exec_module(module)
    return module


def test_every_process_gets_all_three_brokers_and_both_database_servers(
    stack_cluster: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STACK_AMQP_PORTS", "6001,6002,6003")
    monkeypatch.setenv("STACK_PG_PORTS", "6101,6102")
    monkeypatch.setenv("STACK_MANAGEMENT_PORTS", "6201,6202,6203")
    env = stack_cluster.Cluster.plan(tmp_path).process_env()
    nodes = [f"http://127.0.0.1:{port}" for port in (6201, 6202, 6203)]
    # The queue policy and the scaler's reads go to whichever node's management API answers.
    assert ManagementApi.for_broker(env["CE_MANAGEMENT_URL"], env["CE_AMQP_URL"]).base_urls == (
        tuple(nodes)
    )
    assert env["CE_SCALER_MANAGEMENT_URL"] == ",".join(nodes)
    assert [u.split("@")[1] for u in amqp_urls(env["CE_AMQP_URL"])] == [
        "127.0.0.1:6001/%2F",
        "127.0.0.1:6002/%2F",
        "127.0.0.1:6003/%2F",
    ]
    url = make_url(env["CE_DATABASE_URL"])
    # SQLAlchemy's psycopg2 dialect turns repeated `host` parameters into libpq's lists.
    _, connect = create_engine(url).dialect.create_connect_args(url)
    assert connect["host"] == "127.0.0.1,127.0.0.1"
    assert connect["port"] == "6101,6102"
    assert connect["target_session_attrs"] == "read-write"


def test_synchronous_replication_is_the_default_and_can_be_turned_off(
    stack_cluster: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STACK_SYNC_COMMIT", raising=False)
    cluster = stack_cluster.Cluster.plan(tmp_path)
    assert cluster.sync_commit
    assert "synchronous_standby_names = '*'" in stack_cluster._conf(cluster)
    monkeypatch.setenv("STACK_SYNC_COMMIT", "off")
    cluster = stack_cluster.Cluster.plan(tmp_path)
    assert "synchronous_standby_names = ''" in stack_cluster._conf(cluster)
    monkeypatch.setenv("STACK_SYNC_COMMIT", "maybe")
    with pytest.raises(stack_cluster.ClusterError, match="on or off"):
        stack_cluster.Cluster.plan(tmp_path)


def test_a_wrong_number_of_ports_is_refused(
    stack_cluster: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STACK_AMQP_PORTS", "6001,6002")
    with pytest.raises(stack_cluster.ClusterError, match="needs 3"):
        stack_cluster.Cluster.plan(tmp_path)


def test_the_plan_survives_a_round_trip_through_cluster_json(
    stack_cluster: ModuleType, tmp_path: Path
) -> None:
    cluster = stack_cluster.Cluster.plan(tmp_path)
    Path(cluster.root).mkdir(parents=True)
    cluster.primary = 2
    cluster.save()
    loaded = stack_cluster.Cluster.load(tmp_path)
    assert loaded == cluster
    assert loaded.standby == 1


def test_a_crashing_node_leaves_its_dumps_in_its_own_directory(
    stack_cluster: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A stand-in for rabbitmq-server that crashes as the Erlang VM does: erl_crash.dump where
    # ERL_CRASH_DUMP says (else the working directory), Mnesia's core in the working directory.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    server = bin_dir / "rabbitmq-server"
    server.write_text(
        "#!/bin/sh\n"
        'echo dump > "${ERL_CRASH_DUMP:-erl_crash.dump}"\n'
        "echo core > MnesiaCore.ce1@localhost_1\n"
        "exit 1\n"
    )
    server.chmod(0o755)
    monkeypatch.setattr(stack_cluster, "RABBIT_BIN", bin_dir)
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    cluster = stack_cluster.Cluster.plan(tmp_path / "state")
    node = cluster.rabbit[0]
    Path(node.dir).mkdir(parents=True)
    process = stack_cluster.start_node(cluster, node)
    assert process is not None
    assert process.wait(timeout=30) == 1
    assert list(caller.iterdir()) == []
    assert sorted(p.name for p in Path(node.dir).iterdir() if p.name != "console.log") == [
        "MnesiaCore.ce1@localhost_1",
        "erl_crash.dump",
    ]
