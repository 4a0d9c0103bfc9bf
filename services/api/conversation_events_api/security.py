"""API keys: read from the request, resolved to a `Principal` (name, tenant, scopes).

Bootstrap keys (`CE_API_KEYS`) are known without the database: every scope in the default
tenant. Other keys are looked up by their sha256 in PostgreSQL and cached for `ttl_s`, so a
revoked key is refused by every API process within that time, and a hot key costs one query
per process per `ttl_s`. Unknown keys are cached too (a flood of wrong keys does not become a
flood of queries), in a bounded cache.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from fastapi import Request
from sqlalchemy import Engine

from conversation_events.access import (
    ALL_SCOPES,
    DEFAULT_TENANT,
    MIN_KEY_LENGTH,
    Principal,
    key_hash,
)
from conversation_events.errors import RetryableError
from conversation_events.persistence import keys as key_repo
from conversation_events.persistence.db import in_transaction, translate_errors

log = logging.getLogger(__name__)

#: Longer presented keys are refused unseen (no hashing of megabyte headers).
MAX_KEY_LENGTH = 512


def presented_key(request: Request) -> str | None:
    """The key from `X-API-Key`, else from `Authorization: Bearer <key>`."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_is_valid(presented: str | None, keys: list[bytes]) -> bool:
    """Compare with every key (no early exit), so timing does not reveal which one matched.

    The plain check of a fixed key list (the benchmarks' no-I/O ceiling uses it).
    """
    if presented is None:
        return False
    candidate = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


class KeyRing:
    """Resolves presented keys to principals; one per API process."""

    def __init__(
        self,
        bootstrap_keys: list[str],
        engine: Engine | None,
        *,
        ttl_s: float,
        max_cached: int = 10_000,
    ) -> None:
        self._bootstrap = [
            (key_hash(key).encode(), Principal(f"bootstrap-{n}", DEFAULT_TENANT, ALL_SCOPES, True))
            for n, key in enumerate(bootstrap_keys, start=1)
        ]
        self._engine = engine
        self._ttl_s = ttl_s
        self._max_cached = max_cached
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}

    def bootstrap(self, presented: str | None) -> Principal | None:
        """The bootstrap principal of `presented`, compared with every bootstrap key's hash."""
        if not _plausible(presented):
            return None
        assert presented is not None
        candidate = key_hash(presented).encode()
        found: Principal | None = None
        for stored, principal in self._bootstrap:  # no early exit: timing reveals nothing
            if hmac.compare_digest(candidate, stored):
                found = principal
        return found

    async def authenticate(self, presented: str | None) -> Principal | None:
        """Who `presented` acts for, or None; `RetryableError` when PostgreSQL cannot say."""
        found = self.bootstrap(presented)
        if found is not None or not _plausible(presented) or self._engine is None:
            return found
        assert presented is not None
        hashed = key_hash(presented)
        cached = self._cache.get(hashed)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        pending = self._lookups.get(hashed)
        if pending is not None:  # one query per key at a time, however many requests wait
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._lookups[hashed] = future
        try:
            principal = await asyncio.to_thread(self._lookup, hashed)
        except RetryableError as exc:
            # Nobody can revoke a key while PostgreSQL is unreachable: the last answer holds.
            if cached is not None:
                future.set_result(cached[0])
                return cached[0]
            _fail(future, exc)
            raise
        except BaseException as exc:  # also a cancelled lookup (the request's deadline)
            _fail(future, exc if isinstance(exc, Exception) else RetryableError("key lookup"))
            raise
        finally:
            del self._lookups[hashed]
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        self._cache[hashed] = (principal, time.monotonic() + self._ttl_s)
        future.set_result(principal)
        return principal

    def _lookup(self, hashed: str) -> Principal | None:
        assert self._engine is not None
        engine = self._engine
        with translate_errors():
            return in_transaction(engine, lambda conn: key_repo.find_principal(conn, hashed))


def _fail(future: asyncio.Future[Principal | None], exc: Exception) -> None:
    """Hand `exc` to the requests waiting on the same lookup (marked retrieved: maybe none)."""
    future.set_exception(exc)
    future.exception()


def _plausible(presented: str | None) -> bool:
    return presented is not None and MIN_KEY_LENGTH <= len(presented) <= MAX_KEY_LENGTH
