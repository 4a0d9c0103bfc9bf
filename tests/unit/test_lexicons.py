"""The word lists are package data: found through importlib.resources and well formed."""

from __future__ import annotations

import unicodedata
from importlib import resources

import pytest

from conversation_events.domain.emotions import Emotion
from conversation_events.domain.text import LEXICONS, fold, lexicon

EMOTION_SECTIONS = {e.value for e in Emotion if e is not Emotion.NEUTRAL} | {
    "not_cues",
    "negators",
}


def strings(value: object) -> list[str]:
    """Every string in a parsed TOML value: list entries, table keys and their values."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, inner in value.items() for s in [key, *strings(inner)]]
    assert isinstance(value, list)
    return [s for inner in value for s in strings(inner)]


def entries(name: str) -> list[str]:
    return [
        s for part in lexicon(name).values() for section in part.values() for s in strings(section)
    ]


def test_every_lexicon_is_a_package_resource() -> None:
    folder = resources.files("conversation_events.domain").joinpath("lexicons")
    assert sorted(f.name for f in folder.iterdir() if f.name.endswith(".toml")) == sorted(
        f"{name}.toml" for name in LEXICONS
    )


@pytest.mark.parametrize("name", LEXICONS)
def test_emotion_sections_name_an_emotion(name: str) -> None:
    assert set(lexicon(name)["emotions"]) <= EMOTION_SECTIONS


@pytest.mark.parametrize("name", LEXICONS)
def test_entries_are_already_folded(name: str) -> None:
    # The question rules compare folded text with the entries as written.
    for entry in entries(name):
        assert entry == fold(entry) == unicodedata.normalize("NFC", entry), entry
        assert entry == " ".join(entry.split()), entry


def test_unknown_lexicon_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown lexicon"):
        lexicon("fr")
