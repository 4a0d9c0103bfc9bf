"""What the API stores and shows: scored metadata only, coarse error codes, encoded URLs."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine, text
from tests.support.payloads import conversation

from conversation_events.persistence import events as event_repo

END = "/v1/conversations/end"


def test_only_the_metadata_keys_scoring_uses_are_stored(
    client: httpx.Client, engine: Engine
) -> None:
    body = conversation()
    body["metadata"] |= {"child_name": "Alice", "trace": {"school": "Elm Street"}}

    event_id = client.post(END, json=body).json()["event_id"]

    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT metadata FROM conversation_events WHERE id = :id"), {"id": event_id}
        ).scalar_one()
    assert stored == {
        "session_emotion": "happy",
        "user_initiated_questions": 1,
        "new_memories_count": 0,
    }
    # Dropped keys still count for idempotency: the same request again is a duplicate, other
    # extra keys make it other content.
    assert client.post(END, json=body).json()["event_id"] == event_id
    body["metadata"]["child_name"] = "Bob"
    assert client.post(END, json=body).status_code == 409


def test_the_openapi_document_says_extra_metadata_is_dropped(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Metadata"]
    assert "dropped" in schema["description"]


def test_clients_see_a_coarse_error_code_not_the_driver_message(
    client: httpx.Client, engine: Engine
) -> None:
    body = conversation()
    event_id = client.post(END, json=body).json()["event_id"]
    leak = 'OperationalError: connection to server at "db-7.internal" (10.1.2.3), port 5432 failed'
    path = f"/v1/conversations/{body['conversation_id']}"

    with engine.begin() as conn:
        event_repo.record_failure(conn, event_id, leak, permanent=False, max_attempts=5)
    retrying = client.get(path)
    with engine.begin() as conn:
        event_repo.record_failure(conn, event_id, leak, permanent=True, max_attempts=5)
    failed = client.get(path)

    assert (retrying.json()["status"], retrying.json()["last_error"]) == ("PENDING", "retrying")
    assert (failed.json()["status"], failed.json()["last_error"]) == (
        "FAILED",
        "processing_failed",
    )
    for response in (retrying, failed):
        assert "10.1.2.3" not in response.text and "5432" not in response.text
    with engine.connect() as conn:  # the details stay for operators
        kept = conn.execute(
            text("SELECT last_error FROM conversation_events WHERE id = :id"), {"id": event_id}
        ).scalar_one()
    assert kept == leak


def test_the_status_url_is_percent_encoded_and_leads_to_the_event(client: httpx.Client) -> None:
    body = conversation(conversation_id="chat 1?page=2#top&x=%41")

    accepted = client.post(END, json=body).json()

    assert accepted["status_url"] == "/v1/conversations/chat%201%3Fpage%3D2%23top%26x%3D%2541"
    view = client.get(accepted["status_url"])
    assert view.status_code == 200
    assert view.json()["conversation_id"] == body["conversation_id"]
