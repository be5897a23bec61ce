"""Session-wide model files built from the tiny model: a single-file checkpoint and two LoRAs.

Each is written once per test session (in well under a second) next to the tiny model folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the built model files, like a user's ``models/`` folder."""
    return tmp_path_factory.mktemp("model-files")


@pytest.fixture(scope="session")
def tiny_single_file(tiny_model_dir: Path, model_files: Path) -> Path:
    """The tiny model as ONE original-layout ``.safetensors`` checkpoint."""
    from tests.fixtures.single_file import ensure_tiny_single_file

    return ensure_tiny_single_file(tiny_model_dir, model_files / "tiny-sd.safetensors")


@pytest.fixture(scope="session")
def tiny_lora(tiny_model_dir: Path, model_files: Path) -> Path:
    """A random LoRA for the tiny model in the kohya layout most downloaded LoRAs use."""
    from tests.fixtures.tiny_lora import ensure_tiny_lora

    return ensure_tiny_lora(tiny_model_dir, model_files / "tiny-lora.safetensors", style="kohya")


@pytest.fixture(scope="session")
def tiny_lora_peft(tiny_model_dir: Path, model_files: Path) -> Path:
    """The same LoRA factors as :func:`tiny_lora`, in the layout diffusers saves (peft)."""
    from tests.fixtures.tiny_lora import ensure_tiny_lora

    return ensure_tiny_lora(tiny_model_dir, model_files / "tiny-lora-peft.safetensors", style="peft")


@pytest.fixture(scope="session")
def tiny_sdxl_single_file(tiny_sdxl_dir: Path, model_files: Path) -> Path:
    """The tiny SDXL as ONE original-layout checkpoint, named like a community SDXL file."""
    from tests.fixtures.single_file_sdxl import ensure_tiny_sdxl_single_file

    return ensure_tiny_sdxl_single_file(tiny_sdxl_dir, model_files / "juggernaut_v9.safetensors")


@pytest.fixture(scope="session")
def tiny_vae_dir(model_files: Path) -> Path:
    """A second tiny VAE (other random weights than the models' own) as a diffusers folder."""
    from tests.fixtures.tiny_sdxl import ensure_tiny_vae

    return ensure_tiny_vae(model_files / "tiny-vae")
