"""What typing a prompt offers (cogs/utils/prompt_complete.py): the text as typed first, then the
model's embedding words, never more than Discord's 100 characters, nothing for a model without any."""

from __future__ import annotations

from cogs.utils.prompt_complete import suggestions

WORDS = ["EasyNegative", "bad-hands-5"]


def test_the_word_being_typed_is_completed_and_the_text_as_typed_comes_first() -> None:
    assert suggestions("ugly, easyN", WORDS) == ["ugly, easyN", "ugly, EasyNegative", "ugly, easyN, bad-hands-5"]


def test_a_word_already_in_the_text_is_not_offered_again() -> None:
    assert suggestions("EasyNegative,", WORDS) == ["EasyNegative,", "EasyNegative, bad-hands-5"]


def test_a_model_without_embeddings_offers_nothing_so_typing_is_undisturbed() -> None:
    assert suggestions("a red fox", []) == []


def test_only_texts_that_fit_a_choice_are_offered() -> None:
    text = "x" * 90
    assert suggestions(text, WORDS) == [text]  # ", EasyNegative" would make it 104 characters
    assert suggestions("y" * 101, WORDS) == []
