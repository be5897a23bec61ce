"""The cross-field checks of easel's configuration (config.py): what types alone cannot say.

Each raises :class:`config.ConfigError` with a message naming the key and the reason; ``load_config``
runs :func:`check_config` once the file and the environment overrides are read."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from config import (
    BACKENDS,
    DEVICES,
    DTYPES,
    MODEL_FAMILIES,
    SPACINGS,
    Config,
    ConfigError,
    DeviceConfig,
    LoraRecipe,
    ModelConfig,
    RemoteConfig,
    StyleConfig,
    UpscalerConfig,
    _looks_local,
    missing_path,
)
from config_cluster import check_cluster
from config_controlnets import check_controlnets
from config_embeddings import check_embeddings
from config_ip_adapter import check_ip_adapter

_PROVIDER = re.compile(r"[a-z0-9][a-z0-9-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STYLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,39}")
STYLE_TEXT_LIMIT = 500


def check_config(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""

    def need(cond: bool, message: str) -> None:
        if not cond:
            raise ConfigError(message)

    names = set()
    for i, m in enumerate(cfg.all_models):
        key = "model" if i == 0 else f"models[{i - 1}]"
        need(bool(m.source.strip()), f"{key}.source: must name a hub id, a diffusers folder or a .safetensors file")
        need(m.family in MODEL_FAMILIES, f"{key}.family: {m.family!r} is not one of {', '.join(MODEL_FAMILIES)}")
        need(m.display_name not in names, f"{key}.name: {m.display_name!r} is used by two models")
        names.add(m.display_name)
        need(m.size == 0 or (m.size % 8 == 0 and m.size >= 64), f"{key}.size: {m.size} must be 0 or a multiple of 8, at least 64")
        need(m.min_size == 0 or (m.min_size % 8 == 0 and m.min_size >= 64), f"{key}.min_size: must be 0 or a multiple of 8, at least 64")
        need(m.max_size == 0 or (m.max_size % 8 == 0 and m.max_size >= max(64, m.min_size)), f"{key}.max_size: must be 0 or a multiple of 8, at least min_size")
        need(0 <= m.steps <= 200 and 0 <= m.max_steps <= 500, f"{key}.steps/max_steps: out of range")
        need(m.guidance == -1.0 or 0 <= m.guidance <= 30, f"{key}.guidance: {m.guidance} must be between 0 and 30")
        _check_loras(cfg, m, key)
        check_controlnets(cfg, m, key)
        check_embeddings(cfg, m, key)
        if cfg.backend == "remote":
            _check_remote_model(cfg, m, key)
        elif _looks_local(m.source, cfg.base_dir) and not cfg.path(m.source).exists():
            raise ConfigError(f"{key}.source: {missing_path(m.source, cfg.base_dir)}")
        _check_vae(cfg, m, key)
        check_ip_adapter(cfg, m, key)
    need(cfg.device.device in DEVICES, f"device.device: {cfg.device.device!r} is not one of {', '.join(DEVICES)}")
    need(cfg.device.dtype in DTYPES, f"device.dtype: {cfg.device.dtype!r} is not one of {', '.join(DTYPES)}")
    need(0 <= cfg.metrics.port <= 65535, "metrics.port: must be 0 (off) or a TCP port (1-65535)")
    need(bool(cfg.metrics.host.strip()), "metrics.host: must be an address to listen on, e.g. 127.0.0.1")
    need(cfg.device.threads >= 0, "device.threads: must be 0 (torch's default) or more")
    need(cfg.device.resident_models >= 0,
         "device.resident_models: must be 0 (one model on a GPU, all on a CPU host) or more")
    _check_fast_path(cfg)
    need(cfg.anime.device in DEVICES, f"anime.device: {cfg.anime.device!r} is not one of {', '.join(DEVICES)}")
    need(cfg.describe.device in DEVICES, f"describe.device: {cfg.describe.device!r} is not one of {', '.join(DEVICES)}")
    need(1 <= cfg.describe.suggestions <= 4, f"describe.suggestions: {cfg.describe.suggestions} must be between 1 and 4")
    q = cfg.queue
    need(1 <= q.per_user <= 1000, f"queue.per_user: {q.per_user} must be between 1 and 1000")
    need(q.per_user <= q.total <= 100_000, f"queue.total: {q.total} must be at least queue.per_user and at most 100000")
    need(1 <= q.max_batch <= 16, f"queue.max_batch: {q.max_batch} must be between 1 and 16")
    need(0 <= q.batch_wait_ms <= 1000, f"queue.batch_wait_ms: {q.batch_wait_ms} must be between 0 and 1000")
    need(0 <= q.affinity_skips <= 10, f"queue.affinity_skips: {q.affinity_skips} must be between 0 (off) and 10")
    need(cfg.storage.retention_days >= 0, "storage.retention_days: must be 0 (keep forever) or more")
    need(0 < cfg.limits.max_upload_mb <= 500, "limits.max_upload_mb: must be above 0 and at most 500")
    need(cfg.limits.max_input_pixels >= 64 * 64, "limits.max_input_pixels: must be at least 4096")
    need(1 <= cfg.limits.max_prompt_chars <= 6000, "limits.max_prompt_chars: must be between 1 and 6000")
    need(0 <= cfg.limits.actions_per_minute <= 10_000, "limits.actions_per_minute: must be between 0 (no limit) and 10000")
    need(0 <= cfg.limits.dms_per_minute <= 10_000, "limits.dms_per_minute: must be between 0 (no limit) and 10000")
    need(cfg.limits.max_stored_input_mb_per_member >= 0, "limits.max_stored_input_mb_per_member: must be 0 (no cap) or more")
    need(0.2 <= cfg.discord.progress_interval_s <= 60, "discord.progress_interval_s: must be between 0.2 and 60")
    need(0.1 <= cfg.discord.delivery_retry_s <= cfg.discord.delivery_retry_max_s <= 3600,
         "discord.delivery_retry_s / delivery_retry_max_s: need 0.1 <= delivery_retry_s <= delivery_retry_max_s <= 3600")
    need(1 <= cfg.discord.delivery_attempts <= 100, "discord.delivery_attempts: must be between 1 and 100")
    need(cfg.backend in BACKENDS, f"backend: {cfg.backend!r} is not one of {', '.join(BACKENDS)}")
    _check_remote(cfg.remote, len(cfg.all_models) if cfg.backend == "remote" else 1)
    _check_styles(cfg.styles)
    check_cluster(cfg.cluster)
    _check_upscalers(cfg, cfg.upscalers)
    # Both folders are created at start-up (and the database's file); only a file in the way stops that.
    for key, folder in (("storage.database", cfg.path(cfg.storage.database).parent),
                        ("storage.outputs", cfg.path(cfg.storage.outputs))):
        blocker = _file_in_the_way(folder)
        need(blocker is None, f"{key}: cannot create the folder {folder}: {blocker} is a file")


def _check_vae(cfg: Config, m: ModelConfig, key: str) -> None:
    """A local ``vae`` must be there (a hub id is checked when the model loads)."""
    if m.vae and cfg.backend != "remote" and _looks_local(m.vae, cfg.base_dir) and not cfg.path(m.vae).exists():
        raise ConfigError(f"{key}.vae: {missing_path(m.vae, cfg.base_dir)}")


# torch.compile's modes and easel's names for its shape handling (inference/fast_path.py).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_DYNAMIC = ("auto", "static", "dynamic")


def _check_fast_path(cfg: Config) -> None:
    """``device.compile_mode``/``compile_dynamic`` values; ``fuse_qkv`` next to switchable LoRAs, whose
    adapter layers a fused projection would bypass (fused LoRAs are part of the weights: fine)."""
    d = cfg.device
    if d.compile_mode not in COMPILE_MODES:
        raise ConfigError(f"device.compile_mode: {d.compile_mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if d.compile_dynamic not in COMPILE_DYNAMIC:
        raise ConfigError(f"device.compile_dynamic: {d.compile_dynamic!r} is not one of {', '.join(COMPILE_DYNAMIC)}")
    switchable = [(m.display_name, lo.name) for m in cfg.all_models for lo in m.loras if not lo.fuse]
    if d.fuse_qkv and switchable:
        model, lora = switchable[0]
        raise ConfigError(f"device.fuse_qkv: fused attention projections would skip the switchable LoRA {lora!r} of "
                          f"model {model!r}; set fuse = true on its [[model.loras]] entry, or fuse_qkv = false")
    _check_quantize(d, switchable)
    if d.fast_draft != 0 and not 2 <= d.fast_draft <= 10:
        raise ConfigError(f"device.fast_draft: {d.fast_draft} must be 0 (off) or run the deep UNet blocks every 2 to 10 steps")
    if d.fast_draft and d.compile:
        raise ConfigError("device.fast_draft: step caching swaps the UNet's block functions for each job, which a "
                          "compiled UNet would compile again and again; set compile = false or fast_draft = 0")


# device.quantize: torchao's configurations (inference/fast_path.py). fp8 needs compute capability 8.9+.
QUANTIZE = ("none", "int8", "int8-dynamic", "fp8")


def _check_quantize(d: DeviceConfig, switchable: list[tuple[str, str]]) -> None:
    """``device.quantize``: a known mode, torchao installed, not beside what it cannot work with."""
    if d.quantize not in QUANTIZE:
        raise ConfigError(f"device.quantize: {d.quantize!r} is not one of {', '.join(QUANTIZE)}")
    if d.quantize == "none":
        return
    if importlib.util.find_spec("torchao") is None:
        raise ConfigError(f"device.quantize = {d.quantize!r} needs torchao: pip install 'easel[quantize]' "
                          "(or set quantize = \"none\")")
    if switchable:
        model, lora = switchable[0]
        raise ConfigError(f"device.quantize: quantised layers cannot switch the LoRA {lora!r} of model {model!r} on "
                          "and off; set fuse = true on its [[model.loras]] entry, or quantize = \"none\"")
    if d.cpu_offload:
        raise ConfigError("device.quantize: quantised weights cannot be offloaded to the CPU between calls; "
                          "set cpu_offload = false or quantize = \"none\"")


def _check_loras(cfg: Config, m: ModelConfig, key: str) -> None:
    """Each ``[[model.loras]]`` entry: a name of its own, a weight, where it comes from, its recipe."""
    names: set[str] = set()
    for j, lora in enumerate(m.loras):
        where = f"{key}.loras[{j}]"
        if not lora.name.strip():
            raise ConfigError(f"{where}.name: must not be empty (members pick a LoRA by this name)")
        if lora.name in names:
            raise ConfigError(f"{where}.name: {lora.name!r} is used by two LoRAs of this model")
        names.add(lora.name)
        if not lora.source.strip():
            raise ConfigError(f"{where}.source: must name a LoRA file, a folder or a hub repo")
        if not 0.0 <= lora.weight <= 2.0:
            raise ConfigError(f"{where}.weight: {lora.weight} is outside 0..2")
        if lora.weight_name and lora.source.endswith((".safetensors", ".bin", ".pt", ".ckpt")):
            raise ConfigError(f"{where}.weight_name: {lora.source} is already one file; weight_name picks a file "
                              "of a folder or hub repo (remove it, or set source to the folder)")
        _check_recipe(lora.recipe, f"{where}.recipe")


def _check_recipe(r: LoraRecipe, key: str) -> None:
    if not 0 <= r.steps <= 200:
        raise ConfigError(f"{key}.steps: {r.steps} must be between 1 and 200 (0 = the model's)")
    if not (r.guidance == -1.0 or 0 <= r.guidance <= 30):
        raise ConfigError(f"{key}.guidance: {r.guidance:g} must be between 0 and 30")
    if r.spacing and r.spacing not in SPACINGS:
        raise ConfigError(f"{key}.spacing: {r.spacing!r} is not one of {', '.join(SPACINGS)}")
    if not (r.eta == -1.0 or 0 <= r.eta <= 1):
        raise ConfigError(f"{key}.eta: {r.eta:g} must be between 0 and 1")
    if r.scheduler:
        from inference.samplers import SAMPLERS  # only when a recipe names one: it imports diffusers

        if r.scheduler not in SAMPLERS:
            raise ConfigError(f"{key}.scheduler: {r.scheduler!r} is not a sampler easel knows "
                              f"(one of {', '.join(SAMPLERS)})")


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing part of ``folder`` (itself or a parent) when it is not a folder."""
    for part in (folder, *folder.parents):
        if part.exists():
            return None if part.is_dir() else part
    return None


def _check_remote(r: RemoteConfig, model_count: int) -> None:
    """Checked whatever the backend, so a mistake shows before the day someone switches."""

    def need(cond: bool, message: str) -> None:
        if not cond:
            raise ConfigError(message)

    need(r.provider == "auto" or _PROVIDER.fullmatch(r.provider) is not None,
         f"remote.provider: {r.provider!r} is not a provider name (\"auto\", \"hf-inference\", \"fal-ai\", ...)")
    need(not r.base_url or r.base_url.startswith(("http://", "https://")),
         f"remote.base_url: {r.base_url!r} must start with http:// or https:// (or be empty)")
    need(not r.base_url or model_count == 1,
         "remote.base_url: one endpoint serves one model; remove the [[models]] entries or clear base_url")
    need(_ENV_NAME.fullmatch(r.token_env) is not None and not r.token_env.startswith("hf_"),
         "remote.token_env: must be the NAME of an environment variable (e.g. HF_TOKEN), not the token "
         "itself; keep the token out of this file")
    need(0 < r.timeout_s <= 3600, f"remote.timeout_s: {r.timeout_s:g} must be above 0 and at most 3600")
    need(0 <= r.retries <= 10, f"remote.retries: {r.retries} must be between 0 and 10")
    need(0 <= r.backoff_s <= 600, f"remote.backoff_s: {r.backoff_s:g} must be between 0 and 600")
    need(r.backoff_s <= r.max_wait_s <= 3600,
         f"remote.max_wait_s: {r.max_wait_s:g} must be at least remote.backoff_s and at most 3600")
    need(1 <= r.concurrency <= 32, f"remote.concurrency: {r.concurrency} must be between 1 and 32")


def _check_styles(styles: tuple[StyleConfig, ...]) -> None:
    """``[[styles]]``: names members can type (unique, ignoring case), each adding some words."""
    seen: set[str] = set()
    for i, style in enumerate(styles):
        key = f"styles[{i}]"
        if STYLE_NAME.fullmatch(style.name) is None:
            raise ConfigError(f"{key}.name: {style.name!r} must be 1-40 letters, digits, spaces, '-' or '_', "
                              "starting with a letter or digit")
        if style.name.lower() in seen:
            raise ConfigError(f"{key}.name: {style.name!r} is used by two styles")
        seen.add(style.name.lower())
        if not style.prompt.strip() and not style.negative.strip():
            raise ConfigError(f"{key}: style {style.name!r} adds nothing; give it a prompt or a negative")
        if style.prompt.count("{prompt}") > 1:
            raise ConfigError(f"{key}.prompt: write {{prompt}} at most once (where the member's prompt goes)")
        for name, text in (("prompt", style.prompt), ("negative", style.negative)):
            if len(text) > STYLE_TEXT_LIMIT:
                raise ConfigError(f"{key}.{name}: {len(text)} characters; at most {STYLE_TEXT_LIMIT}")


def _check_remote_model(cfg: Config, m: ModelConfig, key: str) -> None:
    """What the remote backend cannot do is refused here, not silently dropped."""
    if not cfg.remote.base_url and _looks_local(m.source, cfg.base_dir):
        raise ConfigError(f"{key}.source: the remote backend needs a hub id like 'org/name', not {m.source!r} "
                          "(local files run only with backend = \"local\")")
    if m.family == "kandinsky22" or m.prior_source or (m.family == "auto" and "kandinsky" in m.source.lower()):
        raise ConfigError(f"{key}: Kandinsky 2.2 models run only with backend = \"local\" (the remote service "
                          "cannot run its prior and decoder)")
    for name, value in (("loras", m.loras), ("inpaint_source", m.inpaint_source),
                        ("single_file_config", m.single_file_config), ("vae", m.vae)):
        if value:
            raise ConfigError(f"{key}.{name}: only the local backend can use it; remove it or set backend = \"local\"")
    if m.safety_checker:
        raise ConfigError(f"{key}.safety_checker: the local NSFW classifier cannot check remote images; set it "
                          "to false with backend = \"remote\" (discord.nsfw_words still applies)")


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
UPSCALER_SUFFIXES = (".pth", ".pt", ".safetensors")


def _check_upscalers(cfg: Config, upscalers: tuple[UpscalerConfig, ...]) -> None:
    """``[[upscalers]]``: unique names, a file that exists or an http(s) URL of a ``.pth``/
    ``.safetensors`` file, a well-formed sha256, a scale of 1-8."""
    names: set[str] = set()
    for i, u in enumerate(upscalers):
        key = f"upscalers[{i}]"
        if not STYLE_NAME.fullmatch(u.name):
            raise ConfigError(f"{key}.name: {u.name!r} must be 1-40 letters, digits, spaces, _ or -")
        if u.name.lower() in names:
            raise ConfigError(f"{key}.name: {u.name!r} is used by two upscalers")
        names.add(u.name.lower())
        if not 1 <= u.scale <= 8:
            raise ConfigError(f"{key}.scale: {u.scale} must be between 1 and 8")
        if u.sha256 and not _SHA256.fullmatch(u.sha256.strip()):
            raise ConfigError(f"{key}.sha256: must be 64 hexadecimal digits")
        source = u.source.strip()
        path = source.split("?")[0].lower()
        if not path.endswith(UPSCALER_SUFFIXES):
            raise ConfigError(f"{key}.source: must be a .pth or .safetensors file or an URL of one, got {source!r}")
        if source.startswith(("http://", "https://")):
            continue
        if "://" in source:
            raise ConfigError(f"{key}.source: only http(s) URLs or local files, got {source!r}")
        if not cfg.path(source).is_file():
            raise ConfigError(f"{key}.source: {missing_path(source, cfg.base_dir)}")
