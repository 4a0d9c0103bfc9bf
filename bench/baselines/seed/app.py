"""The design note's API, taken literally (section 8.1.1 and 8.2.1 of the seed note).

An `async def` endpoint that stores the event (status PENDING) and then publishes it through
`pika.BlockingConnection`: a new connection per request, declare the durable queue, publish
persistently, close. Both calls block the event loop, as in the note. It stores the same row as
our API (same schema and insert function) so only the architecture differs.

Run: `uvicorn bench.baselines.seed.app:app` with BENCH_DATABASE_URL, BENCH_AMQP_URL,
BENCH_QUEUE and BENCH_API_KEY in the environment.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import orjson
import pika
from fastapi import Depends, FastAPI, Header, HTTPException

from bench.baselines.common import engine as baseline_engine
from conversation_events.persistence.events import NewEvent, insert_events
from conversation_events_api.schemas import ConversationEndRequest

logger = logging.getLogger(__name__)

QUEUE_NAME = os.environ.get("BENCH_QUEUE", "conversation_events_processing")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
engine = baseline_engine("bench-seed-api", pool_size=10)
app = FastAPI()


def check_key(x_api_key: str = Header("")) -> None:
    if x_api_key != os.environ.get("BENCH_API_KEY"):
        raise HTTPException(401)


def create_event_without_processing(request: ConversationEndRequest) -> NewEvent:
    """The note's `service.create_event_without_processing`: one INSERT, one commit."""
    event = request.to_event()
    with engine.begin() as conn:
        insert_events(conn, [event])
    return event


def publish_conversation_event(event: NewEvent) -> None:
    """The note's `rabbitmq_publisher`: a BlockingConnection per message."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.queue_declare(queue=QUEUE_NAME, durable=True)
        channel.basic_publish(
            exchange="",
            routing_key=QUEUE_NAME,
            body=orjson.dumps(
                {
                    "event_id": event.id,
                    "conversation_id": event.conversation_id,
                    "user_id": event.user_id,
                    "bot_id": event.bot_id,
                    "conversation_log": event.conversation_log,
                    "enqueued_at": datetime.now(UTC).isoformat(),
                }
            ),
            properties=pika.BasicProperties(delivery_mode=2),
        )
    finally:
        connection.close()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/conversations/end", status_code=202, dependencies=[Depends(check_key)])
async def conversation_end(request: ConversationEndRequest) -> dict[str, str]:
    try:
        event = create_event_without_processing(request)  # STEP 1: store, status PENDING
        publish_conversation_event(event)  # STEP 2: publish
        return {  # STEP 3: 202 at once
            "status": "accepted",
            "message": "Conversation event accepted for processing",
            "conversation_id": event.conversation_id,
            "event_id": event.id,
        }
    except Exception as e:
        logger.error(f"Error in conversation_end: {e!s}")
        raise HTTPException(status_code=500, detail=str(e)) from e
