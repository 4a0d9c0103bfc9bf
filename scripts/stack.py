"""Process manager behind `scripts/stack` (see that script for the commands)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import stack_cluster

ROOT = Path(__file__).resolve().parent.parent
# STACK_DIR lets several stacks (e.g. a test's) live side by side; each has its own state.
STATE = Path(os.environ.get("STACK_DIR", ROOT / ".stack")).resolve()
PIDS = STATE / "pids.json"
ENV_FILE = STATE / "env"
LOGS = STATE / "logs"
SCALER_STATUS = STATE / "scaler-status.json"
# The console scripts of the workspace, installed by scripts/bootstrap.
BIN = ROOT / ".venv" / "bin"


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault(
        "CE_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/conversation_events"
    )
    env.setdefault("CE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def load_pids() -> dict[str, int]:
    return json.loads(PIDS.read_text()) if PIDS.exists() else {}


def start(name: str, command: list[str], env: dict[str, str]) -> int:
    """Start a console script (`command[0]`, from .venv/bin) in its own session, logging to
    LOGS/<name>.log; its pid."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc.pid


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def up() -> int:
    pids = {k: v for k, v in load_pids().items() if alive(v)}
    if pids:
        print(f"already running: {', '.join(pids)}; `scripts/stack down` first", file=sys.stderr)
        return 1
    STATE.mkdir(exist_ok=True)
    cluster_env = up_cluster()
    if cluster_env is None:
        return 1
    port = int(os.environ.get("STACK_PORT", "8000"))
    api_key = secrets.token_urlsafe(24)
    env = base_env() | cluster_env
    env.update(CE_API_KEYS=api_key, CE_PORT=str(port), CE_HOST="127.0.0.1")
    migrated = subprocess.run(  # noqa: S603
        [str(BIN / "conversation-events-migrate"), "--create-database", "--broker"],
        cwd=ROOT,
        env=env,
        check=False,
    )
    if migrated.returncode != 0:
        print("the migration step failed (see above)", file=sys.stderr)
        down()
        return 1
    pids = {"api": start("api", ["conversation-events-api"], env)}
    scaler_env = dict(env)
    scaler_env.update(
        CE_SCALER_ACTUATOR="local",
        CE_SCALER_MIN_REPLICAS=os.environ.get("STACK_MIN_WORKERS", "1"),
        CE_SCALER_MAX_REPLICAS=os.environ.get("STACK_MAX_WORKERS", "4"),
        CE_SCALER_STATUS_FILE=str(SCALER_STATUS),
        CE_SCALER_HTTP_PORT=os.environ.get("STACK_SCALER_PORT", "9200"),
        CE_SCALER_WORKER_HTTP_BASE_PORT=os.environ.get("STACK_WORKER_BASE_PORT", "9100"),
        CE_SCALER_LOCK_FILE=str(STATE / "scaler.lock"),
        # Quicker than the cluster defaults, so a burst visibly scales out and back here.
        CE_SCALER_POLLING_INTERVAL_S=os.environ.get("STACK_POLLING_INTERVAL_S", "5"),
        CE_SCALER_SCALE_DOWN_STABILIZATION_S=os.environ.get("STACK_STABILIZATION_S", "60"),
        CE_SCALER_WORKER_LOG_DIR=str(LOGS),
    )
    pids["scaler"] = start("scaler", ["conversation-events-scaler"], scaler_env)
    PIDS.write_text(json.dumps(pids))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, _ = get(f"{base}/readyz")
        if code == 200:
            break
        for name, pid in pids.items():
            if not alive(pid):
                print(f"{name} exited; see {LOGS / (name + '.log')}", file=sys.stderr)
                down()
                return 1
        time.sleep(0.3)
    else:
        print(f"API not ready within 60 s; see {LOGS / 'api.log'}", file=sys.stderr)
        down()
        return 1
    ENV_FILE.write_text(f"E2E_BASE_URL={base}\nE2E_API_KEY={api_key}\n")
    ENV_FILE.chmod(0o600)
    print(f"conversation-events is up at {base}  (docs: {base}/docs; key and URL in {ENV_FILE})")
    return 0


def key(tenant: str, scopes: str, name: str | None) -> int:
    """Create an API key in the stack's database; print it, and nothing else, on stdout."""
    name = name or f"stack-{tenant}-{secrets.token_hex(4)}"
    args = ["--name", name, "--tenant", tenant, "--scopes", scopes, "--key-only"]
    return subprocess.run(  # noqa: S603
        [str(BIN / "conversation-events-keys"), "create", *args],
        cwd=ROOT,
        env=base_env() | running_cluster_env() | {"CE_LOG_LEVEL": "WARNING"},
        check=False,
    ).returncode


def down() -> int:
    pids = load_pids()
    for pid in pids.values():
        if alive(pid):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids.values():
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    PIDS.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    print("conversation-events stopped" if pids else "nothing was running")
    if stack_cluster.down(STATE):
        print("cluster stopped and removed (RabbitMQ nodes, PostgreSQL servers)")
    return 0


def status(as_json: bool) -> int:
    pids = load_pids()
    report: dict[str, object] = {
        "processes": {n: {"pid": p, "alive": alive(p)} for n, p in pids.items()}
    }
    env = (
        dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines())
        if ENV_FILE.exists()
        else {}
    )
    if "E2E_BASE_URL" in env:
        code, body = get(f"{env['E2E_BASE_URL']}/readyz")
        report["url"] = env["E2E_BASE_URL"]
        report["ready"] = json.loads(body) if code else "unreachable"
    if SCALER_STATUS.exists():
        report["scaler"] = json.loads(SCALER_STATUS.read_text())
    topology = stack_cluster.status(STATE, queue_name())
    if topology is not None:
        report["topology"] = topology
    running = any(p["alive"] for p in report["processes"].values())  # type: ignore[union-attr]
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        if not running:
            print("not running")
        for name, info in report["processes"].items():  # type: ignore[union-attr]
            print(f"{name:8} pid {info['pid']:<8} {'running' if info['alive'] else 'stopped'}")
        if "url" in report:
            print(f"url      {report['url']}  ready: {report['ready']}")
        scaler = report.get("scaler")
        if isinstance(scaler, dict):
            workers, decision = scaler.get("current_replicas"), scaler.get("last_decision")
            print(f"workers  {workers}  last decision: {decision}")
        if topology is not None:
            stack_cluster.print_status(topology)
    return 0 if running else 3


# --- the replicated topology (STACK_TOPOLOGY=cluster; the machinery is in stack_cluster.py) ---


def queue_name() -> str:
    return os.environ.get("CE_QUEUE_NAME", stack_cluster.DEFAULT_QUEUE)


def running_cluster_env() -> dict[str, str]:
    """The cluster's addresses for a command run beside a running cluster ({} without one)."""
    cluster = stack_cluster.Cluster.load(STATE)
    return cluster.process_env() if cluster is not None else {}


def up_cluster() -> dict[str, str] | None:
    """Start the cluster if asked for; the environment it gives the processes (None: failed)."""
    try:
        if not stack_cluster.wanted():
            return {}
        print(
            "starting 3 RabbitMQ nodes and a PostgreSQL primary with a streaming standby",
            flush=True,
        )
        cluster = stack_cluster.up(STATE)
    except stack_cluster.ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return None
    timings = ", ".join(f"{k} {v}" for k, v in cluster.timings.items())
    print(f"cluster up ({timings}); state in {cluster.root}")
    return cluster.process_env()


def drill(command: str, args: argparse.Namespace) -> int:
    """One of the cluster's drills; prints what it did as JSON."""
    try:
        if command == "kill-broker-leader":
            result = stack_cluster.kill_broker_leader(STATE, args.queue or queue_name())
        elif command == "restart-broker-node":
            result = stack_cluster.restart_broker_node(STATE, args.node, queue_name())
        elif command == "stop-broker-node":
            result = stack_cluster.stop_broker_node(STATE, args.node)
        elif command == "start-broker-node":
            result = stack_cluster.start_broker_node(STATE, args.node, queue_name())
        else:
            result = stack_cluster.failover_database(STATE)
    except stack_cluster.ClusterError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def add_drills(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    leader = sub.add_parser("kill-broker-leader", help="SIGKILL the node leading the main queue")
    leader.add_argument("--queue", help="queue whose leader to kill (default: CE_QUEUE_NAME)")
    for name, what in (
        ("restart-broker-node", "stop a broker node cleanly and start it again"),
        ("stop-broker-node", "stop a broker node cleanly"),
        ("start-broker-node", "start a stopped or killed broker node"),
    ):
        sub.add_parser(name, help=what).add_argument("node", type=int, choices=(1, 2, 3))
    sub.add_parser(
        "failover-database",
        help="stop the primary hard, promote the standby, rebuild the old primary as standby",
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    st = sub.add_parser("status")
    st.add_argument("--json", action="store_true")
    mk = sub.add_parser("key", help="create an API key and print it (nothing else)")
    mk.add_argument("--tenant", default="default")
    mk.add_argument("--scopes", default="ingest,read", help="comma-separated: ingest,read,admin")
    mk.add_argument("--name", help="default: stack-<tenant>-<random>")
    add_drills(sub)
    args = parser.parse_args()
    if args.command == "key":
        return key(args.tenant, args.scopes, args.name)
    if args.command == "up":
        return up()
    if args.command == "down":
        return down()
    if args.command == "status":
        return status(args.json)
    return drill(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
