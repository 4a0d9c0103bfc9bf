"""API key management from the command line, where the API runs (same environment).

    conversation-events-keys create --name NAME [--tenant T] --scopes ingest,read
    conversation-events-keys list [--tenant T] [--include-revoked]
    conversation-events-keys revoke --name NAME [--tenant T]

`create` prints the new key with what is stored of it as one JSON line (`--key-only`: the key
alone, nothing else); the key is shown this once and stored only as its sha256. `revoke` takes
effect on every API process within `CE_API_KEY_CACHE_S` seconds. Tenants default to `default`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from conversation_events.access import (
    DEFAULT_TENANT,
    parse_scopes,
    valid_key_name,
    valid_tenant,
)
from conversation_events.cli import command_engine, command_parser, print_json
from conversation_events.persistence import keys as key_repo
from conversation_events.persistence.db import translate_errors
from conversation_events_api.settings import ApiSettings


def _tenant(value: str) -> str:
    if not valid_tenant(value):
        raise argparse.ArgumentTypeError("lower-case letters, digits and dashes, at most 63")
    return value


def _name(value: str) -> str:
    if not valid_key_name(value):
        raise argparse.ArgumentTypeError("letters, digits, '.', '_' and '-', at most 100")
    return value


def _scopes(value: str) -> frozenset[str]:
    try:
        return frozenset(parse_scopes(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = command_parser("conversation-events-keys", __doc__)
    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", type=_name, required=True)
    create.add_argument("--tenant", type=_tenant, default=DEFAULT_TENANT)
    create.add_argument("--scopes", type=_scopes, required=True, help="e.g. ingest,read,admin")
    create.add_argument("--key-only", action="store_true", help="print the key and nothing else")
    listing = sub.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant", type=_tenant, help="default: every tenant")
    listing.add_argument("--include-revoked", action="store_true")
    revoke = sub.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("--name", type=_name, required=True)
    revoke.add_argument("--tenant", type=_tenant, default=DEFAULT_TENANT)
    args = parser.parse_args(argv)

    with (
        command_engine(ApiSettings(), "keys") as engine,
        translate_errors(),
        engine.begin() as conn,
    ):
        if args.command == "create":
            try:
                key, info = key_repo.create_key(conn, args.name, args.tenant, args.scopes)
            except key_repo.DuplicateKeyName as exc:
                sys.stderr.write(f"{exc}\n")
                return 1
            if args.key_only:
                sys.stdout.write(key + "\n")
                return 0
            out: object = {"key": key, **info.as_json()}
        elif args.command == "list":
            keys = key_repo.list_keys(conn, args.tenant, include_revoked=args.include_revoked)
            out = [info.as_json() for info in keys]
        else:
            revoked = key_repo.revoke_key(conn, args.tenant, args.name)
            if revoked is None:
                sys.stderr.write(f"tenant {args.tenant} has no live key named {args.name}\n")
                return 1
            out = revoked.as_json()
    print_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
