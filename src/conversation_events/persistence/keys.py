"""Repository functions for `api_keys`: create, list, revoke, and find a key by its hash."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from conversation_events.access import Principal, Scope, generate_key, key_hash
from conversation_events.persistence.tables import api_keys

#: Characters of a key shown in listings (the prefix and a few random ones): enough to tell
#: keys apart, far too few to use.
SHOWN_CHARACTERS = 10


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A stored key as listings show it: never the key itself."""

    id: str
    name: str
    tenant: str
    scopes: list[str]
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: RowMapping) -> KeyInfo:
        """The listing of an `api_keys` row (its columns of these names; the hash is not one)."""
        stored = {f.name: row[f.name] for f in fields(cls)}
        return cls(**{**stored, "id": str(row["id"]), "scopes": sorted(row["scopes"])})

    def as_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


class DuplicateKeyName(ValueError):
    """The tenant already has a live key of that name."""


def create_key(
    conn: Connection, name: str, tenant: str, scopes: Collection[Scope]
) -> tuple[str, KeyInfo]:
    """A new key for `tenant`; returns the key (shown this once) and what is stored of it."""
    exists = conn.execute(
        select(api_keys.c.id).where(
            api_keys.c.tenant == tenant, api_keys.c.name == name, api_keys.c.revoked_at.is_(None)
        )
    ).first()
    if exists is not None:
        raise DuplicateKeyName(f"tenant {tenant} already has a key named {name}")
    key = generate_key()
    row = (
        conn.execute(
            insert(api_keys)
            .values(
                id=str(uuid.uuid4()),
                name=name,
                tenant=tenant,
                scopes=sorted(s.value for s in scopes),
                key_hash=key_hash(key),
                key_prefix=key[:SHOWN_CHARACTERS],
            )
            .returning(*api_keys.c)
        )
        .mappings()
        .one()
    )
    return key, KeyInfo.of(row)


def list_keys(
    conn: Connection, tenant: str | None = None, *, include_revoked: bool = False
) -> list[KeyInfo]:
    """The keys of `tenant` (every tenant's when None), oldest first."""
    query = select(api_keys).order_by(api_keys.c.tenant, api_keys.c.created_at)
    if tenant is not None:
        query = query.where(api_keys.c.tenant == tenant)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return [KeyInfo.of(row) for row in conn.execute(query).mappings()]


def revoke_key(conn: Connection, tenant: str, name: str) -> KeyInfo | None:
    """Revoke the tenant's live key `name`; None when it has none of that name."""
    row = (
        conn.execute(
            update(api_keys)
            .where(
                api_keys.c.tenant == tenant,
                api_keys.c.name == name,
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
            .returning(*api_keys.c)
        )
        .mappings()
        .first()
    )
    return None if row is None else KeyInfo.of(row)


def find_principal(conn: Connection, hashed: str) -> Principal | None:
    """Who the live key with this hash acts for; None when unknown or revoked."""
    row = conn.execute(
        select(api_keys.c.name, api_keys.c.tenant, api_keys.c.scopes).where(
            api_keys.c.key_hash == hashed, api_keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    known = {scope.value for scope in Scope}
    scopes = frozenset(Scope(s) for s in row.scopes if s in known)
    return Principal(name=row.name, tenant=row.tenant, scopes=scopes)
