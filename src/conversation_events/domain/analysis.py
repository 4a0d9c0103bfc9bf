"""What we read out of a conversation when upstream metadata does not tell us (SPEC section 3).

Three analyses, all pure and deterministic:

* :func:`count_turns`, the SPEC's pairing walk;
* :func:`is_question` / :func:`count_user_questions`, punctuation plus English and Vietnamese
  question words;
* :func:`classify_emotion`, a lexicon classifier over the user's messages.

Text is compared after Unicode NFC normalisation and case folding, but *with* its diacritics:
in Vietnamese ``sao`` ("why") is not ``sáo`` ("flute") and ``à`` (a question particle) is not
``á`` (an exclamation), so stripping accents would turn statements into questions. The price
is that Vietnamese typed without accents ("ban co khoe khong") is not recognised by the
Vietnamese rules; such messages still count as questions when they end with ``?``.

Both classifiers prefer a miss to a false hit: every point they award raises a friendship
score that upstream metadata, when present, would have set more precisely anyway.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from enum import StrEnum

from conversation_events.domain.conversation import Message, Speaker

__all__ = [
    "Emotion",
    "classify_emotion",
    "count_turns",
    "count_user_questions",
    "emotion_signals",
    "is_question",
]


class Emotion(StrEnum):
    """The session emotions of SPEC section 3."""

    INTERESTING = "interesting"
    HAPPY = "happy"
    NEUTRAL = "neutral"
    SAD = "sad"
    ANGRY = "angry"
    BORING = "boring"


# --------------------------------------------------------------------------------------------
# Turns
# --------------------------------------------------------------------------------------------


def count_turns(messages: Sequence[Message]) -> int:
    """Count exchanges with the SPEC's walk.

    Starting at ``i = 0``: when messages ``i`` and ``i + 1`` come from different speakers,
    count one turn and move on by two; otherwise move on by one. Each turn consumes two
    messages, so the result is at most ``len(messages) // 2`` (reached by a strictly
    alternating log) and 0 for a log with fewer than two messages or a single speaker.
    """
    turns = 0
    i = 0
    while i + 1 < len(messages):
        if messages[i].speaker != messages[i + 1].speaker:
            turns += 1
            i += 2
        else:
            i += 1
    return turns


# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_WORD_RE = re.compile(r"\w+(?:'\w+)*")
# Sentence and clause boundaries. "?" ends a sentence, so a message such as "What? I get it"
# is judged by its last sentence.
_SENTENCE_SPLIT_RE = re.compile(r"[.!?\u2026\u3002\uff01\uff1f;\n]+")
# Not ":" ":)" is a cue, and a colon rarely separates feelings.
_CLAUSE_SPLIT_RE = re.compile(r"[.!?\u2026\u3002\uff01\uff1f;,\n\uff0c]+")
_TRAILING_NON_WORD_RE = re.compile(r"[^\w]*$")
_QUESTION_MARKS = frozenset("?\uff1f")
_EXCLAMATION_MARKS = frozenset("!\uff01")


@functools.lru_cache(maxsize=1024)
def _fold(text: str) -> str:
    """NFC, case-folded, with typographic apostrophes made ASCII.

    NFC matters beyond tidiness: Python's ``\\w`` does not match combining marks, so a
    decomposed "ạ" would otherwise split a Vietnamese word in two.
    """
    folded = unicodedata.normalize("NFC", text).casefold()
    return unicodedata.normalize("NFC", folded).translate(_APOSTROPHES)


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def _has_vietnamese_letter(words: Sequence[str]) -> bool:
    # Any Latin letter outside ASCII: Vietnamese diacritics, or đ. The Vietnamese rules only
    # run on such sentences so that English "AI is cool" or "Sao Paulo" is not read as "ai"
    # ("who") or "sao" ("why").
    return any(not ch.isascii() and ch.isalpha() for word in words for ch in word)


# --------------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------------

# English wh-words: a sentence starting with one of these is a question, with the guards in
# _english_question_start.
_EN_WH = frozenset(
    {
        "what",
        "why",
        "how",
        "when",
        "where",
        "who",
        "whom",
        "whose",
        "which",
        "what's",
        "whats",
        "how's",
        "where's",
        "who's",
        "why's",
        "when's",
    }
)
# Auxiliaries that open a yes/no question ("Can you ...", "Is it ..."). Chat drops subjects
# ("Could be", "Didn't know that", "Would be fun"), so an auxiliary only counts when the next
# word looks like a subject and something follows it.
_EN_AUX = frozenset(
    {
        "is",
        "are",
        "am",
        "was",
        "were",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "has",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "doesn't",
        "didn't",
        "can't",
        "couldn't",
        "won't",
        "wouldn't",
        "shouldn't",
        "hasn't",
        "haven't",
    }
)
# "Do your homework", "Have fun", "Don't worry": these can open an imperative, so they need a
# personal pronoun as subject ("Do you ...", "Have you ...", "Don't they ...").
_EN_AUX_IMPERATIVE = frozenset({"do", "have", "don't"})
_EN_PERSONAL_SUBJECTS = frozenset({"i", "you", "we", "they", "u", "ya", "y'all"})
_EN_SUBJECTS = _EN_PERSONAL_SUBJECTS | frozenset(
    {
        "he",
        "she",
        "it",
        "this",
        "that",
        "these",
        "those",
        "there",
        "your",
        "my",
        "his",
        "her",
        "our",
        "their",
        "its",
        "the",
        "a",
        "an",
        "any",
        "anyone",
        "anybody",
        "anything",
        "someone",
        "somebody",
        "something",
        "everyone",
        "everybody",
        "everything",
        "people",
        "some",
        "all",
    }
)
# Words skipped at the start of a sentence before looking for a question word
# ("So what is it", "Well, can you help").
_EN_FILLERS = frozenset({"so", "and", "but", "well", "ok", "okay", "oh", "um", "umm", "hmm"})

# Vietnamese question words at the start of a sentence, longest first.
_VI_START: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(p.split())
            for p in (
                "tại sao",
                "vì sao",
                "sao",
                "làm sao",
                "làm thế nào",
                "bao giờ",
                "khi nào",
                "lúc nào",
                "ở đâu",
                "ai",
                "gì",
                "cái gì",
                "thế nào",
                "như thế nào",
                "ra sao",
                "có phải",
                "bao nhiêu",
                "mấy giờ",
                "liệu",
                "chẳng lẽ",
                "lẽ nào",
            )
        ),
        key=len,
        reverse=True,
    )
)
# "Sao Hỏa" is Mars, "sao biển" a starfish: after these, "sao" is the noun "star".
_VI_STAR_NOUNS = frozenset(
    {"hỏa", "hoả", "kim", "thủy", "thuỷ", "mộc", "thổ", "băng", "chổi", "biển", "mai", "bắc"}
)
# "ai cũng" (everyone), "lúc nào cũng" (always), "gì đó" (something): the question word is an
# indefinite or universal, not a question.
_VI_INDEFINITE_NEXT = frozenset({"cũng", "đó"})
# Time words that also open conditionals: "Khi nào rảnh thì mình chơi" ("when I'm free, we
# play"). A "thì" right after the word ("Khi nào thì bạn về") keeps it a question.
_VI_CONDITIONAL_OPENERS = frozenset({("khi", "nào"), ("bao", "giờ"), ("lúc", "nào")})
# "bao nhiêu là đồ chơi" is "so many toys".
_VI_EXCLAMATIVE_NEXT: dict[tuple[str, ...], frozenset[str]] = {("bao", "nhiêu"): frozenset({"là"})}

# Sentence-final particles that make a yes/no or confirmation question ("Thật à", "Gì hả",
# "Thật ư"). Deliberately absent: "nhỉ" (mostly a tag asking for agreement, "Đẹp nhỉ"), "chứ"
# ("Được chứ" is "of course"), "nhé"/"nha" (suggestions), and southern "á"/"ha"
# (exclamations). They still count when the sentence carries another signal.
_VI_FINAL_PARTICLES = frozenset({"à", "hả", "ư", "hở", "hử"})
# Softeners stripped from the end before looking at the final word ("Bạn đi đâu vậy",
# "Gì thế", "Bạn có khỏe không ạ"). Not "đó": "gì đó" is "something".
_VI_SOFTENERS = frozenset({"ạ", "vậy", "thế", "đấy", "nhỉ", "nhể"})
# Question words that can sit at the end ("Bạn tên là gì", "Bạn ở đâu", "Bạn là ai").
# They are not questions after a negator: "Không có gì" ("you're welcome"), "Mình không biết
# đâu" ("I really don't know"), "Chưa bao giờ" ("never").
_VI_END_IN_SITU: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(p.split())
            for p in (
                "gì",
                "ai",
                "đâu",
                "tại sao",
                "vì sao",
                "làm sao",
                "ra sao",
                "thế nào",
                "khi nào",
                "lúc nào",
                "cái nào",
                "con nào",
                "người nào",
                "bao giờ",
                "bao nhiêu",
                "mấy",
            )
        ),
        key=len,
        reverse=True,
    )
)
_VI_NEGATORS = frozenset({"không", "chẳng", "chả", "chưa"})
# "các vì sao" / "những vì sao" are "the stars".
_VI_STARS_BEFORE = frozenset({"các", "những", "ngắm"})
# Sentence-final "không"/"chưa" asks a yes/no question ("Bạn thích mèo không", "Ăn cơm chưa")
# unless it answers one: "Mình thì không", "Tớ cũng chưa", "Chắc là không", "Không".
_VI_NEG_ANSWER_BEFORE = frozenset(
    {
        # pronouns: "Con không", "Tớ chưa"
        "tôi",
        "tớ",
        "mình",
        "tao",
        "em",
        "con",
        "cháu",
        "anh",
        "chị",
        "nó",
        "họ",
        "ta",
        # adverbs and copulas: "Tớ cũng không", "Vẫn chưa", "Chắc là không", "Hoàn toàn không"
        "cũng",
        "vẫn",
        "còn",
        "đều",
        "thì",
        "là",
        "chắc",
        "toàn",
        "đối",
        "hề",
        "chắn",
        "nhiên",
        "định",
        "như",
        "ấy",
        # answer words: "Dạ không", "Ừ chưa"
        "dạ",
        "vâng",
        "ừ",
    }
)
# "Thật sao", "Vậy sao": final "sao" only after these ("Không sao" is "no problem",
# "ngôi sao" a star).
_VI_SAO_FINAL_AFTER = frozenset({"thật", "vậy", "thế"})


def _english_question_start(words: Sequence[str], original: Sequence[str]) -> bool:
    first = words[0]
    nxt = words[1] if len(words) > 1 else None
    if first in _EN_WH:
        if nxt in {"a", "an"} and first == "what":
            return False  # "What a day"
        if first in {"when", "where"} and nxt in _EN_SUBJECTS:
            return False  # "When I grow up, ..." is a subordinate clause
        # "What I like is ...", "How we met": a wh-word followed by a subject other than
        # "you" ("What you doing" is chat for a question) introduces a clause.
        return nxt not in {"i", "we", "they", "he", "she"}
    if len(words) < 3 or nxt is None:
        return False
    if first in _EN_AUX_IMPERATIVE:
        return nxt in _EN_PERSONAL_SUBJECTS
    if first in _EN_AUX:
        # A capitalised (not shouted) next word is most likely a name: "Is Pika happy".
        name = original[1][:1].isupper() and not original[1].isupper()
        return nxt in _EN_SUBJECTS or name
    return False


def _match_prefix(words: Sequence[str], phrases: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    for phrase in phrases:
        if tuple(words[: len(phrase)]) == phrase:
            return phrase
    return ()


def _is_acronym_ai(original_word: str) -> bool:
    # "AI rất thông minh" is about artificial intelligence, not "ai" ("who").
    return original_word == "AI"


def _vietnamese_question_start(words: Sequence[str], original: Sequence[str]) -> bool:
    phrase = _match_prefix(words, _VI_START)
    if not phrase:
        return False
    if phrase == ("ai",) and _is_acronym_ai(original[0]):
        return False
    rest = words[len(phrase) :]
    nxt = rest[0] if rest else None
    if nxt in _VI_INDEFINITE_NEXT:
        return False
    if phrase == ("sao",) and nxt in _VI_STAR_NOUNS:
        return False
    if nxt in _VI_EXCLAMATIVE_NEXT.get(phrase, frozenset()):
        return False
    return not (phrase in _VI_CONDITIONAL_OPENERS and nxt != "thì" and "thì" in rest)


def _vietnamese_question_end(words: Sequence[str], original: Sequence[str]) -> bool:
    if len(words) >= 2 and words[-1] in _VI_FINAL_PARTICLES:
        return True
    core = list(words)
    while len(core) > 1 and core[-1] in _VI_SOFTENERS:
        core.pop()
    last = core[-1]
    before = core[-2] if len(core) > 1 else None
    if last in {"không", "chưa"}:
        # Covers the "có ... không" frame too: its "không" always follows a predicate.
        return before is not None and before not in _VI_NEG_ANSWER_BEFORE
    if last == "sao" and before in _VI_SAO_FINAL_AFTER:
        return True
    for phrase in _VI_END_IN_SITU:
        n = len(phrase)
        if len(core) < n or tuple(core[-n:]) != phrase:
            continue
        head = core[:-n]
        if phrase == ("vì", "sao") and head and head[-1] in _VI_STARS_BEFORE:
            return False
        if phrase == ("ai",) and _is_acronym_ai(original[len(core) - 1]):
            return False
        # A bare one-word "Gì"/"Ai" is handled by the start rule; here we need a sentence.
        return bool(head) and not any(word in _VI_NEGATORS for word in head)
    return False


def _leading_skip(words: Sequence[str]) -> int:
    # A Vietnamese vocative ("Pika ơi, tại sao ...") or English fillers come before the
    # question word.
    if "ơi" in words[:4]:
        return words.index("ơi") + 1
    i = 0
    while i < len(words) and words[i] in _EN_FILLERS:
        i += 1
    return i


def is_question(text: str) -> bool:
    """Whether a message reads as a question.

    Rules, in order (text NFC-normalised and case-folded, diacritics kept):

    1. The trailing punctuation contains ``?`` or ``？`` (emoji or brackets after it are
       fine): a question.
    2. It contains ``!`` or ``！`` instead: an exclamation ("What a goal!", "How cool!").
    3. Otherwise the last sentence decides. It is a question when it starts (after a
       vocative "... ơi" or fillers like "so", "well") with

       * an English wh-word, except "What a ...", "When/Where + subject" and
         "what/how/why/who/which + I/we/they/he/she" (clauses such as "When I grow up");
       * an English auxiliary followed by a subject and more words ("Can you help me",
         "Is Pika happy"), where "do"/"have"/"don't" need a personal pronoun
         ("Do you ...", not "Do your homework");
       * a Vietnamese question word: tại sao, vì sao, sao, làm sao, bao giờ, khi nào,
         lúc nào, ở đâu, ai, gì, cái gì, thế nào, như thế nào, ra sao, có phải, bao
         nhiêu, mấy giờ, liệu, chẳng lẽ, lẽ nào; not when followed by "cũng"/"đó"
         ("Ai cũng thích", "Gì đó"), not "Sao Hỏa" (Mars), not "bao nhiêu là"
         (exclamative), not a conditional "Khi nào ... thì ...".

       or (Vietnamese sentences only, after dropping softeners ạ/vậy/thế/đấy/nhỉ) it ends
       with

       * a question particle à, hả, ư, hở, hử ("Thật à");
       * "không"/"chưa" after a predicate ("Bạn thích mèo không", "Ăn cơm chưa") or in a
         "có ... không" frame, but not as an answer ("Mình thì không", "Tớ cũng chưa");
       * "thật/vậy/thế sao";
       * an in-situ question word (gì, ai, đâu, tại sao, thế nào, khi nào, bao giờ, bao
         nhiêu, mấy, ...) with no negator before it ("Bạn tên là gì" yes, "Không có gì" no).

    Deliberately not questions without a "?": "nhỉ", "chứ", "nhé" endings on their own,
    and Vietnamese typed without diacritics.
    """
    if not isinstance(text, str):
        return False
    folded = _fold(text)
    trailing = _TRAILING_NON_WORD_RE.search(folded)
    tail = trailing.group(0) if trailing else ""
    if any(ch in _QUESTION_MARKS for ch in tail):
        return True
    if any(ch in _EXCLAMATION_MARKS for ch in tail):
        return False

    words, original = _last_sentence_words(text, folded)
    if not words:
        return False
    skip = _leading_skip(words)
    if skip < len(words) and _english_question_start(words[skip:], original[skip:]):
        return True
    if not _has_vietnamese_letter(words):
        return False
    if skip < len(words) and _vietnamese_question_start(words[skip:], original[skip:]):
        return True
    return _vietnamese_question_end(words, original)


def _last_sentence_words(text: str, folded: str) -> tuple[list[str], list[str]]:
    """Words of the last sentence that has any, folded and in their original casing."""
    sentences = _SENTENCE_SPLIT_RE.split(folded)
    # Case folding neither creates nor removes separators, so both splits line up.
    original_sentences = _SENTENCE_SPLIT_RE.split(unicodedata.normalize("NFC", text))
    for index in range(len(sentences) - 1, -1, -1):
        words = _words(sentences[index])
        if words:
            original = _words(original_sentences[index])
            # Rare folds change word boundaries ("İ" gains a combining dot); casing is then
            # unknown, so the folded words stand in for it.
            return words, original if len(original) == len(words) else list(words)
    return [], []


def count_user_questions(messages: Sequence[Message]) -> int:
    """Number of the user's messages that are questions (see :func:`is_question`)."""
    return sum(1 for m in messages if m.speaker == Speaker.USER and is_question(m.content))


# --------------------------------------------------------------------------------------------
# Emotion
# --------------------------------------------------------------------------------------------

_E = Emotion
# Phrase -> emotion, matched longest first on word tokens. ``None`` marks a phrase that looks
# like a cue but is not one ("vui lòng" is "please", "tức là" is "that is", "buồn ngủ" is
# "sleepy"); matching it consumes the words so that the shorter cue inside does not fire.
# A few negated phrases are cues of their own ("not fun" is boring), because a negated cue is
# otherwise discarded rather than inverted.
_LEXICON_SOURCE: Mapping[Emotion | None, tuple[str, ...]] = {
    _E.INTERESTING: (
        # English
        "interesting",
        "interested",
        "fascinating",
        "curious",
        "wow",
        "whoa",
        "cool",
        "awesome",
        "amazing",
        "exciting",
        "tell me more",
        "i want to know",
        # Vietnamese
        "thú vị",
        "hấp dẫn",
        "tò mò",
        "ngầu",
        "hay quá",
        "hay lắm",
        "hay thế",
        "hay ghê",
        "hay vậy",
        "hay thật",
        "rất hay",
        "thật hay",
        "quá hay",
        "bất ngờ",
        "ngạc nhiên",
        "kể tiếp",
        "kể thêm",
        "muốn biết thêm",
        # emoji
        "🤩",
        "😮",
        "😲",
        "🤯",
    ),
    _E.HAPPY: (
        "happy",
        "glad",
        "yay",
        "fun",
        "funny",
        "love",
        "loved",
        "lovely",
        "great",
        "excited",
        "delighted",
        "vui",
        "vui vẻ",
        "vui sướng",
        "vui mừng",
        "sướng",
        "mừng",
        "hạnh phúc",
        "thích quá",
        "thích lắm",
        "rất thích",
        "yêu",
        "tuyệt",
        "tuyệt vời",
        "buồn cười",
        "hài",
        "cười",
        "phấn khích",
        ":)",
        ":-)",
        ":d",
        ":p",
        "<3",
        "😀",
        "😃",
        "😄",
        "😁",
        "😆",
        "😊",
        "🙂",
        "😍",
        "🥰",
        "😂",
        "🤣",
        "☺",
        "❤",
    ),
    _E.SAD: (
        "sad",
        "unhappy",
        "upset",
        "cry",
        "crying",
        "cried",
        "lonely",
        "depressed",
        "miserable",
        "heartbroken",
        "disappointed",
        "feel bad",
        "feeling down",
        "feel down",
        "buồn",
        "buồn bã",
        "buồn quá",
        "khóc",
        "cô đơn",
        "thất vọng",
        "tủi thân",
        "tuyệt vọng",
        "đau lòng",
        "chán nản",
        "không vui",
        "chẳng vui",
        ":(",
        ":-(",
        "😢",
        "😭",
        "😞",
        "😔",
        "☹",
        "🙁",
    ),
    _E.ANGRY: (
        "angry",
        "mad",
        "furious",
        "annoyed",
        "annoying",
        "irritated",
        "hate",
        "hated",
        "shut up",
        "stupid",
        "dumb",
        "idiot",
        "giận",
        "tức",
        "tức giận",
        "tức quá",
        "bực",
        "bực mình",
        "bực bội",
        "cáu",
        "khó chịu",
        "ghét",
        "đáng ghét",
        "phát điên",
        "điên tiết",
        "im đi",
        "ngu",
        "😠",
        "😡",
        "🤬",
        "👿",
    ),
    _E.BORING: (
        "boring",
        "bored",
        "dull",
        "meh",
        "yawn",
        "tedious",
        "not fun",
        "no fun",
        "not interesting",
        "chán",
        "chán quá",
        "chán ghê",
        "chán chết",
        "nhàm",
        "nhàm chán",
        "buồn chán",
        "tẻ nhạt",
        "nhạt nhẽo",
        "ngáp",
        "không thú vị",
        "🥱",
        "😴",
    ),
    None: (
        "vui lòng",  # "please"
        "tức là",  # "that is"
        "buồn ngủ",  # "sleepy"
        "tuyệt đối",  # "absolutely"
        "buồn nôn",  # "nauseous"
        "lập tức",  # "immediately"
        "tức thì",  # "instantly"
        "tin tức",  # "news"
        "yêu cầu",  # "request"
        "fun fact",
        "great grandma",
        "great grandpa",
        "great wall",
    ),
}


def _build_lexicon() -> dict[tuple[str, ...], Emotion | None]:
    lexicon: dict[tuple[str, ...], Emotion | None] = {}
    for emotion, phrases in _LEXICON_SOURCE.items():
        for phrase in phrases:
            key = tuple(_fold(phrase).split())
            if key in lexicon:
                raise ValueError(f"phrase {phrase!r} listed twice in the emotion lexicon")
            lexicon[key] = emotion
    return lexicon


_LEXICON = _build_lexicon()
# First word -> lengths of the phrases it starts, longest first: most words start none, and
# are then passed over with one lookup.
_PHRASE_LENGTHS: dict[str, tuple[int, ...]] = {
    first: tuple(sorted({len(key) for key in _LEXICON if key[0] == first}, reverse=True))
    for first in {key[0] for key in _LEXICON}
}
# Laughter in any length: haha, hahaha, hihi, hehe, kkk (Vietnamese), lol, lmao.
_LAUGHTER_RE = re.compile(r"(?:ha){2,}h?|(?:hi){2,}|(?:he){2,}|k{3,}|lo+l|lmao")
_EMOTION_TOKEN_RE = re.compile(
    r"\w+(?:'\w+)*"
    r"|[:;]-?[()dp]"
    r"|<3"
    r"|[\U0001F300-\U0001FAFF\u2600-\u27BF]"
)
_EMOTION_NEGATORS = frozenset(
    {
        "not",
        "no",
        "never",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "won't",
        "can't",
        "cannot",
        "ain't",
        "hardly",
        "không",
        "chẳng",
        "chả",
        "chưa",
        "đừng",  # "đừng buồn": "don't be sad"
        "hết",  # "hết buồn rồi": "not sad any more"
    }
)
# How far back a negator reaches: "not very happy", "không thấy vui lắm", "don't feel sad".
_NEGATION_WINDOW = 3


def _clause_signals(tokens: Sequence[str]) -> list[Emotion]:
    found: list[Emotion] = []
    i = 0
    count = len(tokens)
    while i < count:
        token = tokens[i]
        for size in _PHRASE_LENGTHS.get(token, ()):
            key = tuple(tokens[i : i + size])
            if len(key) == size and key in _LEXICON:
                emotion = _LEXICON[key]
                break
        else:
            size = 1
            # Every laughter pattern starts with h, k or l.
            laughs = token[:1] in "hkl" and _LAUGHTER_RE.fullmatch(token) is not None
            emotion = _E.HAPPY if laughs else None
        if emotion is not None:
            window = tokens[max(0, i - _NEGATION_WINDOW) : i]
            # A negated cue is dropped, not inverted: "not happy" is not evidence of any one
            # of the other five emotions.
            if not any(token in _EMOTION_NEGATORS for token in window):
                found.append(emotion)
        i += size
    return found


def emotion_signals(text: str) -> list[Emotion]:
    """The emotion cues found in one message, in order (the evidence behind the classifier).

    Phrases match on whole words, longest first ("buồn cười", "funny", is happy although
    "buồn" alone is sad); a cue with a negator up to three words before it in the same
    clause is ignored.
    """
    if not isinstance(text, str):
        return []
    signals: list[Emotion] = []
    for clause in _CLAUSE_SPLIT_RE.split(_fold(text)):
        signals.extend(_clause_signals(_EMOTION_TOKEN_RE.findall(clause)))
    return signals


def classify_emotion(messages: Sequence[Message]) -> Emotion:
    """The session emotion of the user's messages (bot messages are ignored).

    Counts the cues of :func:`emotion_signals` over every user message; the emotion with
    strictly the most cues wins. No cue, or a tie for the most, gives ``NEUTRAL``: a mixed
    session should neither earn nor lose friendship on a guess.
    """
    counts: Counter[Emotion] = Counter()
    for message in messages:
        if message.speaker == Speaker.USER:
            counts.update(emotion_signals(message.content))
    if not counts:
        return Emotion.NEUTRAL
    ranked = counts.most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return Emotion.NEUTRAL
    return ranked[0][0]
