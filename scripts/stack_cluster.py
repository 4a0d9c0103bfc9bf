"""The replicated topology of `scripts/stack` (`STACK_TOPOLOGY=cluster`).

Three nodes of the installed RabbitMQ server clustered together (quorum queues get a member on
each), and a PostgreSQL primary with a streaming standby made from the Debian PostgreSQL
binaries, synchronous unless `STACK_SYNC_COMMIT=off`. Everything lives under
`<STACK_DIR>/cluster/`: one directory per node or server, a shared Erlang cookie, an epmd of
its own (so the machine's default RabbitMQ node and its epmd are never touched), and
`cluster.json`, which records the ports and which PostgreSQL server is the primary.

The RabbitMQ nodes form the cluster at boot: the first starts alone, the others list it as
their `classic_config` peer and join it during their first boot (what `join_cluster` does, but
without the stop_app/reset/start_app round of each joining node, which took 18 s a node here).
PostgreSQL runs as the `postgres` user, as its binaries require.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

RABBIT_BIN = Path(os.environ.get("STACK_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
PG_BIN = Path(os.environ.get("STACK_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
VHOST = "/"
DEFAULT_QUEUE = "conversation_events_processing"


class ClusterError(RuntimeError):
    """A step of the cluster's life failed; the message says which and where to look."""


def wanted() -> bool:
    """Whether `scripts/stack up` should run the replicated topology."""
    topology = os.environ.get("STACK_TOPOLOGY", "single")
    if topology not in ("single", "cluster"):
        raise ClusterError(f"STACK_TOPOLOGY must be single or cluster, not {topology!r}")
    return topology == "cluster"


def _ports(name: str, default: list[int]) -> list[int]:
    raw = os.environ.get(name)
    if not raw:
        return default
    ports = [int(p) for p in raw.split(",")]
    if len(ports) != len(default):
        raise ClusterError(f"{name} needs {len(default)} comma-separated ports, got {raw!r}")
    return ports


# --- the plan: names, ports and directories, kept in cluster.json ---------------------------


@dataclass
class RabbitNode:
    index: int
    name: str
    amqp_port: int
    management_port: int
    dist_port: int
    dir: str

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"


@dataclass
class PgServer:
    index: int
    port: int
    dir: str

    @property
    def data(self) -> Path:
        return Path(self.dir) / "data"

    @property
    def log(self) -> Path:
        return Path(self.dir) / "server.log"


@dataclass
class Cluster:
    root: str
    epmd_port: int
    rabbit: list[RabbitNode]
    postgres: list[PgServer]
    database: str
    sync_commit: bool
    primary: int = 1  # index of the PostgreSQL primary; changed by a failover
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def plan(cls, state: Path) -> Cluster:
        root = state / "cluster"
        amqp = _ports("STACK_AMQP_PORTS", [5701, 5702, 5703])
        management = _ports("STACK_MANAGEMENT_PORTS", [15701, 15702, 15703])
        dist = _ports("STACK_DIST_PORTS", [25701, 25702, 25703])
        pg = _ports("STACK_PG_PORTS", [5441, 5442])
        sync = os.environ.get("STACK_SYNC_COMMIT", "on")
        if sync not in ("on", "off"):
            raise ClusterError(f"STACK_SYNC_COMMIT must be on or off, not {sync!r}")
        return cls(
            root=str(root),
            epmd_port=int(os.environ.get("STACK_EPMD_PORT", "4371")),
            rabbit=[
                RabbitNode(
                    i,
                    f"ce{i}@localhost",
                    amqp[i - 1],
                    management[i - 1],
                    dist[i - 1],
                    str(root / f"rabbit{i}"),
                )
                for i in (1, 2, 3)
            ],
            postgres=[PgServer(i, pg[i - 1], str(root / f"pg{i}")) for i in (1, 2)],
            database=os.environ.get("STACK_DATABASE", "conversation_events"),
            sync_commit=sync == "on",
        )

    @property
    def path(self) -> Path:
        return Path(self.root) / "cluster.json"

    def save(self) -> None:
        self.path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state: Path) -> Cluster | None:
        path = state / "cluster" / "cluster.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["rabbit"] = [RabbitNode(**n) for n in raw["rabbit"]]
        raw["postgres"] = [PgServer(**s) for s in raw["postgres"]]
        return cls(**raw)

    def node(self, index: int) -> RabbitNode:
        for node in self.rabbit:
            if node.index == index:
                return node
        raise ClusterError(f"no broker node {index}: the nodes are 1, 2 and 3")

    def server(self, index: int) -> PgServer:
        return next(s for s in self.postgres if s.index == index)

    @property
    def standby(self) -> int:
        return next(s.index for s in self.postgres if s.index != self.primary)

    def process_env(self) -> dict[str, str]:
        """What every process of the stack is given: every broker, both database servers."""
        hosts = "&".join(f"host=127.0.0.1:{s.port}" for s in self.postgres)
        management = ",".join(n.management_url for n in self.rabbit)
        return {
            "CE_AMQP_URL": ",".join(n.amqp_url for n in self.rabbit),
            "CE_MANAGEMENT_URL": management,
            "CE_SCALER_MANAGEMENT_URL": management,
            "CE_DATABASE_URL": (
                f"postgresql+psycopg2://{PG_USER}@/{self.database}"
                f"?{hosts}&target_session_attrs=read-write"
            ),
        }


# --- small helpers ---------------------------------------------------------------------------


def poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Call `check` until it returns something truthy; ClusterError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    user: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a deadline; as `user` via runuser when given (and we are root)."""
    if user is not None and os.geteuid() == 0:
        args = ["runuser", "-u", user, "--", *args]
    try:
        result = subprocess.run(  # noqa: S603
            args, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`{' '.join(args)}` did not finish within {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        raise ClusterError(
            f"`{' '.join(args)}` failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, OSError):
        return False


@contextlib.contextmanager
def timed(cluster: Cluster, step: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    cluster.timings[step] = round(time.monotonic() - started, 1)


def http_json(url: str, timeout: float = 3.0) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback URLs we built
        url, headers={"Authorization": "Basic " + b64encode(b"guest:guest").decode()}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


# --- RabbitMQ ------------------------------------------------------------------------------


def _erlang_env(cluster: Cluster) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(Path(cluster.root) / "erlang"),  # holds the shared .erlang.cookie
        ERL_EPMD_PORT=str(cluster.epmd_port),
        ERL_EPMD_ADDRESS="127.0.0.1",
        # A CLI that crashes writes its dump here, not into the caller's directory.
        ERL_CRASH_DUMP=str(Path(cluster.root) / "erlang" / "erl_crash.dump"),
    )
    return env


def _node_env(cluster: Cluster, node: RabbitNode) -> dict[str, str]:
    d = Path(node.dir)
    env = _erlang_env(cluster)
    env.update(
        # A node that crashes writes erl_crash.dump here, and Mnesia its MnesiaCore.* files
        # into the working directory, which start_node makes the node's own.
        ERL_CRASH_DUMP=str(d / "erl_crash.dump"),
        RABBITMQ_NODENAME=node.name,
        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
        RABBITMQ_NODE_PORT=str(node.amqp_port),
        RABBITMQ_DIST_PORT=str(node.dist_port),
        RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
        RABBITMQ_LOG_BASE=str(d / "log"),
        RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
        # Not the machine's /etc/rabbitmq/rabbitmq-env.conf, which names the default node.
        RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
        RABBITMQ_PID_FILE=str(d / "pid"),
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
    )
    return env


def _write_node_config(cluster: Cluster, node: RabbitNode) -> None:
    d = Path(node.dir)
    d.mkdir(parents=True)
    lines = [
        f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}",
        "management.tcp.ip = 127.0.0.1",
        f"management.tcp.port = {node.management_port}",
    ]
    if node.index != 1:
        # Joins node 1 on its first boot; a node with data of its own ignores this.
        first = cluster.rabbit[0].name
        lines += [
            "cluster_formation.peer_discovery_backend = classic_config",
            f"cluster_formation.classic_config.nodes.1 = {first}",
            "cluster_formation.randomized_startup_delay_range.min = 0",
            "cluster_formation.randomized_startup_delay_range.max = 0",
        ]
    (d / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
    (d / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (d / "rabbitmq-env.conf").write_text("")


def rabbitmqctl(
    cluster: Cluster,
    node: RabbitNode,
    *args: str,
    timeout: float = 30,
    check: bool = True,
    tool: str = "rabbitmqctl",
) -> subprocess.CompletedProcess[str]:
    return run(
        [str(RABBIT_BIN / tool), "-n", node.name, "-q", *args],
        env=_erlang_env(cluster),
        timeout=timeout,
        check=check,
    )


def node_pid(node: RabbitNode) -> int | None:
    """The node's Erlang VM, when it runs (from its pid file, checked against /proc)."""
    try:
        pid = int((Path(node.dir) / "pid").read_text().strip())
        # The node's name is in its environment, not on its command line.
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if alive(pid) and f"RABBITMQ_NODENAME={node.name}".encode() in environ else None


def _start_epmd(cluster: Cluster) -> None:
    # -relaxed_command_check: `epmd -kill` works at `down` even if a node is still registered.
    run(
        [
            "epmd",
            "-port",
            str(cluster.epmd_port),
            "-address",
            "127.0.0.1",
            "-daemon",
            "-relaxed_command_check",
        ],
        env=_erlang_env(cluster),
        timeout=10,
    )


def _stop_epmd(cluster: Cluster) -> None:
    run(
        ["epmd", "-port", str(cluster.epmd_port), "-kill"],
        env=_erlang_env(cluster),
        timeout=10,
        check=False,
    )


def start_node(cluster: Cluster, node: RabbitNode) -> subprocess.Popen[bytes] | None:
    """Start one node in its own session (so a drill can kill it whole) without waiting;
    None when it already runs."""
    if node_pid(node) is not None:
        return None
    # The child keeps its own copy of the log's descriptor.
    with (Path(node.dir) / "console.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=_node_env(cluster, node),
            cwd=node.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def await_node(
    cluster: Cluster,
    node: RabbitNode,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until the node has booted (and joined the cluster), or raise with its log's tail
    as soon as its `process` exits or the `timeout` passes."""
    deadline = time.monotonic() + timeout
    console = Path(node.dir) / "console.log"
    while True:
        remaining = deadline - time.monotonic()
        if process is not None and process.poll() is not None:
            raise ClusterError(
                f"RabbitMQ node {node.name} exited while starting (code {process.returncode}); "
                f"see {node.dir}/log/ and {console}:\n{_tail(console)}"
            )
        if remaining <= 0:
            raise ClusterError(
                f"RabbitMQ node {node.name} not started within {timeout:.0f} s; see "
                f"{node.dir}/log/ and {console}:\n{_tail(console)}"
            )
        round_s = max(1.0, min(remaining, 15.0))  # short rounds: the process check runs
        try:
            result = rabbitmqctl(
                cluster,
                node,
                "await_startup",
                "--timeout",
                str(int(round_s)),
                timeout=round_s + 20,  # the CLI itself starts slowly on a loaded machine
                check=False,
            )
        except ClusterError:
            continue  # the CLI did not answer in time: check the process and the deadline
        if result.returncode == 0:
            return
        time.sleep(0.5)  # not registered with epmd yet: await_startup fails at once


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_node(cluster: Cluster, node: RabbitNode, timeout: float = 60) -> None:
    """A clean stop (`rabbitmqctl stop`), then SIGKILL if it lingers."""
    pid = node_pid(node)
    if pid is None:
        return
    with contextlib.suppress(ClusterError):  # a CLI that does not answer: kill below
        rabbitmqctl(cluster, node, "stop", timeout=timeout, check=False)
    with contextlib.suppress(ClusterError):
        poll(f"{node.name} to exit", lambda: not alive(pid), 15)
        return
    kill_node(node)


def kill_node(node: RabbitNode) -> int | None:
    """SIGKILL the node's whole session (the VM and its port programs); returns the VM's pid."""
    pid = node_pid(node)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    poll(f"{node.name} to die", lambda: not alive(pid), 10, interval=0.05)
    return pid


def running_nodes(cluster: Cluster) -> list[str]:
    """Cluster members that are running, as any reachable node sees them."""
    for node in cluster.rabbit:
        if node_pid(node) is None:
            continue
        nodes = http_json(f"{node.management_url}/api/nodes")
        if isinstance(nodes, list):
            return sorted(n["name"] for n in nodes if n.get("running"))
    return []


def queue_info(cluster: Cluster, queue: str) -> dict[str, Any] | None:
    """The queue as the management API of any live node shows it (leader, members, online)."""
    for node in cluster.rabbit:
        if node_pid(node) is None:
            continue
        info = http_json(
            f"{node.management_url}/api/queues/{quote(VHOST, safe='')}/{quote(queue, safe='')}"
        )
        if isinstance(info, dict) and "name" in info:
            return info
    return None


def _start_rabbit(cluster: Cluster, timeout: float) -> None:
    home = Path(cluster.root) / "erlang"
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(20).upper())
    cookie.chmod(0o400)
    for node in cluster.rabbit:
        _write_node_config(cluster, node)
    _start_epmd(cluster)
    first, *others = cluster.rabbit
    with timed(cluster, "rabbitmq_first_node_s"):
        await_node(cluster, first, timeout, start_node(cluster, first))
    with timed(cluster, "rabbitmq_others_joined_s"):
        processes = [start_node(cluster, node) for node in others]
        for node, process in zip(others, processes, strict=True):
            await_node(cluster, node, timeout, process)
        names = sorted(n.name for n in cluster.rabbit)
        poll(
            "all three RabbitMQ nodes running in one cluster",
            lambda: running_nodes(cluster) == names,
            30,
        )


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg(
    server: PgServer, *args: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([str(PG_BIN / args[0]), *args[1:]], user=PG_USER, timeout=timeout, check=check)


def _owned_dir(path: Path) -> None:
    """A directory the postgres user owns (it refuses data directories it does not)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(PG_USER)
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)


def start_server(server: PgServer, timeout: float) -> None:
    log = server.log
    log.touch()
    if os.geteuid() == 0:
        user = pwd.getpwnam(PG_USER)
        os.chown(log, user.pw_uid, user.pw_gid)
    # The port on the command line: the configuration is copied between servers.
    try:
        _pg(
            server,
            "pg_ctl",
            "-D",
            str(server.data),
            "-l",
            str(log),
            "-o",
            f"-p {server.port}",
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )
    except ClusterError as exc:
        raise ClusterError(f"{exc}\n{log}:\n{_tail(log)}") from exc


def stop_server(server: PgServer, mode: str = "fast", timeout: float = 60) -> None:
    if server_pid(server) is None:
        return
    _pg(
        server,
        "pg_ctl",
        "-D",
        str(server.data),
        "-m",
        mode,
        "-w",
        "-t",
        str(int(timeout)),
        "stop",
        timeout=timeout + 10,
        check=False,
    )


def server_pid(server: PgServer) -> int | None:
    try:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def query(server: PgServer, sql: str, timeout: float = 3) -> list[tuple[Any, ...]] | None:
    """Rows of one query on one server, or None when it does not answer."""
    import psycopg2

    try:
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=server.port,
            user=PG_USER,
            dbname="postgres",
            connect_timeout=max(1, int(timeout)),
        )
    except psycopg2.Error:
        return None
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def replication(server: PgServer) -> list[dict[str, Any]]:
    rows = (
        query(
            server,
            "SELECT application_name, client_port, state, sync_state, "
            "COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0) "
            "FROM pg_stat_replication",
        )
        or []
    )
    return [
        {
            "application_name": r[0],
            "client_port": r[1],
            "state": r[2],
            "sync_state": r[3],
            "replay_lag_bytes": int(r[4]),
        }
        for r in rows
    ]


def _streaming(cluster: Cluster, primary: PgServer) -> bool:
    want = "sync" if cluster.sync_commit else "async"
    return any(r["state"] == "streaming" and r["sync_state"] == want for r in replication(primary))


def _conf(cluster: Cluster) -> str:
    # Shared by both servers (pg_basebackup copies it); the port is given at start instead.
    return "\n".join(
        [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "wal_level = replica",
            "hot_standby = on",
            "max_wal_senders = 5",
            "wal_keep_size = '256MB'",
            # A commit returns once the standby has it too ('*': whichever standby streams).
            f"synchronous_standby_names = '{'*' if cluster.sync_commit else ''}'",
            "synchronous_commit = on",
            "shared_buffers = '64MB'",
            "max_connections = 200",
            "",
        ]
    )


def _base_backup(cluster: Cluster, source: PgServer, target: PgServer, timeout: float) -> None:
    if target.data.exists():
        shutil.rmtree(target.data)
    _owned_dir(Path(target.dir))
    _pg(
        target,
        "pg_basebackup",
        "-h",
        "127.0.0.1",
        "-p",
        str(source.port),
        "-U",
        PG_USER,
        "-D",
        str(target.data),
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-sync",
        timeout=timeout,
    )


def _start_postgres(cluster: Cluster, timeout: float) -> None:
    primary, standby = cluster.server(cluster.primary), cluster.server(cluster.standby)
    with timed(cluster, "postgresql_primary_s"):
        _owned_dir(Path(primary.dir))
        # Checksums, so pg_rewind can rebuild a failed primary as a standby.
        _pg(
            primary,
            "initdb",
            "-D",
            str(primary.data),
            "-U",
            PG_USER,
            "-A",
            "trust",
            "--data-checksums",
            "--no-sync",
            "--no-instructions",
            "-E",
            "UTF8",
            "--locale",
            "C",
            timeout=timeout,
        )
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(_conf(cluster))
        start_server(primary, timeout)
    with timed(cluster, "postgresql_standby_s"):
        _base_backup(cluster, primary, standby, timeout)
        start_server(standby, timeout)
        poll(
            "the standby to stream from the primary", lambda: _streaming(cluster, primary), timeout
        )


def pg_role(server: PgServer) -> str:
    rows = query(server, "SELECT pg_is_in_recovery()")
    if rows is None:
        return "down"
    return "standby" if rows[0][0] else "primary"


# --- the commands ----------------------------------------------------------------------------


def up(state: Path, timeout: float | None = None) -> Cluster:
    """Start the cluster; returns it (its `process_env()` is what the processes get)."""
    timeout = timeout or float(os.environ.get("STACK_CLUSTER_TIMEOUT_S", "120"))
    if Cluster.load(state) is not None:
        raise ClusterError(
            f"a cluster is already set up in {state / 'cluster'}; `scripts/stack down` first"
        )
    for tool in (RABBIT_BIN / "rabbitmq-server", PG_BIN / "initdb"):
        if not tool.exists():
            raise ClusterError(f"{tool} not found: install rabbitmq-server and postgresql-15")
    cluster = Cluster.plan(state)
    Path(cluster.root).mkdir(parents=True)
    Path(cluster.root).chmod(0o755)  # the postgres user must reach its directories
    cluster.save()
    try:
        with timed(cluster, "total_s"):
            _start_rabbit(cluster, timeout)
            _start_postgres(cluster, timeout)
    except BaseException:
        down(state)
        raise
    cluster.save()
    return cluster


def down(state: Path) -> bool:
    """Stop every node and server of the cluster and remove its directories; False if none."""
    cluster = Cluster.load(state)
    if cluster is None:
        return False
    for server in cluster.postgres:
        stop_server(server, mode="immediate", timeout=30)
    for node in cluster.rabbit:
        kill_node(node)  # its data goes with it: nothing to flush
    _stop_epmd(cluster)
    shutil.rmtree(cluster.root, ignore_errors=True)
    return True


def kill_broker_leader(state: Path, queue: str) -> dict[str, Any]:
    """SIGKILL the node that leads `queue`; waits (bounded) for the new leader."""
    cluster = _loaded(state)
    info = queue_info(cluster, queue)
    if info is None or not info.get("leader"):
        raise ClusterError(f"queue {queue!r} not found or without a leader on any live node")
    leader = next(n for n in cluster.rabbit if n.name == info["leader"])
    started = time.monotonic()
    pid = kill_node(leader)

    def new_leader() -> str | None:
        now = queue_info(cluster, queue)
        name = now.get("leader") if now else None
        return name if name and name != leader.name and name in now.get("online", []) else None

    elected = poll(f"a new leader of {queue}", new_leader, 60, interval=0.2)
    return {
        "killed": leader.name,
        "node": leader.index,
        "pid": pid,
        "new_leader": elected,
        "elected_after_s": round(time.monotonic() - started, 1),
    }


def stop_broker_node(state: Path, index: int) -> dict[str, Any]:
    cluster = _loaded(state)
    node = cluster.node(index)
    started = time.monotonic()
    stop_node(cluster, node)
    return {"stopped": node.name, "seconds": round(time.monotonic() - started, 1)}


def start_broker_node(state: Path, index: int, queue: str, timeout: float = 120) -> dict[str, Any]:
    """Start a node; returns once it runs in the cluster and its member of `queue` (when it
    has one) is online again."""
    cluster = _loaded(state)
    node = cluster.node(index)
    started = time.monotonic()
    await_node(cluster, node, timeout, start_node(cluster, node))
    poll(f"{node.name} running in the cluster", lambda: node.name in running_nodes(cluster), 30)

    def member_online() -> bool:
        info = queue_info(cluster, queue)
        return (
            info is None
            or node.name not in info.get("members", [])
            or (node.name in info.get("online", []))
        )

    poll(f"{node.name}'s member of {queue} online", member_online, 60)
    return {"started": node.name, "seconds": round(time.monotonic() - started, 1)}


def restart_broker_node(state: Path, index: int, queue: str) -> dict[str, Any]:
    stopped = stop_broker_node(state, index)
    started = start_broker_node(state, index, queue)
    return {
        "restarted": started["started"],
        "stop_s": stopped["seconds"],
        "start_s": started["seconds"],
    }


def failover_database(state: Path, timeout: float = 120) -> dict[str, Any]:
    """Stop the primary hard, promote the standby, rebuild the old primary as its standby."""
    cluster = _loaded(state)
    old, new = cluster.server(cluster.primary), cluster.server(cluster.standby)
    if pg_role(new) != "standby":
        raise ClusterError(f"server {new.index} (port {new.port}) is not a running standby")
    times: dict[str, float] = {}
    started = time.monotonic()
    stop_server(old, mode="immediate", timeout=30)  # a crash: no shutdown checkpoint
    times["primary_stopped_s"] = round(time.monotonic() - started, 1)
    _pg(
        new,
        "pg_ctl",
        "-D",
        str(new.data),
        "-w",
        "-t",
        str(int(timeout)),
        "promote",
        timeout=timeout + 10,
    )
    poll("the promoted server to accept writes", lambda: pg_role(new) == "primary", timeout)
    times["promoted_s"] = round(time.monotonic() - started, 1)
    cluster.primary = new.index
    cluster.save()
    # pg_rewind reads the new timeline from the control file, which the checkpoint updates.
    query(new, "CHECKPOINT", timeout=30)
    rewound = _pg(
        old,
        "pg_rewind",
        "-D",
        str(old.data),
        "-R",
        "--no-sync",
        f"--source-server=host=127.0.0.1 port={new.port} user={PG_USER} dbname=postgres",
        timeout=timeout,
        check=False,
    )
    how = "pg_rewind"
    if rewound.returncode != 0:
        how = "pg_basebackup"  # e.g. the WAL it needs is gone: copy the whole server
        _base_backup(cluster, new, old, timeout)
    start_server(old, timeout)
    poll("the rebuilt standby to stream", lambda: _streaming(cluster, new), timeout)
    times["standby_streaming_s"] = round(time.monotonic() - started, 1)
    return {
        "primary": {"server": new.index, "port": new.port},
        "standby": {"server": old.index, "port": old.port},
        "rebuilt_with": how,
        **times,
    }


def status(state: Path, queue: str) -> dict[str, Any] | None:
    cluster = Cluster.load(state)
    if cluster is None:
        return None
    running = running_nodes(cluster)
    info = queue_info(cluster, queue) or {}
    primary = cluster.server(cluster.primary)
    return {
        "rabbitmq": {
            "nodes": [
                {
                    "node": n.index,
                    "name": n.name,
                    "amqp_port": n.amqp_port,
                    "management_port": n.management_port,
                    "pid": node_pid(n),
                    "running": n.name in running,
                }
                for n in cluster.rabbit
            ],
            "queue": queue,
            "leader": info.get("leader"),
            "members": info.get("members", []),
            "online": info.get("online", []),
        },
        "postgresql": {
            "servers": [
                {"server": s.index, "port": s.port, "pid": server_pid(s), "role": pg_role(s)}
                for s in cluster.postgres
            ],
            "primary": cluster.primary,
            "synchronous": cluster.sync_commit,
            "replication": replication(primary),
        },
        "startup_s": cluster.timings,
    }


def print_status(report: dict[str, Any]) -> None:
    rabbit, pg = report["rabbitmq"], report["postgresql"]
    for n in rabbit["nodes"]:
        lead = "  leader" if n["name"] == rabbit["leader"] else ""
        state = "running" if n["running"] else ("started" if n["pid"] else "down")
        print(
            f"rabbit{n['node']}  {n['name']:16} amqp {n['amqp_port']:<6} "
            f"management {n['management_port']:<6} {state}{lead}"
        )
    members = f"{len(rabbit['online'])}/{len(rabbit['members'])} members online"
    print(f"queue    {rabbit['queue']}: leader {rabbit['leader'] or '-'}, {members}")
    for s in pg["servers"]:
        print(f"pg{s['server']}      port {s['port']:<6} {s['role']}")
    streams = (
        ", ".join(
            f"{r['state']}/{r['sync_state']} lag {r['replay_lag_bytes']} B"
            for r in pg["replication"]
        )
        or "no standby streaming"
    )
    mode = "synchronous" if pg["synchronous"] else "asynchronous"
    print(f"replication {mode}: {streams}")


def _loaded(state: Path) -> Cluster:
    cluster = Cluster.load(state)
    if cluster is None:
        raise ClusterError(
            "no cluster here: start one with STACK_TOPOLOGY=cluster scripts/stack up"
        )
    return cluster
