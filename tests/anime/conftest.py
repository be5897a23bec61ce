"""Fixtures for the AnimeGAN2 tests: random-weight checkpoints. Downloads are served from
127.0.0.1 by the root conftest's ``file_server`` (tests/fixtures/loopback.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.anime import Generator


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight generator's state_dict saved the way the published checkpoints are."""
    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("animegan2") / "random.pt"
    torch.save(Generator().state_dict(), path)
    return path


