"""FastAPI dependencies, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from conversation_events_api.security import key_is_valid, presented_key
from conversation_events_api.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ce
    return state


State = Annotated[AppState, Depends(get_state)]


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid API key",
        headers={"WWW-Authenticate": 'Bearer realm="conversation-events"'},
    )


def require_api_key(request: Request, state: State) -> None:
    if not key_is_valid(presented_key(request), state.api_keys):
        raise unauthorized()


ApiKey = Depends(require_api_key)
