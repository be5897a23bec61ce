"""Full-size random-weight diffusion models for bench/gpu.py, built from the published configs.

The architectures (UNet, VAE, text encoders) are written out below from the ``config.json`` files of
runwayml/stable-diffusion-v1-5, stabilityai/sd-turbo (Stable Diffusion 2.1) and
stabilityai/sdxl-turbo (= SDXL 1.0 base): the same layers, so the same FLOPs and memory as the real
models; only the weight values are random (speed does not depend on them). No hub: the tokenizer is
the test vocabulary (tests/fixtures/tiny_models.py), whose ids are all inside the real vocabulary.

Each model is initialised on the benchmark's device (fast on a GPU), cast to the benchmark dtype and
saved with ``save_pretrained`` to a temporary folder, which bench/gpu.py then loads back through
easel's own loader. ``--dry-run`` uses the tiny test models instead (tests/fixtures).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

# UNet2DConditionModel configs (published values; in/out channels 4, two layers per block).
SD15_UNET: dict[str, Any] = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                 block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
SD21_UNET: dict[str, Any] = dict(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                 block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                 use_linear_projection=True)
SDXL_UNET: dict[str, Any] = dict(
    sample_size=128, cross_attention_dim=2048, attention_head_dim=(5, 10, 20), block_out_channels=(320, 640, 1280),
    layers_per_block=2, use_linear_projection=True, transformer_layers_per_block=(1, 2, 10),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
# AutoencoderKL: identical layers in all three; SDXL's scaling factor differs and it decodes in float32.
VAE: dict[str, Any] = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
# CLIPTextConfig: OpenAI CLIP ViT-L/14 (SD 1.5, SDXL's first), OpenCLIP ViT-H/14 (SD 2.1), OpenCLIP bigG/14 (SDXL's second).
CLIP_L: dict[str, Any] = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              hidden_act="quick_gelu", projection_dim=768)
CLIP_H: dict[str, Any] = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                              hidden_act="gelu", projection_dim=512)
CLIP_BIGG: dict[str, Any] = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                 num_attention_heads=20, hidden_act="gelu", projection_dim=1280)

# What bench/gpu.py asks for -> the architecture built. SD-Turbo is SD 2.1; SDXL-Turbo is SDXL 1.0 (one
# folder serves both SDXLs: the family set in the bench's config gives each its preset).
KINDS = {"sd15": "sd15", "sd-turbo": "sd-turbo", "sdxl": "sdxl", "sdxl-turbo": "sdxl"}
TINY = {"sd15": "sd15", "sd-turbo": "sd15", "sdxl": "sdxl"}  # --dry-run: the tiny test models


def _text_encoder(cls: type, spec: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    return cls(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, bos_token_id=len(tokenizer) - 2,
                              eos_token_id=len(tokenizer) - 1, pad_token_id=len(tokenizer) - 1, **spec))


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  timestep_spacing="trailing", steps_offset=1)


def build_full(kind: str, folder: Path, device: str, dtype: torch.dtype) -> Path:
    """Build the full-size random ``kind`` (sd15, sd-turbo, sdxl) on ``device`` and save it."""
    full_pipeline(kind, device).to(dtype).save_pretrained(folder)
    return folder


def full_pipeline(kind: str, device: str) -> Any:
    """The full-size ``kind`` with random weights, initialised on ``device`` ("meta": shapes only)."""
    from diffusers import (
        AutoencoderKL,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from tests.fixtures.tiny_models import tokenizer_vocab

    vocab, merges = tokenizer_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    torch.manual_seed(0)
    xl, sd21 = kind == "sdxl", kind == "sd-turbo"
    with torch.device(device):  # the weights only: the pipeline's own helpers stay on the CPU
        unet = UNet2DConditionModel(**(SDXL_UNET if xl else SD21_UNET if sd21 else SD15_UNET))
        vae = AutoencoderKL(**VAE, sample_size=1024 if xl else 512, scaling_factor=0.13025 if xl else 0.18215,
                            force_upcast=xl)
        text_encoder = _text_encoder(CLIPTextModel, CLIP_H if sd21 else CLIP_L, tokenizer)
        text_encoder_2 = _text_encoder(CLIPTextModelWithProjection, CLIP_BIGG, tokenizer) if xl else None
    if xl:
        return StableDiffusionXLPipeline(
            unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77), scheduler=_scheduler(),
            add_watermarker=False)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def build_tiny(kind: str, folder: Path) -> Path:
    """The dry run's stand-in: the tiny test model of the same family."""
    if kind == "sdxl":
        from tests.fixtures.tiny_sdxl import ensure_tiny_sdxl

        return ensure_tiny_sdxl(folder)
    from tests.fixtures.tiny_models import ensure_tiny_sd

    return ensure_tiny_sd(folder)


class Models:
    """Builds each model once per run, on first use, into ``root``; records how long each build took."""

    def __init__(self, root: Path, *, tiny: bool, device: str, dtype: torch.dtype) -> None:
        self.root, self.tiny, self.device, self.dtype = root, tiny, device, dtype
        self.build_s: dict[str, float] = {}
        self._folders: dict[str, Path] = {}

    def folder(self, kind: str) -> Path:
        key = TINY[KINDS[kind]] if self.tiny else KINDS[kind]
        if key not in self._folders:
            started = time.perf_counter()
            target = self.root / key
            if self.tiny:
                self._folders[key] = build_tiny(key, target)
            else:
                self._folders[key] = build_full(key, target, self.device, self.dtype)
                if self.device == "cuda":
                    torch.cuda.empty_cache()
            self.build_s[key] = round(time.perf_counter() - started, 2)
            print(f"  built {'tiny' if self.tiny else 'full-size random'} {key} in {self.build_s[key]:.1f} s",
                  flush=True)
        return self._folders[key]
