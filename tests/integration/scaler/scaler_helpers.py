"""Helpers shared by the scaler's integration tests (real RabbitMQ, polling with deadlines)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kmock
import pika

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
AUTH = ("guest", "guest")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
PODS = kmock.resource("", "v1", "pods")


def amqp_connection(vhost: str = "/") -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=AMQP_HOST,
        port=AMQP_PORT,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(*AUTH),
        connection_attempts=3,
        retry_delay=1,
    )
    return pika.BlockingConnection(params)


def declare_quorum_queue(channel: Any, name: str) -> None:
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})


def publish(channel: Any, queue: str, count: int) -> None:
    """Publish ``count`` persistent messages with publisher confirms."""
    channel.confirm_delivery()
    for i in range(count):
        channel.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))


# A stand-in worker: records start, SIGTERM and the end of its drain in <out>/<pid>.jsonl.
# Mode "stubborn" ignores SIGTERM (to test the kill after the grace period).
STAND_IN = r"""
import json, os, signal, sys, time
out, mode = sys.argv[1], sys.argv[2]

def record(event):
    with open(os.path.join(out, f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps({"event": event, "port": os.environ["CE_WORKER_HTTP_PORT"],
                            "marker": os.environ.get("MARKER"), "cwd": os.getcwd()}) + "\n")

def on_term(signum, frame):
    record("sigterm")
    if mode == "stubborn":
        return
    time.sleep(float(os.environ.get("DRAIN_S", "0")))  # finishing in-flight work
    record("drained")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
record("started")
while True:
    signal.pause()
"""


@dataclass
class Cluster:
    """An in-memory Kubernetes API on a real local port."""

    emulator: kmock.KubernetesEmulator
    url: str

    def add_deployment(self, name: str, replicas: int, namespace: str = "ce") -> None:
        self.emulator.objects[DEPLOYMENTS, namespace, name] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
            "status": {"replicas": replicas},
        }

    def add_pod(
        self,
        name: str,
        ip: str | None,
        labels: dict[str, str],
        *,
        phase: str = "Running",
        annotations: dict[str, str] | None = None,
        namespace: str = "ce",
        deleting: bool = False,
    ) -> None:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
        if annotations:
            metadata["annotations"] = annotations
        if deleting:
            metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        status: dict[str, Any] = {"phase": phase}
        if ip:
            status["podIP"] = ip
        self.emulator.objects[PODS, namespace, name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": [{"name": "worker", "image": "worker"}]},
            "status": status,
        }

    def annotations(self, name: str, namespace: str = "ce") -> dict[str, str]:
        return dict(self.emulator.objects[PODS, namespace, name]["metadata"].get("annotations", {}))

    def replicas(self, name: str, namespace: str = "ce") -> int:
        return int(self.emulator.objects[DEPLOYMENTS, namespace, name]["spec"]["replicas"])

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request served so far."""
        return [(str(r.method.value).upper(), r.url.path) for r in self.emulator]


@contextlib.contextmanager
def kubernetes_emulator() -> Iterator[Cluster]:
    """kmock's Kubernetes emulator served from its own event loop in a background thread
    (the kubernetes client is synchronous and would block a shared loop)."""
    ready: concurrent.futures.Future[Cluster] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:

            def scale_of(request: kmock.Request) -> dict[str, Any]:
                assert request.name is not None
                key = (DEPLOYMENTS, request.namespace, request.name)
                if key not in emulator.objects or emulator.objects[key].deleted:
                    raise kmock.KubernetesObjectNotFoundError()
                deployment = emulator.objects[key]
                return {
                    "apiVersion": "autoscaling/v1",
                    "kind": "Scale",
                    "metadata": {"name": request.name, "namespace": request.namespace},
                    "spec": {"replicas": deployment["spec"]["replicas"]},
                    "status": {
                        "replicas": deployment.get("status", {}).get("replicas", 0),
                        "selector": f"app={request.name}",
                    },
                }

            # Below the tests' own reactions (priority 0), above the emulator's fallbacks.
            (emulator**-1)["get", DEPLOYMENTS, kmock.subresource("scale")] << scale_of
            ready.set_result(Cluster(emulator, str(server.url).rstrip("/")))
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield ready.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
