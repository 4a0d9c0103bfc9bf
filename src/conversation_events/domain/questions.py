"""Whether a message reads as a question, in English or Vietnamese (SPEC section 3).

Punctuation decides first; otherwise the last sentence's opening and closing words do, from
the word lists in ``lexicons/en.toml`` and ``lexicons/vi.toml``. The rules prefer a miss to a
false hit: every question counted raises a friendship score that upstream metadata, when
present, would have set more precisely anyway. Text handling (folding, diacritics) is
described in :mod:`conversation_events.domain.text`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from conversation_events.domain.conversation import Message, Speaker
from conversation_events.domain.text import fold, has_vietnamese_letter, lexicon, split_words

__all__ = ["count_user_questions", "is_question"]

# Sentence boundaries. "?" ends a sentence, so a message such as "What? I get it" is judged
# by its last sentence.
_SENTENCE_SPLIT_RE = re.compile(r"[.!?\u2026\u3002\uff01\uff1f;\n]+")
_TRAILING_NON_WORD_RE = re.compile(r"[^\w]*$")
_QUESTION_MARKS = frozenset("?\uff1f")
_EXCLAMATION_MARKS = frozenset("!\uff01")


def _phrases_longest_first(entries: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted((tuple(p.split()) for p in entries), key=len, reverse=True))


_EN = lexicon("en")["questions"]
_EN_WH = frozenset(_EN["wh_words"])
_EN_AUX = frozenset(_EN["auxiliaries"])
_EN_AUX_IMPERATIVE = frozenset(_EN["imperative_auxiliaries"])
_EN_PERSONAL_SUBJECTS = frozenset(_EN["personal_subjects"])
_EN_SUBJECTS = _EN_PERSONAL_SUBJECTS | frozenset(_EN["other_subjects"])
_EN_FILLERS = frozenset(_EN["fillers"])

_VI = lexicon("vi")["questions"]
_VI_START = _phrases_longest_first(_VI["start"])
_VI_STAR_NOUNS = frozenset(_VI["star_nouns"])
_VI_INDEFINITE_NEXT = frozenset(_VI["indefinite_next"])
_VI_CONDITIONAL_OPENERS = frozenset(tuple(p.split()) for p in _VI["conditional_openers"])
_VI_EXCLAMATIVE_NEXT: dict[tuple[str, ...], frozenset[str]] = {
    tuple(phrase.split()): frozenset(after) for phrase, after in _VI["exclamative_next"].items()
}
_VI_FINAL_PARTICLES = frozenset(_VI["final_particles"])
_VI_SOFTENERS = frozenset(_VI["softeners"])
_VI_END_IN_SITU = _phrases_longest_first(_VI["end_in_situ"])
_VI_NEGATORS = frozenset(_VI["negators"])
_VI_STARS_BEFORE = frozenset(_VI["stars_before"])
_VI_NEG_ANSWER_BEFORE = frozenset(_VI["negative_answer_before"])
_VI_SAO_FINAL_AFTER = frozenset(_VI["sao_final_after"])


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
    folded = fold(text)
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
    if not has_vietnamese_letter(words):
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
        words = split_words(sentences[index])
        if words:
            original = split_words(original_sentences[index])
            # Rare folds change word boundaries ("İ" gains a combining dot); casing is then
            # unknown, so the folded words stand in for it.
            return words, original if len(original) == len(words) else list(words)
    return [], []


def count_user_questions(messages: Sequence[Message]) -> int:
    """Number of the user's messages that are questions (see :func:`is_question`)."""
    return sum(1 for m in messages if m.speaker == Speaker.USER and is_question(m.content))
