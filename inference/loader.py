"""Loading one model into the pipelines every command uses, sharing one copy of the weights.

A model source is a hub id (``stabilityai/sd-turbo``), a local diffusers folder or a single
``.safetensors``/``.ckpt`` file. Text-to-image loads the weights; image-to-image and inpainting
are derived with ``from_pipe`` and share the very same modules (no extra memory). A dedicated
inpainting checkpoint may be configured instead. Every failure becomes :class:`ModelLoadError`
whose message is one line an admin can act on.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from config import DeviceConfig, ModelConfig, is_local_source, missing_path, source_path
from inference.devices import resolve_device, resolve_dtype
from inference.families import detect_family, family_from_name, pipeline_class_of
from inference.fast_path import QuantizeError, apply_fast_path, quantized_label
from inference.jobs import JobKind
from inference.presets import ModelPreset, preset_for
from inference.samplers import SAMPLERS, build_scheduler
from inference.style_ref import load_style_adapter

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; ``str()`` is one clear line."""


@dataclass
class LoadedModel:
    """One model's pipelines (sharing modules), its preset and the device it lives on."""

    name: str
    source: str
    family: str
    preset: ModelPreset
    device: torch.device
    dtype: torch.dtype
    pipes: dict[JobKind, Any]
    loras: dict[str, str] = field(default_factory=dict)  # name -> adapter name
    default_scheduler: Any = None
    style_adapter: Any = None  # inference/style_ref.StyleAdapter when [model.ip_adapter] is configured
    # Speed-ups that change pixels (device.quantize, device.fast_draft), said in each PNG they made.
    quantized: str = ""
    fast_draft: int = 0
    controls: dict[str, Any] = field(default_factory=dict)  # mode -> inference.control.loading.LoadedControl
    _schedulers: dict[tuple[str, str], Any] = field(default_factory=dict)

    def all_pipes(self) -> list[Any]:
        """Every distinct pipeline of the model (the derived ones share most modules with the base)."""
        controls = (c.pipe for c in self.controls.values())  # the ControlNet pipelines too (their ControlNets)
        return list({id(p): p for p in (*self.pipes.values(), *controls)}.values())

    @property
    def tokenizer(self) -> Any:
        pipe = self.pipes[JobKind.IMAGINE]
        return getattr(pipe, "tokenizer", None) or getattr(pipe, "prior_tokenizer", None)  # Kandinsky: the prior's

    def scheduler(self, name: str, spacing: str = "") -> Any:
        """The scheduler instance for a sampler name ("" = the model's own) and timestep spacing
        ("" = the model's config), built once per (name, spacing) and kept."""
        if not name and not spacing:
            return self.default_scheduler
        key = (name, spacing)
        if key not in self._schedulers:
            self._schedulers[key] = build_scheduler(name, self.default_scheduler.config, spacing,
                                                    default_class=type(self.default_scheduler).__name__)
        return self._schedulers[key]


def local_path(value: str, base_dir: Path) -> Path | None:
    """``value`` as a path resolved against the config's folder, or None when it is a hub id.

    ``models/my-model`` reads like a hub id (``org/name``); it is a path when it exists there, or
    when its first folder (``models``) does.
    """
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir / path
    return path if is_local_source(value, base_dir) or path.exists() else None


def _source_kind(model: ModelConfig, base_dir: Path) -> tuple[str, str]:
    """``("file"|"folder"|"hub", resolved source)``; raises for a local path that is not there."""
    path = local_path(model.source, base_dir)
    if path is None:
        return "hub", model.source
    if path.is_file():
        return "file", str(path)
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise ModelLoadError(f"model {model.display_name!r}: {path} is a folder but not a diffusers model "
                                 "(no model_index.json)")
        return "folder", str(path)
    raise ModelLoadError(f"model {model.display_name!r}: {missing_path(model.source, base_dir)}")


def _single_file_config(model: ModelConfig, base_dir: Path) -> str:
    """The ``config=`` for ``from_single_file``: a hub id, or a local diffusers folder checked here."""
    path = local_path(model.single_file_config, base_dir)
    if path is None:
        return model.single_file_config
    if not (path / "model_index.json").is_file():
        what = "is not a diffusers model folder (no model_index.json)" if path.is_dir() else "does not exist"
        raise ModelLoadError(f"model {model.display_name!r}: single_file_config {path} {what}")
    return str(path)


def _safety_kwargs(model: ModelConfig) -> dict[str, Any]:
    """The safety checker is an explicit choice: off unless ``safety_checker = true``."""
    if model.safety_checker:
        return {}
    return {"safety_checker": None, "requires_safety_checker": False}


def load_vae(model: ModelConfig, like: Any, dtype: torch.dtype, base_dir: Path) -> Any:
    """``model.vae`` as an ``AutoencoderKL``: a diffusers folder (or a model folder with ``vae/``), a hub id,
    or one ``.safetensors`` file (original or diffusers key names) read with ``like``'s (the model's own
    VAE's) config, since such a file carries weights only."""
    from diffusers import AutoencoderKL

    where = f"model {model.display_name!r}: vae {model.vae}"
    path = local_path(model.vae, base_dir)
    try:
        if path is None:
            return AutoencoderKL.from_pretrained(model.vae, torch_dtype=dtype)
        if path.is_file():
            return _vae_from_file(path, like, dtype)
        if not path.is_dir():
            raise ModelLoadError(f"model {model.display_name!r}: vae: {missing_path(model.vae, base_dir)}")
        sub = next((s for s in ("", "vae") if (path / s / "config.json").is_file()), None)
        if sub is None:
            raise ModelLoadError(f"{where}: {path} is not a VAE folder (no config.json, nor vae/config.json)")
        return AutoencoderKL.from_pretrained(path, subfolder=sub or None, torch_dtype=dtype, local_files_only=True)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise _vae_error(where, exc) from None


def _vae_from_file(path: Path, like: Any, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise ValueError("a single-file VAE must be a .safetensors file")
    try:
        weights = load_file(str(path))
    except SafetensorError as exc:
        raise ValueError(f"not a readable .safetensors file ({exc})") from None
    if not any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for k in weights):
        weights = convert_ldm_vae_checkpoint(weights, like.config)  # original (LDM) key names
    vae = AutoencoderKL.from_config(like.config)
    vae.load_state_dict(weights, strict=True)
    return vae.to(dtype)


def _vae_error(where: str, exc: BaseException) -> ModelLoadError:
    text = str(exc)
    if "size mismatch" in text or "Missing key" in text or "Unexpected key" in text:
        return ModelLoadError(f"{where} does not fit this model's VAE (was it made for another model family?)")
    return ModelLoadError(f"{where} could not be loaded: {first_line(exc)}")


def _load_base(model: ModelConfig, kind: str, source: str, dtype: torch.dtype, base_dir: Path) -> Any:
    from diffusers import (
        AutoPipelineForText2Image,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    if kind == "file":
        family = model.family if model.family != "auto" else detect_family(source)
        cls = StableDiffusionXLPipeline if family.startswith("sdxl") else StableDiffusionPipeline
        kwargs: dict[str, Any] = {"dtype": dtype}
        if model.single_file_config:
            kwargs["config"] = _single_file_config(model, base_dir)
        if not family.startswith("sdxl"):
            kwargs.update(_safety_kwargs(model))
        return cls.from_single_file(source, **kwargs)
    kwargs = {"dtype": dtype}
    if kind == "folder":
        kwargs["local_files_only"] = True
    if not model.safety_checker and _has_safety_checker(kind, source):
        kwargs.update(_safety_kwargs(model))
    try:
        return AutoPipelineForText2Image.from_pretrained(source, **kwargs)
    except TypeError:
        # A pipeline that takes no safety_checker argument after all.
        kwargs.pop("safety_checker", None)
        kwargs.pop("requires_safety_checker", None)
        return AutoPipelineForText2Image.from_pretrained(source, **kwargs)


def _has_safety_checker(kind: str, source: str) -> bool:
    """Whether the pipeline takes a ``safety_checker`` (SD 1.x/2.x do; SDXL and Kandinsky have none):
    passing one to those only earns a warning that it is ignored."""
    if kind == "folder":
        cls = pipeline_class_of(Path(source))
        return cls.startswith("StableDiffusion") and "XL" not in cls
    return not family_from_name(source).startswith(("sdxl", "kandinsky"))


def _check_safety_checker(model: ModelConfig, pipe: Any) -> None:
    """``safety_checker = true`` on a pipeline without one would check nothing: refuse it."""
    if model.safety_checker and "safety_checker" not in getattr(pipe, "components", {}):
        raise ModelLoadError(f"model {model.display_name!r}: safety_checker = true, but {type(pipe).__name__} has no "
                             "safety checker; set it to false (discord.nsfw_words still applies)")


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face hub answers at all (any HTTP status counts; proxies from the
    environment are used, as huggingface_hub does)."""
    from huggingface_hub import constants

    try:
        with urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def model_hub_failure(model: ModelConfig, base_dir: Path, exc: OSError) -> ModelLoadError:
    """One line for a hub id that did not load. diffusers says "does not appear to have a file named
    model_index.json" whether the hub is unreachable, the id is wrong or a local folder was meant:
    tell these apart."""
    from huggingface_hub import constants

    name, source = model.display_name, model.source
    folder = f"./models/{source.rstrip('/').split('/')[-1]}"
    no_folder = f"there is no folder {source_path(source, base_dir)}"
    if constants.is_offline_mode():
        return ModelLoadError(
            f"model {name!r}: {source} is not in the Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot be "
            f"downloaded ({no_folder}). Unset HF_HUB_OFFLINE, or set model.source to a local diffusers folder "
            f"such as \"{folder}\"")
    if not hub_reachable():
        return ModelLoadError(
            f"model {name!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached (no internet?) to "
            f"download {source} ({no_folder}). Download it where there is internet "
            f"(hf download {source} --local-dir {folder}), copy that folder here and set model.source = \"{folder}\"")
    return ModelLoadError(f"model {name!r} could not be loaded from {source}: is the hub id right? ({no_folder} "
                          f"either; a local folder is written ./name): {first_line(exc)}")


def quiet_loading() -> None:
    """No progress bars while models load ("Loading pipeline components...", downloads): in a log they
    look like errors. Warnings and errors still show."""
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()


def check_tokenizer(pipe: Any, name: str) -> None:
    """Refuse a tokenizer that maps whole sentences to one id (what offline hub fallbacks produce)."""
    tok = getattr(pipe, "tokenizer", None)
    if tok is None:
        return
    ids = tok("a photo of a cat", add_special_tokens=False).input_ids
    if len(ids) < 2 or len(set(ids)) < 2:
        raise ModelLoadError(f"model {name!r}: its tokenizer is broken (every word maps to one id); "
                             "re-download the model")
    if getattr(tok, "model_max_length", 0) > 100_000:
        tok.model_max_length = 77


def apply_device_options(pipe: Any, device: torch.device, opts: DeviceConfig) -> None:
    pipe.set_progress_bar_config(disable=True)
    if opts.cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    if opts.attention_slicing:
        pipe.enable_attention_slicing()
    if opts.vae_tiling and hasattr(pipe, "vae"):
        pipe.vae.enable_tiling()
    if opts.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    try:
        apply_fast_path(pipe, opts)  # fused QKV, quantised UNet, torch.compile
    except QuantizeError as exc:
        raise ModelLoadError(str(exc)) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def configured_scheduler(model: ModelConfig, base: Any) -> Any:
    """The model's own scheduler, or the sampler ``model.scheduler`` names, built from its config."""
    if not model.scheduler:
        return base.scheduler
    if model.scheduler not in SAMPLERS:
        raise ModelLoadError(f"model {model.display_name!r}: scheduler {model.scheduler!r} is not one of "
                             f"{', '.join(SAMPLERS)}")
    return build_scheduler(model.scheduler, base.scheduler.config)


def load_model(model: ModelConfig, device_cfg: DeviceConfig, base_dir: Path = Path(".")) -> LoadedModel:
    """Load ``model`` and derive its image-to-image and inpainting pipelines.

    Runs on the inference thread (it is torch work); at start-up ``--check`` calls it directly.
    """
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    from inference.control.loading import load_controls  # it imports this module
    from inference.embeddings import load_embeddings
    from inference.kandinsky import is_kandinsky, load_kandinsky  # both import this module
    from inference.loras import load_loras

    if is_kandinsky(model, base_dir):
        if model.vae:
            raise ModelLoadError(f"model {model.display_name!r}: vae replaces the AutoencoderKL of Stable Diffusion "
                                 "models; Kandinsky 2.2 decodes with its own MoVQ, so remove vae")
        if model.controlnets:
            raise ModelLoadError(f"model {model.display_name!r}: Kandinsky 2.2 models take no ControlNet; remove them")
        if model.ip_adapter.source:
            raise ModelLoadError(f"model {model.display_name!r}: Kandinsky 2.2 models take no ip_adapter; remove it")
        if model.embeddings:
            raise ModelLoadError(f"model {model.display_name!r}: textual inversion embeddings are made for Stable "
                                 "Diffusion's CLIP text encoders; Kandinsky 2.2 takes none, so remove embeddings")
        return load_kandinsky(model, device_cfg, base_dir)

    quiet_loading()
    try:
        device = resolve_device(device_cfg.device)
    except RuntimeError as exc:
        raise ModelLoadError(str(exc)) from None
    dtype = resolve_dtype(device_cfg.dtype, device)
    kind, source = _source_kind(model, base_dir)
    try:
        base = _load_base(model, kind, source, dtype, base_dir)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SingleFileComponentError) as exc:
        if kind == "hub" and isinstance(exc, OSError):
            raise model_hub_failure(model, base_dir, exc) from None
        hint = " (is the id right?)" if kind == "hub" else ""
        if kind == "file" and not model.single_file_config:
            hint = " (set single_file_config to the diffusers folder or hub id this checkpoint belongs to)"
        raise ModelLoadError(f"model {model.display_name!r} could not be loaded from {model.source}{hint}: "
                             f"{first_line(exc)}") from None
    check_tokenizer(base, model.display_name)
    _check_safety_checker(model, base)
    family = model.family
    if family == "auto":
        family = detect_family(model.source, base_dir=base_dir, pipe=base)
    vae = None
    if model.vae:
        vae = load_vae(model, base.vae, dtype, base_dir)
        base = type(base).from_pipe(base, vae=vae)
    # LoRAs and embeddings go in before the pipeline is moved, offloaded or compiled, so each of those sees them.
    load_embeddings(base, model, base_dir)
    loras = load_loras(base, model, base_dir)
    style_adapter = load_style_adapter(base, model, base_dir)
    apply_device_options(base, device, device_cfg)
    pipes: dict[JobKind, Any] = {JobKind.IMAGINE: base}
    pipes[JobKind.VARY] = AutoPipelineForImage2Image.from_pipe(base)
    if model.inpaint_source:
        inpaint_cfg = ModelConfig(source=model.inpaint_source, name=f"{model.display_name}-inpaint",
                                  safety_checker=model.safety_checker)
        ikind, isource = _source_kind(inpaint_cfg, base_dir)
        try:
            from diffusers import AutoPipelineForInpainting as Inpaint

            kwargs: dict[str, Any] = {"dtype": dtype, **_safety_kwargs(inpaint_cfg)}
            if vae is not None:
                kwargs["vae"] = vae
            if ikind == "folder":
                kwargs["local_files_only"] = True
            inpaint = Inpaint.from_pretrained(isource, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ModelLoadError(f"inpainting model {model.inpaint_source} could not be loaded: {first_line(exc)}") from None
        check_tokenizer(inpaint, inpaint_cfg.display_name)
        # The same LoRAs as the base: fused ones are part of the model, switchable ones can be picked in /paint.
        load_loras(inpaint, model, base_dir)
        load_embeddings(inpaint, model, base_dir)
        apply_device_options(inpaint, device, device_cfg)
        pipes[JobKind.PAINT] = inpaint
    else:
        pipes[JobKind.PAINT] = AutoPipelineForInpainting.from_pipe(base)
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    controls = load_controls(model, base, family, device, dtype, base_dir)
    log.info("loaded model %s (%s, family %s) on %s as %s%s", model.display_name, kind, family, device,
             str(dtype).removeprefix("torch."),
             "".join(f", LoRA {lo.name} fused at {lo.weight:g}" for lo in model.loras if lo.fuse))
    return LoadedModel(
        name=model.display_name, source=model.source, family=family, preset=preset_for(model, family),
        device=device, dtype=dtype, pipes=pipes, loras=loras, default_scheduler=configured_scheduler(model, base),
        style_adapter=style_adapter, controls=controls, quantized=quantized_label(device_cfg),
        fast_draft=device_cfg.fast_draft,
    )
