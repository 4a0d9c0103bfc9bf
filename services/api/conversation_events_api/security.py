"""API key check: constant-time comparison against every configured key."""

from __future__ import annotations

import hmac

from fastapi import Request


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
    """Compare with every key (no early exit), so timing does not reveal which one matched."""
    if presented is None:
        return False
    candidate = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched
