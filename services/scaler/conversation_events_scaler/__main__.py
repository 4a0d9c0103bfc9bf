"""``python -m conversation_events_scaler``: the queue-length autoscaler process.

Reads ``CE_*`` / ``CE_SCALER_*`` settings, builds the metric source, the actuator and the
leadership guard, serves ``/healthz`` and ``/metrics``, and polls until SIGTERM or SIGINT.
On shutdown the local actuator SIGTERMs its workers and waits for them to drain.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from conversation_events.logs import configure_logging
from conversation_events_scaler.actuators import (
    Actuator,
    KubernetesActuator,
    LocalProcessActuator,
    default_worker_command,
    http_in_flight_probe,
    in_cluster_namespace,
    kubernetes_api_client,
    worker_environment,
)
from conversation_events_scaler.leadership import AlreadyRunning, FileLock, Leadership, LeaseLock
from conversation_events_scaler.loop import ScalerLoop, ScalerMetrics, StatusFile
from conversation_events_scaler.metrics_source import ManagementApiSource
from conversation_events_scaler.server import HttpServer
from conversation_events_scaler.settings import ScalerSettings, get_settings

log = logging.getLogger("conversation_events_scaler")


def lock_path(settings: ScalerSettings) -> Path:
    """The local scaler's lock file (one scaler per queue on this machine)."""
    if settings.scaler_lock_file is not None:
        return settings.scaler_lock_file
    if settings.scaler_status_file is not None:
        status = settings.scaler_status_file
        return status.with_name(status.name + ".lock")
    return Path(tempfile.gettempdir()) / f"conversation-events-scaler-{settings.queue_name}.lock"


def build_actuator(settings: ScalerSettings) -> tuple[Actuator, Leadership | None]:
    """The configured actuator, and the leader election the loop must pass (Kubernetes)."""
    if settings.scaler_actuator == "kubernetes":
        from kubernetes import client

        api_client = kubernetes_api_client(settings.scaler_kubeconfig)
        namespace = settings.scaler_namespace or in_cluster_namespace()
        actuator = KubernetesActuator(
            client.AppsV1Api(api_client),
            namespace,
            settings.scaler_deployment,
            timeout_s=settings.scaler_kubernetes_timeout_s,
        )
        if not settings.scaler_leader_election:
            return actuator, None
        identity = settings.scaler_identity or f"{socket.gethostname()}-{os.getpid()}"
        lease = LeaseLock(
            client.CoordinationV1Api(api_client),
            namespace,
            settings.scaler_lease_name,
            identity,
            duration_s=settings.scaler_lease_duration_s,
            timeout_s=settings.scaler_kubernetes_timeout_s,
        )
        return actuator, lease
    base_port = settings.scaler_worker_http_base_port
    local = LocalProcessActuator(
        settings.scaler_worker_command or default_worker_command(),
        env=worker_environment(os.environ, pythonpath=settings.scaler_worker_pythonpath),
        cwd=settings.scaler_worker_cwd,
        http_base_port=base_port,
        grace_s=settings.scaler_worker_grace_s,
        log_dir=settings.scaler_worker_log_dir,
        in_flight=http_in_flight_probe() if base_port else None,
    )
    return local, None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conversation_events_scaler",
        description="Scale the workers on the queue's ready + unacked messages.",
    )
    parser.add_argument(
        "--once", action="store_true", help="poll once, print the decision as JSON, exit"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="decide and log, but never change the replicas (to try settings on a live queue)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    configure_logging("scaler", settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll drowns decisions
    policy = settings.scaling_policy()

    file_lock: FileLock | None = None
    if settings.scaler_actuator == "local" and not args.dry_run:
        file_lock = FileLock(lock_path(settings))
        try:
            file_lock.acquire()
        except AlreadyRunning as exc:
            log.error(str(exc))
            return 2
    try:
        actuator, leadership = build_actuator(settings)
    except Exception as exc:  # bad kubeconfig, no service account: say so and stop
        log.error("could not set up the actuator", extra={"error": repr(exc)})
        return 2

    source = ManagementApiSource(
        settings.scaler_management_url,
        settings.scaler_vhost,
        settings.queue_name,
        user=settings.scaler_management_user,
        password=settings.scaler_management_password.get_secret_value(),
        timeout_s=settings.scaler_management_timeout_s,
    )
    status = None
    if settings.scaler_status_file is not None:
        status = StatusFile(
            settings.scaler_status_file,
            static={
                "actuator": settings.scaler_actuator,
                "queue_name": settings.queue_name,
                "vhost": settings.scaler_vhost,
            },
        )
    metrics = ScalerMetrics()
    loop = ScalerLoop(
        source=source,
        actuator=actuator,
        policy=policy,
        metrics=metrics,
        polling_interval_s=settings.scaler_polling_interval_s,
        fast_polling_interval_s=settings.scaler_fast_polling_interval_s,
        leadership=leadership,
        status=status,
        dry_run=args.dry_run,
    )
    try:
        server = HttpServer(
            settings.scaler_http_host, settings.scaler_http_port, metrics.registry, loop.healthy
        ).start()
    except OSError as exc:
        log.error(
            "could not serve /healthz and /metrics",
            extra={"port": settings.scaler_http_port, "error": str(exc)},
        )
        source.close()
        if file_lock:
            file_lock.release()
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log.info(
        "scaler started",
        extra={
            "actuator": settings.scaler_actuator,
            "queue_name": settings.queue_name,
            "vhost": settings.scaler_vhost,
            "http_port": server.port,
            "dry_run": args.dry_run,
            "policy": asdict(policy),
        },
    )
    try:
        if args.once:
            loop.tick()
            decision = loop.last_decision
            print(
                json.dumps({"decision": decision and decision.reason, "change": loop.last_change})
            )
        else:
            loop.run(stop)
    finally:
        actuator.close()  # local: SIGTERM every worker and wait for them to drain
        loop.write_stopped_status()
        if leadership is not None:
            leadership.release()
        if file_lock is not None:
            file_lock.release()
        source.close()
        server.stop()
        log.info("scaler stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
