"""Probes and metrics: `/healthz`, `/readyz`, `/metrics` (no API key: cluster-internal)."""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from conversation_events.persistence.db import in_transaction
from conversation_events_api.deps import State

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="PostgreSQL and RabbitMQ are reachable",
    responses={503: {"description": "Not ready: the body says which dependency is down."}},
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
    def ping() -> None:
        in_transaction(state.engine, lambda conn: conn.execute(text("SELECT 1")))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout=state.settings.db_connect_timeout_s)
        database = "ok"
    except Exception:
        database = "unavailable"
    broker_state = "ok" if state.publisher.connected else "unavailable"
    ready = database == "ok" and (broker_state == "ok" or broker == "optional")
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "database": database, "broker": broker_state},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
