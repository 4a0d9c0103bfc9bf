"""Realistic request bodies: 10–40 messages, English and Vietnamese, unique ids.

Bodies are built once as templates with two holes (conversation id, user id), so the load
generator pays one bytes concatenation per request instead of a JSON encoding.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

CID_HOLE = "@@CID@@"
UID_HOLE = "@@UID@@"

_USER_EN = [
    "Hi Pika! Guess what, I saw a huge elephant at the zoo today",
    "Why do elephants have such big ears?",
    "That is so cool, I love animals",
    "Can we play the counting game again?",
    "I am a bit sad because my friend moved away",
    "What is your favourite colour?",
    "I finished my homework early today!",
    "How many legs does a spider have?",
    "This is boring, let's do something else",
    "Tell me a story about the ocean please",
    "Wow, that was really interesting",
    "I drew a picture of a dinosaur, it has three horns",
]
_USER_VI = [
    "Chào Pika! Hôm nay mình được đi sở thú đó",
    "Tại sao con voi lại có cái vòi dài vậy?",
    "Thích quá, mình rất thích các con vật",
    "Mình chơi trò đếm số nữa được không?",
    "Hôm nay mình hơi buồn vì bạn thân chuyển trường",
    "Bạn thích màu gì nhất?",
    "Mình làm xong bài tập về nhà rồi nè!",
    "Con nhện có mấy cái chân vậy Pika?",
    "Chán quá, mình làm việc khác đi",
    "Kể cho mình nghe chuyện về biển cả đi",
    "Hay quá, thú vị thật đó",
    "Mình vẽ một con khủng long có ba cái sừng",
]
_BOT_EN = [
    "Wow, an elephant! Elephants are the largest land animals on Earth.",
    "Great question! Their big ears help them stay cool in the hot sun.",
    "I love animals too! Which one is your favourite?",
    "Of course! Let's count together: one, two, three... your turn!",
    "I'm sorry to hear that. You can still talk to your friend on the phone.",
    "My favourite colour is yellow, like my fur! What about you?",
    "Well done! Finishing early means more time to play.",
    "A spider has eight legs. Can you count to eight with me?",
    "Okay! How about a riddle instead?",
    "Once upon a time, deep in the blue ocean, lived a little turtle named Tom...",
]
_BOT_VI = [
    "Ồ, con voi! Voi là loài vật lớn nhất sống trên cạn đó.",
    "Câu hỏi hay quá! Cái vòi giúp voi uống nước và cầm đồ vật.",
    "Pika cũng thích các con vật lắm! Bạn thích con nào nhất?",
    "Được chứ! Mình cùng đếm nhé: một, hai, ba... tới lượt bạn!",
    "Pika rất tiếc. Bạn vẫn có thể gọi điện nói chuyện với bạn ấy mà.",
    "Pika thích màu vàng, giống bộ lông của Pika! Còn bạn thì sao?",
    "Giỏi quá! Làm xong sớm thì có thêm thời gian chơi rồi.",
    "Con nhện có tám cái chân. Bạn đếm tới tám cùng Pika nhé?",
    "Được thôi! Mình chơi đố vui nhé?",
    "Ngày xửa ngày xưa, dưới đáy biển xanh có một chú rùa nhỏ tên là Tôm...",
]
_BOT_TYPES = ["TALK"] * 12 + ["GREETING"] * 3 + ["GAME_ACTIVITY"] * 4 + ["NEXT_LESSON"]
_TAGS = ["animals", "ocean", "counting", "feelings", "dinosaurs", None]
_EMOTIONS = ["interesting", "happy", "neutral", "sad", "angry", "boring"]


def body(rng: random.Random, conversation_id: str, user_id: str) -> dict[str, Any]:
    """One conversation as the platform would post it."""
    vietnamese = rng.random() < 0.5
    users, bots = (_USER_VI, _BOT_VI) if vietnamese else (_USER_EN, _BOT_EN)
    n = rng.randint(10, 40)
    # Two weeks of conversations that ended before any run: a future end time is refused.
    end = datetime(2026, 6, 1, 3, 0, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 20_000))
    start = end - timedelta(seconds=15 * n)
    log = []
    for i in range(n):
        user = i % 2 == 0 if rng.random() < 0.9 else rng.random() < 0.5
        log.append(
            {
                "character": "USER" if user else rng.choice(["PIKA", "BOT"]),
                "content": rng.choice(users if user else bots),
                "timestamp": (start + timedelta(seconds=15 * i)).isoformat(),
            }
        )
    data: dict[str, Any] = {
        "conversation_id": conversation_id,
        "user_id": user_id,
        "bot_id": f"bot-{rng.randint(1, 12)}",
        "bot_name": "Pika",
        "bot_type": rng.choice(_BOT_TYPES),
        "agent_tag": rng.choice(_TAGS),
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
        "conversation_log": log,
    }
    if rng.random() < 0.5:  # half carry upstream analysis, half rely on ours
        data["metadata"] = {
            "session_emotion": rng.choice(_EMOTIONS),
            "user_initiated_questions": rng.randint(0, 5),
            "new_memories_count": rng.randint(0, 3),
        }
    return data


def templates(count: int, seed: int = 7) -> list[tuple[bytes, bytes, bytes]]:
    """`count` distinct bodies split around their id holes: (before cid, between, after uid)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        raw = orjson.dumps(body(rng, CID_HOLE, UID_HOLE))
        head, rest = raw.split(CID_HOLE.encode())
        middle, tail = rest.split(UID_HOLE.encode())
        out.append((head, middle, tail))
    return out


def bodies(prefix: str, count: int, users: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """`count` bodies with ids `<prefix>-<n>`, spread over `users` users (for pre-loading)."""
    rng = random.Random(seed)
    for n in range(count):
        yield body(rng, f"{prefix}-{n}", f"{prefix}-user-{rng.randrange(users)}")
