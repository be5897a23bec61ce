"""Small helpers shared by the remote backend's engine and studio tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from PIL import Image

from inference.jobs import TextToImageJob


def t2i(job_id: str, owner: int = 1, **kw: object) -> TextToImageJob:
    params: dict[str, object] = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "steps": 2,
                                 "guidance": 0.0, "seed": 7, "model": "sdxl-turbo"}
    params.update(kw)
    return TextToImageJob(job_id=job_id, owner=owner, **params)  # type: ignore[arg-type]


def save_png(path: Path, colour: tuple[int, ...], size: tuple[int, int] = (64, 64), mode: str = "RGB") -> str:
    Image.new(mode, size, colour).save(path)
    return str(path)


async def until(condition: Callable[[], bool], limit: float = 20.0) -> None:
    """Wait (on the loop) until ``condition()`` holds; fail the test after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.01)


async def until_true(check: Callable[[], Awaitable[bool]], limit: float = 20.0) -> None:
    """Like :func:`until` for a check that has to await (a database read)."""
    async with asyncio.timeout(limit):
        while not await check():
            await asyncio.sleep(0.01)
