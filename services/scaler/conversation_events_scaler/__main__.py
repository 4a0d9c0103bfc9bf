"""``conversation-events-scaler``: the queue-length autoscaler process.

Reads ``CE_*`` / ``CE_SCALER_*`` settings, builds the metric source and the actuator, serves
``/healthz`` and ``/metrics``, and polls until SIGTERM or SIGINT.
On shutdown the local actuator SIGTERMs its workers and waits for them to drain.
With ``CE_SCALER_DELETION_COST=true`` the worker pods' deletion cost is kept beside it; with
``CE_SCALER_MODE=deletion-cost`` that loop runs alone (KEDA scales the workers).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry

from conversation_events import telemetry
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
from conversation_events_scaler.deletion_cost import DeletionCostUpdater, http_in_flight_reader
from conversation_events_scaler.lockfile import AlreadyRunning, FileLock
from conversation_events_scaler.loop import ScalerLoop, ScalerMetrics, StatusFile
from conversation_events_scaler.metrics_source import ManagementApiSource
from conversation_events_scaler.outbox_source import WithOutbox
from conversation_events_scaler.server import http_server
from conversation_events_scaler.settings import ScalerSettings, get_settings

log = logging.getLogger("conversation_events_scaler")


def lock_path(settings: ScalerSettings, queue_name: str) -> Path:
    """The local scaler's lock file (one scaler per queue on this machine)."""
    if settings.lock_file is not None:
        return settings.lock_file
    if settings.status_file is not None:
        status = settings.status_file
        return status.with_name(status.name + ".lock")
    return Path(tempfile.gettempdir()) / f"conversation-events-scaler-{queue_name}.lock"


def build_actuator(settings: ScalerSettings) -> Actuator:
    """The configured actuator: the worker Deployment's scale, or local worker processes."""
    if settings.actuator == "kubernetes":
        from kubernetes import client

        api_client = kubernetes_api_client(settings.kubeconfig)
        namespace = settings.namespace or in_cluster_namespace()
        return KubernetesActuator(
            client.AppsV1Api(api_client),
            namespace,
            settings.deployment,
            timeout_s=settings.kubernetes_timeout_s,
        )
    base_port = settings.worker_http_base_port
    return LocalProcessActuator(
        settings.worker_command or default_worker_command(),
        env=worker_environment(os.environ),
        cwd=settings.worker_cwd,
        http_base_port=base_port,
        grace_s=settings.worker_grace_s,
        log_dir=settings.worker_log_dir,
        in_flight=http_in_flight_probe() if base_port else None,
    )


def build_deletion_cost(settings: ScalerSettings) -> DeletionCostUpdater:
    """The loop that keeps the worker pods' ``pod-deletion-cost`` equal to their work."""
    from kubernetes import client

    api_client = kubernetes_api_client(settings.kubeconfig)
    return DeletionCostUpdater(
        client.CoreV1Api(api_client),
        settings.namespace or in_cluster_namespace(),
        settings.worker_selector,
        settings.worker_http_port,
        read_in_flight=http_in_flight_reader(settings.worker_probe_timeout_s),
        timeout_s=settings.kubernetes_timeout_s,
    )


def run_deletion_cost_only(settings: ScalerSettings) -> int:
    """``CE_SCALER_MODE=deletion-cost``: only the deletion-cost loop, with /healthz."""
    try:
        updater = build_deletion_cost(settings)
    except Exception as exc:  # bad kubeconfig, no service account: say so and stop
        log.error("could not set up the Kubernetes client", extra={"error": repr(exc)})
        return 2
    interval = settings.deletion_cost_interval_s
    try:
        server = http_server(
            settings.http_host, settings.http_port, CollectorRegistry(),
            lambda: updater.healthy(interval),
        ).start()  # fmt: skip
    except OSError as exc:
        log.error("could not serve /healthz", extra={"port": settings.http_port, "error": str(exc)})
        return 2
    stop = _stop_on_signals()
    log.info(
        "pod deletion cost loop started",
        extra={
            "selector": updater.selector,
            "namespace": updater.namespace,
            "interval_s": interval,
        },
    )
    try:
        updater.run(stop, interval)
    finally:
        server.stop()
        log.info("pod deletion cost loop stopped")
    return 0


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="conversation-events-scaler",
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
    process = get_settings()
    settings = process.scaler
    configure_logging("scaler", process.log_level)
    telemetry.configure_tracing("scaler")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll drowns decisions
    policy = settings.scaling_policy()
    if settings.mode == "deletion-cost":
        return run_deletion_cost_only(settings)

    file_lock: FileLock | None = None
    if settings.actuator == "local" and not args.dry_run:
        file_lock = FileLock(lock_path(settings, process.queue_name))
        try:
            file_lock.acquire()
        except AlreadyRunning as exc:
            log.error(str(exc))
            return 2
    try:
        actuator = build_actuator(settings)
        costs = (
            build_deletion_cost(settings)
            if settings.deletion_cost
            and settings.actuator == "kubernetes"
            and not (args.once or args.dry_run)
            else None
        )
    except Exception as exc:  # bad kubeconfig, no service account: say so and stop
        log.error("could not set up the actuator", extra={"error": repr(exc)})
        return 2

    metrics = ScalerMetrics()
    source: ManagementApiSource | WithOutbox = ManagementApiSource(
        settings.management_url,
        settings.vhost,
        process.queue_name,
        user=settings.management_user,
        password=settings.management_password.get_secret_value(),
        timeout_s=settings.management_timeout_s,
    )
    if settings.count_unpublished:
        source = WithOutbox(
            source,
            process.make_engine(pool_size=1, application_name="conversation-events-scaler"),
            limit=math.ceil(policy.max_replicas * policy.target_per_replica),
            errors=metrics.outbox_errors,
        )
    status = None
    if settings.status_file is not None:
        status = StatusFile(
            settings.status_file,
            static={
                "actuator": settings.actuator,
                "queue_name": process.queue_name,
                "vhost": settings.vhost,
            },
        )
    loop = ScalerLoop(
        source=source,
        actuator=actuator,
        policy=policy,
        metrics=metrics,
        polling_interval_s=settings.polling_interval_s,
        fast_polling_interval_s=settings.fast_polling_interval_s,
        status=status,
        dry_run=args.dry_run,
    )
    try:
        # The scaler's health is its own loop's: idle-first scale-in is a refinement, and a
        # stuck deletion-cost thread must not restart the autoscaler.
        server = http_server(
            settings.http_host, settings.http_port, metrics.registry, loop.healthy
        ).start()
    except OSError as exc:
        log.error(
            "could not serve /healthz and /metrics",
            extra={"port": settings.http_port, "error": str(exc)},
        )
        source.close()
        if file_lock:
            file_lock.release()
        return 2

    stop = _stop_on_signals()
    if costs is not None:
        threading.Thread(
            target=costs.run,
            args=(stop, settings.deletion_cost_interval_s),
            name="deletion-cost",
            daemon=True,
        ).start()

    log.info(
        "scaler started",
        extra={
            "actuator": settings.actuator,
            "queue_name": process.queue_name,
            "vhost": settings.vhost,
            "http_port": server.port,
            "dry_run": args.dry_run,
            "deletion_cost": costs is not None,
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
        if file_lock is not None:
            file_lock.release()
        source.close()
        server.stop()
        log.info("scaler stopped")
        telemetry.shutdown()  # export the spans still buffered
    return 0


if __name__ == "__main__":
    sys.exit(main())
