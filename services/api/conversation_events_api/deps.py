"""FastAPI dependencies, as `Annotated` aliases.

They are coroutines on purpose: FastAPI runs a plain-function dependency on its thread pool,
and for checks that do no I/O those hand-offs cost more CPU than the checks themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from conversation_events import logs
from conversation_events.access import Principal, Scope
from conversation_events_api import metrics
from conversation_events_api.middleware import PRINCIPAL
from conversation_events_api.overload import within
from conversation_events_api.schemas import NO_NUL
from conversation_events_api.security import presented_key
from conversation_events_api.state import AppState


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ce
    return state


State = Annotated[AppState, Depends(get_state)]
#: A conversation or user id in the path: what the request bodies accept as an id.
PathId = Annotated[str, Path(min_length=1, max_length=255, pattern=NO_NUL)]


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid API key",
        headers={"WWW-Authenticate": 'Bearer realm="conversation-events"'},
    )


def forbidden(scope: Scope) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this key lacks the {scope} scope")


# Declared for the OpenAPI document (clients and tools discover both ways to send the key);
# the check itself reads the headers through `presented_key`.
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)
_BEARER = HTTPBearer(auto_error=False)


async def authenticate(
    request: Request,
    state: State,
    _header: Annotated[str | None, Security(_API_KEY_HEADER)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> Principal:
    """The key's principal; 401 without a valid key. Logs from here on carry the key's name."""
    principal = await within(
        state.settings.request_timeout_s,
        state.keys.authenticate(presented_key(request)),
        "the key lookup",
    )
    if principal is None:
        raise unauthorized()
    logs.key_name.set(principal.name)
    request.scope.setdefault("state", {})[PRINCIPAL] = principal  # for the request log
    return principal


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the principal, if its key has `scope`; else 403 `forbidden`."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.can(scope):
            metrics.FORBIDDEN.labels(principal.name, scope.value).inc()
            raise forbidden(scope)
        return principal

    return check


ApiKey = Depends(authenticate)
Ingest = Annotated[Principal, Depends(require(Scope.INGEST))]
Reader = Annotated[Principal, Depends(require(Scope.READ))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
