"""/morph: an animation of one seed, as an animated WebP (GIF where WebP cannot be written).

Two kinds: with an ``image``, image-to-image of it at strengths rising evenly from ``from`` to
``to`` (a strength sweep); with a ``to_prompt`` instead, a morph from ``prompt`` to ``to_prompt``
(same seed, same starting noise, the text embeddings moving between the two). One job in the
queue, one place of the member's fair share (inference/morph.py does the frames). The 🎞️ button
under results runs the strength sweep on that result (cogs/utils/actions.py: ``morph_result``).

Options are checked by the bot, not by Discord's ranges, so a wrong value gets a sentence that
says what is allowed (inference/morph_options.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.inputs import PendingInput, load_pending
from cogs.utils.launch import launch, too_fast
from cogs.utils.options import chosen_model, complete_models
from cogs.utils.origin import InteractionOrigin
from inference.imaging import ImageInputError
from inference.morph_options import DEFAULT_FRAMES, MAX_FRAMES, MIN_FRAMES, build_morph
from inference.validation import MAX_SEED

if TYPE_CHECKING:
    from bot import EaselBot


class Morph(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="morph", description="An animation of one seed: an image swept through strengths, "
                                                    "or one prompt turning into another")
    @app_commands.rename(strength_from="from", strength_to="to")
    @app_commands.describe(
        image="The image to sweep (leave out for a prompt-to-prompt morph)",
        prompt="What the frames show (the first prompt of a prompt morph)",
        to_prompt="Morph from prompt to this prompt instead of sweeping an image",
        frames=f"How many frames ({MIN_FRAMES}-{MAX_FRAMES}, default {DEFAULT_FRAMES})",
        strength_from="Strength of the first frame (0.05-1, default 0.1)",
        strength_to="Strength of the last frame (above from, up to 1, default 0.9)",
        seed="The one seed of every frame",
        model="Model to use (default: the server's)",
    )
    @app_commands.autocomplete(model=complete_models)
    async def morph(self, interaction: discord.Interaction, image: discord.Attachment | None = None,
                    prompt: app_commands.Range[str, 0, 4000] | None = None,
                    to_prompt: app_commands.Range[str, 0, 4000] | None = None, frames: int | None = None,
                    strength_from: float | None = None, strength_to: float | None = None,
                    seed: app_commands.Range[int, 0, MAX_SEED] | None = None, model: str | None = None) -> None:
        origin = InteractionOrigin(interaction)
        if await too_fast(self.bot, origin):
            return
        limits = self.bot.config.limits
        inputs: tuple[PendingInput, ...] = ()
        if image is not None:
            try:
                inputs = (await origin.in_time(load_pending(self.bot.studio, image, limits)),)
            except ImageInputError as exc:
                await origin.error(str(exc))
                return
        source = inputs[0] if inputs else None
        info = self.bot.studio.model_info(await chosen_model(self.bot, origin, model))
        await launch(self.bot, origin, lambda job_id: build_morph(
            job_id, interaction.user.id, info, init_image=source.path if source else None,
            source_size=source.size if source else None, prompt=prompt, to_prompt=to_prompt, frames=frames,
            strength_from=strength_from, strength_to=strength_to, seed=seed,
            max_prompt_chars=limits.max_prompt_chars), inputs=inputs)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Morph(bot))
