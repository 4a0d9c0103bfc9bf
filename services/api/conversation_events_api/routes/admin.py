"""`/v1/admin/keys`: create, list and revoke API keys without a restart (`admin` scope).

An admin key manages its own tenant's keys; a bootstrap key (`CE_API_KEYS`) those of every
tenant (it exists to create the first ones). A revoked key is refused by every API process
within `CE_API_KEY_CACHE_S`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from conversation_events.access import KEY_NAME_PATTERN, TENANT_PATTERN, Principal, Scope
from conversation_events.persistence import keys as key_repo
from conversation_events.persistence.db import in_transaction, translate_errors
from conversation_events_api.deps import Admin, State
from conversation_events_api.schemas import NO_KEY, NOT_ADMIN, error_responses

log = logging.getLogger(__name__)

# Operator routes stay out of the public OpenAPI document (docs/operations.md describes them):
# clients have no use for them, and a tool that exercises every documented operation (a
# fuzzer, a generated client's tests) must not create keys or erase users.
router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], include_in_schema=False)

_ERRORS = {401: NO_KEY, 403: NOT_ADMIN, 503: "PostgreSQL unreachable."}

Tenant = Annotated[str, Field(pattern=TENANT_PATTERN)]


class NewKey(BaseModel):
    name: Annotated[str, Field(pattern=KEY_NAME_PATTERN, description="Unique among live keys.")]
    tenant: Tenant | None = Field(None, description="Default: the calling key's tenant.")
    scopes: list[Scope] = Field(min_length=1)


class KeyView(BaseModel):
    id: str
    name: str
    tenant: str
    scopes: list[str]
    key_prefix: str = Field(description="The key's first characters, to recognise it.")
    created_at: datetime
    revoked_at: datetime | None


class CreatedKey(KeyView):
    key: str = Field(description="The key itself: shown this once, stored only as a hash.")


def _tenant_for(principal: Principal, wanted: str | None) -> str:
    """The tenant `principal` acts on; only bootstrap keys may name another one."""
    tenant = wanted or principal.tenant
    if tenant != principal.tenant and not principal.bootstrap:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="this key manages its own tenant's keys only"
        )
    return tenant


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses({**_ERRORS, 409: "Name in use."}),
    summary="Create an API key (shown once)",
)
async def create_key(body: NewKey, state: State, principal: Admin) -> CreatedKey:
    tenant = _tenant_for(principal, body.tenant)

    def create() -> tuple[str, key_repo.KeyInfo]:
        with translate_errors():
            return in_transaction(
                state.engine,
                lambda conn: key_repo.create_key(conn, body.name, tenant, set(body.scopes)),
            )

    try:
        key, info = await asyncio.to_thread(create)
    except key_repo.DuplicateKeyName as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    log.info(
        "api key created",
        extra={"key_created": info.name, "tenant": info.tenant, "scopes": info.scopes},
    )
    return CreatedKey(key=key, **vars_of(info))


@router.get("", responses=error_responses(_ERRORS), summary="List live API keys")
async def list_keys(
    state: State,
    principal: Admin,
    tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN)] = None,
    include_revoked: bool = False,
) -> list[KeyView]:
    """The tenant's keys (never the keys themselves); bootstrap keys see every tenant's."""
    scope: str | None = _tenant_for(principal, tenant)
    if principal.bootstrap and tenant is None:
        scope = None

    def load() -> list[key_repo.KeyInfo]:
        with translate_errors():
            return in_transaction(
                state.engine,
                lambda conn: key_repo.list_keys(conn, scope, include_revoked=include_revoked),
            )

    return [KeyView(**vars_of(info)) for info in await asyncio.to_thread(load)]


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses({**_ERRORS, 404: "No live key of that name."}),
    summary="Revoke an API key",
)
async def revoke_key(
    name: Annotated[str, Path(pattern=KEY_NAME_PATTERN)],
    state: State,
    principal: Admin,
    tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN)] = None,
) -> Response:
    """Refused by every API process within `CE_API_KEY_CACHE_S` seconds."""
    owner = _tenant_for(principal, tenant)

    def revoke() -> key_repo.KeyInfo | None:
        with translate_errors():
            return in_transaction(state.engine, lambda conn: key_repo.revoke_key(conn, owner, name))

    if await asyncio.to_thread(revoke) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no live key of that name")
    log.info("api key revoked", extra={"key_revoked": name, "tenant": owner})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def vars_of(info: key_repo.KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "tenant": info.tenant,
        "scopes": info.scopes,
        "key_prefix": info.key_prefix,
        "created_at": info.created_at,
        "revoked_at": info.revoked_at,
    }
