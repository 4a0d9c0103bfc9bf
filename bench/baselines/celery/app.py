"""The Celery build's API: the same endpoint and row as ours, then `task.delay(event_id)`.

A plain `def` endpoint (FastAPI runs it in its thread pool) with a pooled engine: one INSERT
and commit per request, then Celery publishes the task message through its broker pool.

Run: `uvicorn bench.baselines.celery.app:app` with BENCH_DATABASE_URL, BENCH_AMQP_URL,
BENCH_QUEUE and BENCH_API_KEY in the environment.
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI, Header, HTTPException

from bench.baselines.celery.tasks import process_conversation_event
from bench.baselines.common import engine as baseline_engine
from conversation_events.persistence.events import InsertStatus, insert_events
from conversation_events_api.schemas import ConversationEndRequest

engine = baseline_engine("bench-celery-api", pool_size=20)
app = FastAPI()


def check_key(x_api_key: str = Header("")) -> None:
    if x_api_key != os.environ.get("BENCH_API_KEY"):
        raise HTTPException(401)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/conversations/end", status_code=202, dependencies=[Depends(check_key)])
def conversation_end(payload: ConversationEndRequest) -> dict[str, str]:
    event = payload.to_event()
    with engine.begin() as conn:
        [outcome] = insert_events(conn, [event])
    if outcome.status is InsertStatus.CONFLICT:
        raise HTTPException(409, "conversation id re-used with other content")
    if outcome.status is InsertStatus.CREATED:
        process_conversation_event.delay(outcome.event_id)
    return {
        "status": "accepted",
        "conversation_id": payload.conversation_id,
        "event_id": outcome.event_id,
        "status_url": f"/v1/conversations/{payload.conversation_id}",
    }
