"""Turn counting, question detection and emotion classification (English and Vietnamese)."""

from __future__ import annotations

import itertools
import math
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversation_events.domain.conversation import Message, Speaker, count_turns
from conversation_events.domain.emotions import Emotion, classify_emotion, emotion_signals
from conversation_events.domain.questions import count_user_questions, is_question

U = Speaker.USER
B = Speaker.BOT


def log(*speakers: Speaker) -> list[Message]:
    return [Message(s, f"message {i}") for i, s in enumerate(speakers)]


def user(*texts: str) -> list[Message]:
    return [Message(U, t) for t in texts]


# ------------------------------------------------------------------------------------------
# Turns
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("speakers", "turns"),
    [
        ((), 0),
        ((U,), 0),
        ((B,), 0),
        ((U, U, U), 0),
        ((B, B), 0),
        ((U, B), 1),
        ((B, U), 1),
        ((U, B, U), 1),
        ((U, B, U, B), 2),
        ((U, U, B), 1),
        ((U, B, B, U), 2),
        ((B, U, U, B), 2),
        ((U, B, B, B, U), 2),
        ((U, U, B, B), 1),  # the only change is in the middle
        ((U, B, U, B, U, B, U), 3),
    ],
)
def test_count_turns_walk(speakers: tuple[Speaker, ...], turns: int) -> None:
    assert count_turns(log(*speakers)) == turns


speaker_lists = st.lists(st.sampled_from([U, B]), max_size=60)


@given(speaker_lists)
def test_turns_bounded_by_half_the_messages_and_by_speaker_changes(
    speakers: list[Speaker],
) -> None:
    turns = count_turns(log(*speakers))
    changes = sum(1 for a, b in itertools.pairwise(speakers) if a != b)
    # Each turn uses two messages and one speaker change; each turn skips at most one more
    # change, so every change is either counted or skipped by a counted turn.
    assert turns <= len(speakers) // 2
    assert turns <= changes
    assert turns >= math.ceil(changes / 2)


@given(st.integers(min_value=0, max_value=60), st.sampled_from([U, B]))
def test_alternating_log_reaches_the_bound(n: int, first: Speaker) -> None:
    other = B if first is U else U
    speakers = [first if i % 2 == 0 else other for i in range(n)]
    assert count_turns(log(*speakers)) == n // 2


# ------------------------------------------------------------------------------------------
# Questions
# ------------------------------------------------------------------------------------------

ENGLISH_QUESTIONS = [
    "What is your name?",
    "what is your name",
    "Why is the sky blue",
    "How do birds fly",
    "When do we start",
    "Where do you live",
    "Who made you",
    "Which one is bigger",
    "Whose toy is this",
    "What's that",
    "How about a game",
    "Can you help me",
    "Could you tell me a story",
    "Is it raining",
    "Is Pika happy",
    "Are you a robot",
    "Do you like cats",
    "Did you sleep well",
    "Does it hurt",
    "Will you play with me",
    "Would you like some tea",
    "Should we go now",
    "May I ask something",
    "Have you seen my ball",
    "Don't you like it",
    "So what do we do now",
    "Well, can you help",
    "I know that. But why",
    "Really? 😊",
    "Really?!",
    "You did it?)",
    "This is it ？",
    "What",
]

ENGLISH_STATEMENTS = [
    "",
    "   ",
    "I like cats",
    "What a day",
    "What an idea",
    "How cool!",
    "What?! No way!",  # the last sentence is an exclamation
    "When I grow up, I want to be a doctor",
    "Where we live, it snows",
    "What I like is pizza",
    "Do your homework",
    "Have fun",
    "Have a nice day",
    "Don't worry",
    "Could be",
    "Would be fun",
    "Didn't know that",
    "Can't wait",
    "Did it",
    "WAS FUN TODAY",
    "May is my birthday month",
    "Tell me why",
    "I wonder how birds fly",
    "Why? Because I said so",
    "Whatever",
    "Showing whatnot",
]

VIETNAMESE_QUESTIONS = [
    "Bạn tên là gì",
    "Bạn tên gì thế",
    "Bạn đi đâu vậy",
    "Bạn là ai",
    "Tại sao trời mưa",
    "Vì sao lá cây màu xanh",
    "Sao bạn buồn",
    "Sao vậy",
    "Làm sao để học giỏi",
    "Bao giờ bạn về",
    "Khi nào thì bạn về",
    "Ở đâu có kem ngon",
    "Ai là bạn thân của bạn",
    "Cái gì đây",
    "Như thế nào là tình bạn",
    "Bạn thấy thế nào",
    "Có phải bạn là Pika",
    "Bao nhiêu tuổi rồi",
    "Mấy giờ rồi",
    "Bạn học lớp mấy",
    "Liệu mai có mưa",
    "Bạn có khỏe không",
    "Bạn có khỏe không ạ",
    "Bạn thích mèo không",
    "Ăn cơm chưa",
    "Bạn đã làm bài tập chưa",
    "Đi chơi được không",
    "Mình làm vậy đúng không",
    "Thật à",
    "Vậy à",
    "Gì hả",
    "Thật ư",
    "Thật sao",
    "Pika ơi, tại sao trời lại mưa",
    "Pika ơi bạn thích ăn gì",
    "Mình kể rồi. Bạn nhớ không",
    "Bạn khỏe không？",
    "ban co khoe khong?",  # no diacritics, but the question mark decides
]

VIETNAMESE_STATEMENTS = [
    "Mình thích mèo",
    "Không",
    "Không có gì",
    "Chẳng có gì",
    "Mình thì không",
    "Tớ cũng không",
    "Chắc là không",
    "Hoàn toàn không",
    "Dạ không",
    "Con chưa",
    "Tớ cũng chưa",
    "Vẫn chưa",
    "Mình không biết đâu",
    "Mình không biết tại sao",
    "Mình chưa bao giờ đi biển",
    "Chưa bao giờ",
    "Ai cũng thích kem",
    "Lúc nào cũng vui",
    "Gì cũng được",
    "Ai đó gọi mình",
    "Bạn làm gì đó đi",
    "Sao Hỏa màu đỏ",
    "Mình thích ngắm các vì sao",
    "Không sao",
    "Bao nhiêu là đồ chơi",
    "Khi nào rảnh thì mình chơi",
    "Hôm nay đẹp trời nhỉ",  # "nhỉ" alone is a tag, not counted
    "Được chứ",
    "Đi chơi nhé",
    "Vui lắm á",  # "á" (exclamation) is not "à" (question)
    "À",
    "À, mình hiểu rồi",
    "AI rất thông minh",
    "Mình thích AI",
    "Vui quá!",
    "ban co khoe khong",  # without diacritics the Vietnamese rules do not apply
    "Do trời mưa nên mình ở nhà",  # Vietnamese "do" (because) is not English "do"
    "May quá",  # Vietnamese "may" (lucky)
]


@pytest.mark.parametrize("text", ENGLISH_QUESTIONS + VIETNAMESE_QUESTIONS)
def test_is_question_true(text: str) -> None:
    assert is_question(text) is True


@pytest.mark.parametrize("text", ENGLISH_STATEMENTS + VIETNAMESE_STATEMENTS)
def test_is_question_false(text: str) -> None:
    assert is_question(text) is False


@pytest.mark.parametrize("text", ["Bạn tên là gì", "Tại sao trời mưa", "Bạn có khỏe không ạ"])
def test_is_question_normalises_decomposed_unicode(text: str) -> None:
    decomposed = unicodedata.normalize("NFD", text)
    assert decomposed != text
    assert is_question(decomposed) is True


def test_is_question_is_case_insensitive() -> None:
    assert is_question("BẠN TÊN LÀ GÌ") is True
    assert is_question("WHAT IS THAT") is True
    assert is_question("tại SAO trời mưa") is True


def test_is_question_diacritics_matter() -> None:
    # "sao" (why) starts a question; "sáo" (flute) does not.
    assert is_question("Sao bạn thích chơi") is True
    assert is_question("Sáo bạn thích chơi") is False


def test_is_question_typographic_apostrophe() -> None:
    assert is_question("Don\u2019t you like it") is True
    assert is_question("Don\u2019t worry") is False


def test_is_question_non_string_is_false() -> None:
    assert is_question(None) is False  # type: ignore[arg-type]


def test_count_user_questions_counts_only_user_messages() -> None:
    messages = [
        Message(B, "What is your name?"),
        Message(U, "My name is Lan"),
        Message(B, "Bạn mấy tuổi?"),
        Message(U, "Why do you ask?"),
        Message(U, "Bạn tên là gì"),
        Message(U, "Mình thì không"),
    ]
    assert count_user_questions(messages) == 2


def test_count_user_questions_empty() -> None:
    assert count_user_questions([]) == 0


# ------------------------------------------------------------------------------------------
# Emotion
# ------------------------------------------------------------------------------------------


#: Messages of one user and the emotion each expresses on its own.
SINGLE_MESSAGE_EMOTIONS = {
    Emotion.HAPPY: [
        "I am so happy today",
        "That was fun",
        "haha",
        "hahahaha",
        "hihi",
        "lol",
        "yay :)",
        "😊",
        "Mình vui lắm",
        "Buồn cười quá",  # "funny", not "sad"
        "Tuyệt vời",
    ],
    Emotion.INTERESTING: [
        "That is so interesting",
        "Wow, tell me more",
        "Thú vị ghê",
        "Hay quá",
        "Kể tiếp đi",
    ],
    Emotion.SAD: [
        "I feel sad",
        "I cried :(",
        "Mình buồn quá",
        "Mình không vui",
        "Con muốn khóc 😭",
        "Tuyệt vọng",
    ],
    Emotion.ANGRY: [
        "I'm angry",
        "I hate this",
        "shut up",
        "Mình tức quá",
        "Bực mình ghê",
        "😡",
    ],
    Emotion.BORING: [
        "This is boring",
        "It is not fun",
        "meh",
        "Chán quá",
        "Buồn chán",  # "bored", not "sad"
        "Nhàm chán",
        "🥱",
    ],
}


@pytest.mark.parametrize(
    ("text", "emotion"),
    [(text, emotion) for emotion, texts in SINGLE_MESSAGE_EMOTIONS.items() for text in texts],
)
def test_classify_emotion_single_message(text: str, emotion: Emotion) -> None:
    assert classify_emotion(user(text)) is emotion


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The sky is blue",
        "Mình đi học",
        "I am not happy",  # a negated cue is dropped, not inverted
        "I'm not angry",
        "Don't be sad",
        "Đừng buồn nhé",
        "Mình không chán",
        "Hết buồn rồi",
        "Vui lòng chờ",  # "please wait"
        "Ngay lập tức",  # "immediately", not "tức" (angry)
        "Tức là vậy",  # "that is", not angry
        "Mình buồn ngủ",  # "sleepy"
        "Fun fact: cats sleep a lot",
        "My great grandma is 90",
        "A nomad made a glade",  # "mad", "glad" only as whole words
        "Mình thích ngủ",  # "ngủ" is not "ngu"
        "sad happy",  # one each: a tie
    ],
)
def test_classify_emotion_neutral(text: str) -> None:
    assert classify_emotion(user(text)) is Emotion.NEUTRAL


def test_classify_emotion_empty_log_is_neutral() -> None:
    assert classify_emotion([]) is Emotion.NEUTRAL


def test_classify_emotion_ignores_bot_messages() -> None:
    messages = [
        Message(B, "I am so happy! Haha, this is fun! 😊"),
        Message(U, "ok"),
    ]
    assert classify_emotion(messages) is Emotion.NEUTRAL
    messages.append(Message(U, "this is boring"))
    assert classify_emotion(messages) is Emotion.BORING


def test_classify_emotion_plurality_across_messages() -> None:
    messages = user("I was sad yesterday", "But today is fun", "Haha so happy")
    assert classify_emotion(messages) is Emotion.HAPPY


def test_classify_emotion_tie_between_two_emotions_is_neutral() -> None:
    assert classify_emotion(user("This is boring", "I am happy")) is Emotion.NEUTRAL
    assert classify_emotion(user("Buồn quá", "Chán quá")) is Emotion.NEUTRAL


def test_negation_is_clause_local() -> None:
    # The "no" belongs to the first clause; "happy" stands on its own.
    assert emotion_signals("No, I am happy") == [Emotion.HAPPY]
    assert emotion_signals("Không, mình vui lắm") == [Emotion.HAPPY]


def test_negation_window_reaches_three_words_back() -> None:
    assert emotion_signals("not really very happy") == []
    assert emotion_signals("not at all really very happy") == [Emotion.HAPPY]


def test_emotion_signals_in_order() -> None:
    assert emotion_signals("Wow! Haha. Then I got sad 😢") == [
        Emotion.INTERESTING,
        Emotion.HAPPY,
        Emotion.SAD,
        Emotion.SAD,
    ]


def test_emotion_is_diacritics_and_normalisation_aware() -> None:
    assert classify_emotion(user(unicodedata.normalize("NFD", "Mình buồn quá"))) is Emotion.SAD
    assert classify_emotion(user("MÌNH VUI LẮM")) is Emotion.HAPPY
    # Unaccented "buon" is not "buồn".
    assert classify_emotion(user("minh buon qua")) is Emotion.NEUTRAL


def test_classify_emotion_is_deterministic() -> None:
    messages = user("haha fun", "sad", "boring", "Chán quá", "tuyệt vời", "wow")
    results = {classify_emotion(messages) for _ in range(20)}
    assert results == {Emotion.HAPPY}


@given(st.lists(st.text(max_size=80), max_size=8))
def test_analysis_never_raises_on_arbitrary_text(texts: list[str]) -> None:
    messages = [Message(U if i % 2 else B, t) for i, t in enumerate(texts)]
    assert classify_emotion(messages) in set(Emotion)
    assert 0 <= count_user_questions(messages) <= len(messages)
