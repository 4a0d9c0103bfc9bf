"""Text helpers shared by the question and emotion analyses, and their word lists.

Text is compared after Unicode NFC normalisation and case folding, but *with* its diacritics:
in Vietnamese ``sao`` ("why") is not ``sáo`` ("flute") and ``à`` (a question particle) is not
``á`` (an exclamation), so stripping accents would turn statements into questions. The price
is that Vietnamese typed without accents ("ban co khoe khong") is not recognised by the
Vietnamese rules; such messages still count as questions when they end with ``?``.

The word lists are package data (``lexicons/*.toml``), read once through
:mod:`importlib.resources` so that they work from a source tree and an installed wheel alike.
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

__all__ = ["LEXICONS", "fold", "has_vietnamese_letter", "lexicon", "split_words"]

#: The lexicon files under ``lexicons/``: English, Vietnamese, and language-free symbols.
LEXICONS = ("en", "vi", "symbols")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_WORD_RE = re.compile(r"\w+(?:'\w+)*")


@functools.lru_cache(maxsize=1024)
def fold(text: str) -> str:
    """NFC, case-folded, with typographic apostrophes made ASCII.

    NFC matters beyond tidiness: Python's ``\\w`` does not match combining marks, so a
    decomposed "ạ" would otherwise split a Vietnamese word in two.
    """
    folded = unicodedata.normalize("NFC", text).casefold()
    return unicodedata.normalize("NFC", folded).translate(_APOSTROPHES)


def split_words(text: str) -> list[str]:
    """The words of ``text`` (letters and digits, with inner apostrophes: "don't")."""
    return _WORD_RE.findall(text)


def has_vietnamese_letter(words: Sequence[str]) -> bool:
    """Whether any word has a Latin letter outside ASCII (a Vietnamese diacritic, or đ).

    The Vietnamese rules only run on such sentences so that English "AI is cool" or "Sao
    Paulo" is not read as "ai" ("who") or "sao" ("why").
    """
    return any(not ch.isascii() and ch.isalpha() for word in words for ch in word)


@functools.cache
def lexicon(name: str) -> Mapping[str, Any]:
    """The parsed ``lexicons/<name>.toml`` (one of :data:`LEXICONS`)."""
    if name not in LEXICONS:
        raise ValueError(f"unknown lexicon {name!r}; expected one of {LEXICONS}")
    source = resources.files("conversation_events.domain").joinpath("lexicons", f"{name}.toml")
    return tomllib.loads(source.read_text(encoding="utf-8"))
