"""`conversation-events-import`: a JSON Lines file through the batch endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, text
from tests.integration.api.conftest import API_KEY
from tests.support.payloads import conversation

from conversation_events_api import importer


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run_import(
    capsys: pytest.CaptureFixture[str], client: httpx.Client, path: Path, *args: str
) -> tuple[int, dict, str]:
    code = importer.main([str(path), "--url", str(client.base_url), *args])
    out, err = capsys.readouterr()
    return code, orjson.loads(out), err


def stored_ids(engine: Engine, bodies: list[dict]) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT conversation_id FROM conversation_events "
                    "WHERE conversation_id = ANY(:ids)"
                ),
                {"ids": [b["conversation_id"] for b in bodies]},
            ).scalars()
        )


@pytest.fixture(autouse=True)
def import_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(importer.KEY_VARIABLE, API_KEY)


def test_imports_every_line_reports_the_bad_ones_and_a_second_run_is_all_duplicates(
    client: httpx.Client, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = [conversation() for _ in range(120)]
    secret = "a private sentence nobody may log"
    invalid = {
        **conversation(),
        "end_time": "soon",
        "conversation_log": [{"character": "USER", "content": secret}],
    }
    lines = [orjson.dumps(b) for b in bodies[:60]]
    lines += [b"", b"{not json", orjson.dumps(invalid)]
    lines += [orjson.dumps(b) for b in bodies[60:]]
    path = write_lines(tmp_path / "history.jsonl", lines)

    code, summary, err = run_import(capsys, client, path, "--batch-size", "50")

    assert code == 1  # two lines were not stored
    assert {k: summary[k] for k in importer.STATUSES} == {
        "accepted": 120,
        "duplicate": 0,
        "conflict": 0,
        "erased": 0,
        "invalid": 2,
    }
    assert summary["lines"] == 122 and summary["next_line"] == len(lines) + 1
    assert "line 62: invalid: not JSON" in err
    assert "line 63: invalid: end_time:" in err
    assert secret not in err and "100.0%" in err
    assert stored_ids(engine, bodies) == {b["conversation_id"] for b in bodies}

    code, again, _ = run_import(capsys, client, path)
    assert (code, again["duplicate"], again["accepted"], again["invalid"]) == (1, 120, 0, 2)

    good = write_lines(tmp_path / "good.jsonl", [orjson.dumps(b) for b in bodies[:10]])
    assert run_import(capsys, client, good)[0] == 0


def test_resumes_from_a_line_and_splits_a_batch_the_server_finds_too_large(
    make_client: Callable[..., httpx.Client],
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = make_client(max_batch_body_bytes=16 * 1024)
    bodies = [conversation(messages=10) for _ in range(60)]
    path = write_lines(tmp_path / "history.jsonl", [orjson.dumps(b) for b in bodies])
    assert len(path.read_bytes()) > 3 * 16 * 1024  # one batch of all would be refused

    code, summary, _ = run_import(capsys, client, path, "--from-line", "11")

    assert (code, summary["accepted"], summary["next_line"]) == (0, 50, 61)
    assert stored_ids(engine, bodies) == {b["conversation_id"] for b in bodies[10:]}


def test_a_key_without_the_ingest_scope_stops_the_import_with_code_2(
    client: httpx.Client,
    new_key: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(importer.KEY_VARIABLE, new_key("t-reader", "read"))
    path = write_lines(tmp_path / "one.jsonl", [orjson.dumps(conversation())])

    code, summary, err = run_import(capsys, client, path)

    assert code == 2 and summary["next_line"] == 1
    assert "403" in err and "resume with --from-line 1" in err
