"""Probes and metrics: `/healthz`, `/readyz`, `/metrics` (no API key: cluster-internal)."""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from conversation_events.persistence.db import in_transaction
from conversation_events_api.deps import State

router = APIRouter(tags=["operations"])
_WRITABLE = text(
    "SELECT pg_is_in_recovery() AS in_recovery,"
    " current_setting('transaction_read_only') AS read_only"
)


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="PostgreSQL accepts writes and RabbitMQ is reachable",
    responses={
        503: {
            "description": (
                "Not ready: the body says which dependency is down (`database` is "
                "`unavailable`, or `read_only` on a standby or a read-only database)."
            )
        }
    },
)
async def readyz(
    state: State,
    broker: Literal["required", "optional"] = Query(
        "required",
        description=(
            "`optional` reports a broker outage without failing: the API keeps accepting "
            "events during one (they wait in the outbox), so a load balancer should keep it."
        ),
    ),
) -> JSONResponse:
    def writable() -> bool:
        # Reachable is not enough: a standby after a failover, or a database set to
        # default_transaction_read_only, refuses every insert (SQLSTATE 25006).
        row = in_transaction(state.engine, lambda conn: conn.execute(_WRITABLE).one())
        return not row.in_recovery and row.read_only == "off"

    try:
        ok = await asyncio.wait_for(
            asyncio.to_thread(writable), timeout=state.settings.db_connect_timeout_s
        )
        database = "ok" if ok else "read_only"
    except Exception:
        database = "unavailable"
    broker_state = "ok" if state.publisher.connected else "unavailable"
    ready = database == "ok" and (broker_state == "ok" or broker == "optional")
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "database": database, "broker": broker_state},
        status_code=200 if ready else 503,
    )


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: this process's, or every worker process's in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated __init__
        return registry
    return REGISTRY


@router.get(
    "/metrics",
    summary="Prometheus metrics (here unless CE_METRICS_PORT serves them on a port of their own)",
    response_class=Response,
    responses={404: {"description": "Served on CE_METRICS_PORT instead."}},
)
async def prometheus_metrics(state: State) -> Response:
    if state.settings.metrics_port:
        raise HTTPException(404, detail="metrics are served on their own port")
    return Response(generate_latest(metrics_registry()), media_type=CONTENT_TYPE_LATEST)
