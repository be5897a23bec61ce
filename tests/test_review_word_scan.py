"""Review finding on the once-per-word-list word-flag backfill (studio.py flag_prompt_words)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from config import Config
from inference.jobs import UpscaleJob
from studio import Studio
from tests.test_word_scan import flags_after_start, record, with_words


async def test_a_list_back_after_a_start_without_words_is_scanned_again(tiny_config: Config, tmp_path: Path) -> None:
    """A start with no words left the last list's digest in place: results made meanwhile (nothing
    flagged them) were skipped when that same list came back."""
    words = with_words(tiny_config, tmp_path, "nsfwword")
    await record(words, "old", "a nsfwword harbour")
    assert await flags_after_start(words, "old") == [True]

    none = with_words(tiny_config, tmp_path)
    await record(none, "meanwhile", "a nsfwword quay")  # made while the list was empty: accepted unflagged
    assert await flags_after_start(none, "meanwhile") == [False]
    assert await flags_after_start(words, "meanwhile") == [True]


async def test_a_recovered_creative_upscale_whose_prompt_has_a_word_is_flagged(tiny_config: Config, tmp_path: Path) -> None:
    """launch() word-checks an upscale's prompt (/upscale prompt:), so recovery must too: a job
    queued under an older list runs flagged against today's, as a recovered /imagine does."""
    config = with_words(tiny_config, tmp_path, "nsfwword")
    studio = Studio(config)
    job = UpscaleJob(job_id="up", owner=1, init_image="in.png", upscaler="x", factor=2, mode="creative",
                     prompt="a nsfwword quay", model="tiny", steps=4, strength=0.3)
    assert studio._word_flagged(job).nsfw_word
    assert not studio._word_flagged(dataclasses.replace(job, prompt="a quay")).nsfw_word
