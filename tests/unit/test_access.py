"""Keys, scopes and the message's tenant: the rules without storage."""

from __future__ import annotations

import logging

import orjson
import pytest

from conversation_events import logs
from conversation_events.access import (
    MIN_KEY_LENGTH,
    Scope,
    generate_key,
    key_hash,
    parse_scopes,
    subject_hash,
    valid_tenant,
)
from conversation_events_api.settings import ApiSettings


def test_generated_keys_are_prefixed_long_and_distinct() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("ce_") and len(k) >= 40 >= MIN_KEY_LENGTH for k in keys)
    assert all(len(key_hash(k)) == 64 and key_hash(k) != k for k in keys)


def test_scopes_parse_and_unknown_ones_are_refused() -> None:
    assert parse_scopes("ingest, read") == {Scope.INGEST, Scope.READ}
    with pytest.raises(ValueError, match="root"):
        parse_scopes("read,root")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")


@pytest.mark.parametrize(
    ("tenant", "ok"),
    [("default", True), ("acme-2", True), ("Acme", False), ("-x", False), ("a" * 64, False)],
)
def test_tenant_names(tenant: str, ok: bool) -> None:
    assert valid_tenant(tenant) is ok


def test_erasure_subjects_differ_by_tenant_and_hold_no_id() -> None:
    assert subject_hash("a", "user-1") != subject_hash("b", "user-1")
    assert "user-1" not in subject_hash("a", "user-1")


def test_log_lines_carry_the_keys_name_not_the_key() -> None:
    token = logs.key_name.set("acme-ingest")
    try:
        record = logging.LogRecord("api", logging.INFO, __file__, 1, "accepted", None, None)
        line = orjson.loads(logs.JsonFormatter("api").format(record))
    finally:
        logs.key_name.reset(token)
    assert line["key"] == "acme-ingest"


def test_bootstrap_keys_shorter_than_the_minimum_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_KEY_LENGTH} characters"):
        ApiSettings(api_keys="a-long-enough-bootstrap-key,short")
    assert ApiSettings(api_keys=" a-long-enough-bootstrap-key , ").key_list() == [
        "a-long-enough-bootstrap-key"
    ]
