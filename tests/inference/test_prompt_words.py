"""The NSFW words of a prompt: whole words, any case (inference/prompt_words.py)."""

from __future__ import annotations

from inference.prompt_words import has_nsfw_word, nsfw_words_in

WORDS = ("nsfw", "Über", "two words", "")


def test_words_are_found_whole_and_in_any_case() -> None:
    assert nsfw_words_in("An NSFW, über cat", WORDS) == ["nsfw", "Über"]
    assert nsfw_words_in("nsfwish uberhaus", WORDS) == []
    assert nsfw_words_in("these two  words; two words!", WORDS) == ["two words"]


def test_has_nsfw_word_agrees_and_takes_no_prompt() -> None:
    for text in ("An NSFW cat", "nsfwish", "TWO WORDS", "über-cat", ""):
        assert has_nsfw_word(text, WORDS) is bool(nsfw_words_in(text, WORDS))
    assert not has_nsfw_word(None, WORDS)
    assert not has_nsfw_word("nsfw", ())
