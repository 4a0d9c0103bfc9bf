"""API keys, tenants and scopes: the rules, without storage.

A key is `ce_` followed by 43 URL-safe random characters (256 bits): long enough that it cannot
be guessed, and with a prefix secret scanners can match. Only its sha256 is stored; a presented
key is found by its hash, so no stored secret is ever compared character by character.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

#: The tenant of the single-client setup, and of the bootstrap keys from `CE_API_KEYS`.
DEFAULT_TENANT = "default"
#: Lower-case letters, digits and dashes, starting with a letter or digit; at most 63 chars.
TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: Key names: what logs and metrics carry instead of the key.
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: Every generated key starts with this (secret scanners look for it).
KEY_PREFIX = "ce_"
#: Shortest key accepted at all, generated or bootstrap: anything shorter is refused unseen.
MIN_KEY_LENGTH = 16
_RANDOM_BYTES = 32


class Scope(StrEnum):
    INGEST = "ingest"  # post conversations
    READ = "read"  # event status and friendship reads
    ADMIN = "admin"  # erasure, export, key management


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the key's name, its tenant and what it may do.

    `bootstrap` keys (from `CE_API_KEYS`) have every scope in the default tenant and may also
    manage keys of other tenants: they exist to create the first keys.
    """

    name: str
    tenant: str
    scopes: frozenset[Scope]
    bootstrap: bool = False

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


def generate_key() -> str:
    """A new key: the prefix and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def key_hash(key: str) -> str:
    """The stored form of a key (hex sha256): a high-entropy key needs no slow hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str) -> frozenset[Scope]:
    """`ingest,read` → the scopes; an unknown or missing scope raises ValueError."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("at least one scope is needed (ingest, read, admin)")
    try:
        return frozenset(Scope(name) for name in names)
    except ValueError:
        unknown = sorted(set(names) - {s.value for s in Scope})
        known = "ingest, read, admin"
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {known}") from None


def valid_tenant(tenant: str) -> bool:
    return re.fullmatch(TENANT_PATTERN, tenant) is not None


def valid_key_name(name: str) -> bool:
    return re.fullmatch(KEY_NAME_PATTERN, name) is not None


def subject_hash(tenant: str, user_id: str) -> str:
    """The pseudonymous identity of an erased user: an erasure's tombstone keeps only this."""
    return hashlib.sha256(f"{tenant}\x00{user_id}".encode()).hexdigest()
