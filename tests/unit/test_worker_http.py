"""The probe server (worker, scaler): a probe that gives up is one log line, not a traceback."""

from __future__ import annotations

import logging
import socket
import struct

import httpx
import pytest
from tests.support.services import wait_for

from conversation_events_worker.consumer import Health
from conversation_events_worker.http import serve


def mine(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "conversation_events.probes"]


def test_a_probe_that_drops_its_connection_is_logged_once_without_a_traceback(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.WARNING, logger="conversation_events.probes")
    server = serve("127.0.0.1", 0, Health())
    port = server.port
    try:
        # Connect and reset (SO_LINGER 0): the server's read of the request fails, as when a
        # probe's timeout closes the connection before the answer.
        probe = socket.create_connection(("127.0.0.1", port), timeout=5)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        probe.close()
        wait_for(lambda: mine(caplog), timeout=10, what="the reset to be handled")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
    lines = mine(caplog)
    assert [r.getMessage() for r in lines] == ["probe connection closed before its answer"]
    assert lines[0].error == "ConnectionResetError"  # type: ignore[attr-defined]
    assert "Traceback" not in capfd.readouterr().err
