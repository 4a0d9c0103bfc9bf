"""FastAPI dependencies, as `Annotated` aliases.

They are coroutines on purpose: FastAPI runs a plain-function dependency on its thread pool,
and for checks that do no I/O those hand-offs cost more CPU than the checks themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from conversation_events_api.security import key_is_valid, presented_key
from conversation_events_api.state import AppState


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ce
    return state


State = Annotated[AppState, Depends(get_state)]


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid API key",
        headers={"WWW-Authenticate": 'Bearer realm="conversation-events"'},
    )


# Declared for the OpenAPI document (clients and tools discover both ways to send the key);
# the check itself reads the headers through `presented_key`.
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)
_BEARER = HTTPBearer(auto_error=False)


async def require_api_key(
    request: Request,
    state: State,
    _header: Annotated[str | None, Security(_API_KEY_HEADER)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> None:
    if not key_is_valid(presented_key(request), state.api_keys):
        raise unauthorized()


ApiKey = Depends(require_api_key)
