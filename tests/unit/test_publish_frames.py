"""How the publisher cuts a message body into AMQP content frames."""

from __future__ import annotations

import pytest

from conversation_events_api.publisher import body_chunks


@pytest.mark.parametrize("size", [1, 7, 8, 9, 64])
def test_a_body_is_cut_into_frames_that_fit_and_join_back_to_it(size: int) -> None:
    body = bytes(range(size))
    chunks = body_chunks(body, 8)
    assert b"".join(chunks) == body
    assert all(0 < len(chunk) <= 8 for chunk in chunks)
    assert len(chunks) == -(-size // 8)  # as few frames as fit


def test_an_empty_body_has_no_content_frame() -> None:
    assert body_chunks(b"", 8) == []


@pytest.mark.parametrize("max_size", [0, -8])
def test_an_unbounded_frame_size_sends_the_body_whole(max_size: int) -> None:
    # frame_max 0 (no limit) leaves aiormq's max_content_size at 0 minus the frame overhead.
    assert body_chunks(b"x" * 100_000, max_size) == [b"x" * 100_000]
