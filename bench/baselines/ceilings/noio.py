"""Ceiling of the HTTP layer: our endpoint with the storage and the publish taken out.

Same FastAPI, uvicorn (uvloop, httptools), middleware, API-key check, request validation
(`read_json_body`), canonical form, content hash and orjson response as
`POST /v1/conversations/end`; no database, no broker. No implementation of the endpoint can
beat it on this machine.

Run: `uvicorn bench.baselines.ceilings.noio:app` with BENCH_API_KEY in the environment.
"""

from __future__ import annotations

import os

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response

from conversation_events_api.body import read_json_body
from conversation_events_api.middleware import EdgeMiddleware, InFlight
from conversation_events_api.schemas import ConversationEndRequest
from conversation_events_api.security import key_is_valid, presented_key
from conversation_events_api.settings import ApiSettings

_KEYS = [os.environ.get("BENCH_API_KEY", "").encode()]
app = FastAPI()
_EDGE = ApiSettings.model_fields  # the API's own edge limits, so the ceiling is comparable
app.add_middleware(
    EdgeMiddleware,
    max_body_bytes=_EDGE["max_body_bytes"].default,
    max_batch_body_bytes=_EDGE["max_batch_body_bytes"].default,
    in_flight=InFlight(_EDGE["max_in_flight"].default),
    client_timeout_s=_EDGE["client_timeout_s"].default,
    retry_after_s=_EDGE["retry_after_s"].default,
)


def check_key(request: Request) -> None:
    if not key_is_valid(presented_key(request), _KEYS):
        raise HTTPException(401)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/conversations/end", status_code=202, dependencies=[Depends(check_key)])
async def conversation_end(request: Request) -> Response:
    payload = await read_json_body(request, ConversationEndRequest)
    event = payload.to_event()  # the row ours stores: canonical form, hash, serialised log
    body = {
        "status": "accepted",
        "conversation_id": payload.conversation_id,
        "event_id": event.id,
        "status_url": f"/v1/conversations/{payload.conversation_id}",
    }
    return Response(orjson.dumps(body), 202, media_type="application/json")
