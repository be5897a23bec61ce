"""Test-wide settings: never reach a hub, keep torch on one thread for steady timings."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency
    pass

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.fixtures.loopback import FileServer, serving  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD model folder, built once per test session."""
    from tests.fixtures.tiny_models import ensure_tiny_sd

    return ensure_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SDXL model folder (two text encoders, ``text_time``), built once per session."""
    from tests.fixtures.tiny_sdxl import ensure_tiny_sdxl

    return ensure_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_sdxl_lora(tiny_sdxl_dir: Path) -> Path:
    """A random LoRA for the tiny SDXL's UNet and first text encoder (diffusers' own peft layout)."""
    from tests.fixtures.tiny_lora import ensure_tiny_lora

    return ensure_tiny_lora(tiny_sdxl_dir, tiny_sdxl_dir.parent / "tiny-sdxl-lora.safetensors", style="peft")


@pytest.fixture(scope="session")
def tiny_kandinsky_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random-weight Kandinsky 2.2 folders (``prior``, ``decoder``, ``decoder-inpaint``), built once per session."""
    from tests.fixtures.tiny_kandinsky import ensure_tiny_kandinsky

    return ensure_tiny_kandinsky(tmp_path_factory.mktemp("models") / "tiny-kandinsky")


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight BLIP captioning model folder (/describe), built once per session."""
    from tests.fixtures.tiny_blip import ensure_tiny_blip

    return ensure_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture(scope="session")
def tiny_florence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Florence-2 captioning model folder (/describe), built once per session."""
    from tests.fixtures.tiny_florence import ensure_tiny_florence

    return ensure_tiny_florence(tmp_path_factory.mktemp("models") / "tiny-florence")


@pytest.fixture(scope="session")
def tiny_config(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Config serving the tiny model on the CPU, with 64-128 px sizes and a temp database."""
    from config import load_config

    work = tmp_path_factory.mktemp("easel")
    toml = work / "easel.toml"
    toml.write_text(
        f"""
[model]
source = "{tiny_model_dir}"
name = "tiny"
family = "sd15"
size = 64
min_size = 64
max_size = 128
steps = 4
max_steps = 20
guidance = 0.0

[device]
device = "cpu"
previews = true

[queue]
per_user = 4
total = 20
max_batch = 4
batch_wait_ms = 0

[storage]
database = "easel.db"
outputs = "outputs"
""",
        encoding="utf-8",
    )
    return load_config(toml, environ={})


@pytest.fixture(scope="session")
def anime_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight AnimeGAN2 weights as a local file (the real ones need a download)."""
    from inference.anime import Generator

    path = tmp_path_factory.mktemp("anime") / "face_paint_512_v2.pt"
    torch.save(Generator().state_dict(), path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Name the random order's seed in every run, `-q` included (which hides pytest-randomly's
    header line), so a failure that depends on the order can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.hasplugin("randomly") and seed is not None:
        terminalreporter.write_line(f"tests ran in random order: replay with --randomly-seed={seed}")


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A file server on loopback (weights downloads in tests never leave the machine)."""
    with serving() as server:
        yield server


@pytest.fixture(scope="session")
def tiny_upscaler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2x ESRGAN as a local ``.pth`` file (tests/fixtures/tiny_upscalers.py)."""
    from tests.fixtures.tiny_upscalers import tiny_esrgan

    return tiny_esrgan(tmp_path_factory.mktemp("upscalers") / "tiny-esrgan-2x.pth", scale=2)


@pytest.fixture(scope="session")
def tiny_ip_adapter(tiny_model_dir: Path) -> Path:
    """A random IP-Adapter for the tiny SD model, laid out like h94/IP-Adapter (``models/...``,
    tests/fixtures/tiny_ip_adapter.py)."""
    from tests.fixtures.tiny_ip_adapter import ensure_tiny_ip_adapter

    return ensure_tiny_ip_adapter(tiny_model_dir, tiny_model_dir.parent / "tiny-ip-adapter")


@pytest.fixture(scope="session")
def tiny_controlnet_dir(tiny_model_dir: Path) -> Path:
    """A random ControlNet for the tiny SD model (tests/fixtures/tiny_controlnet.py), built once per session."""
    from tests.fixtures.tiny_controlnet import ensure_tiny_controlnet

    return ensure_tiny_controlnet(tiny_model_dir, tiny_model_dir.parent / "tiny-controlnet")


@pytest.fixture(scope="session")
def tiny_sdxl_controlnet_dir(tiny_sdxl_dir: Path) -> Path:
    """A random ControlNet for the tiny SDXL model, built once per session."""
    from tests.fixtures.tiny_controlnet import ensure_tiny_controlnet

    return ensure_tiny_controlnet(tiny_sdxl_dir, tiny_sdxl_dir.parent / "tiny-sdxl-controlnet")


@pytest.fixture(scope="session")
def tiny_depth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random DPT depth-estimation model folder (transformers), built once per session."""
    from tests.fixtures.tiny_controlnet import ensure_tiny_depth

    return ensure_tiny_depth(tmp_path_factory.mktemp("models") / "tiny-depth")
