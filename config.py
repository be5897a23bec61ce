"""easel's configuration: one TOML file plus environment overrides, validated at start-up.

Every section is a frozen dataclass. ``load_config`` reads ``easel.toml`` (or the path given),
applies ``EASEL_<SECTION>__<KEY>`` environment overrides (for example
``EASEL_QUEUE__PER_USER=3``), checks every value and raises :class:`ConfigError` with a message
naming the key and what is wrong. The Discord token never lives in the file: it comes from the
``DISCORD_TOKEN`` environment variable or a ``.env`` file and is never logged.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config_adapters import EmbeddingConfig, IpAdapterConfig, LoraConfig, LoraRecipe
from config_controlnets import ControlNetConfig
from config_sources import _looks_local as _looks_local
from config_sources import is_local_source as is_local_source
from config_sources import missing_path as missing_path
from config_sources import read_secret
from config_sources import source_path as source_path

MODEL_FAMILIES = ("auto", "sd15", "sd21", "sd-turbo", "sdxl", "sdxl-turbo", "kandinsky22")
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float32", "float16", "bfloat16")
BACKENDS = ("local", "remote")
ENV_PREFIX = "EASEL_"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key and the reason."""


# diffusers' ``timestep_spacing`` values, in the order members are offered them (trailing suits few steps)
SPACINGS = ("trailing", "leading", "linspace")


@dataclass(frozen=True)
class ModelConfig:
    """One diffusion model: a hub id, a local diffusers folder or a single ``.safetensors`` file."""

    source: str = "stabilityai/sd-turbo"
    name: str = ""
    family: str = "auto"
    inpaint_source: str = ""
    scheduler: str = ""
    safety_checker: bool = False
    loras: tuple[LoraConfig, ...] = ()
    embeddings: tuple[EmbeddingConfig, ...] = ()
    # For a single .safetensors file: a diffusers folder or hub id holding the matching configs
    # (needed offline; online, diffusers finds them by itself).
    single_file_config: str = ""
    # A separate VAE replacing the model's own in all its pipelines: a diffusers AutoencoderKL folder,
    # a hub id or one .safetensors file ("" = the model's own).
    vae: str = ""
    # Kandinsky 2.2: the prior's folder or hub id (source is the decoder); empty = the community prior for a hub decoder.
    prior_source: str = ""
    ip_adapter: IpAdapterConfig = field(default_factory=IpAdapterConfig)
    # ControlNets for /imagine's control picture, one per mode (config_controlnets.py).
    controlnets: tuple[ControlNetConfig, ...] = ()
    # Overrides of the family preset; 0 keeps the preset's value.
    steps: int = 0
    guidance: float = -1.0
    size: int = 0
    min_size: int = 0
    max_size: int = 0
    max_steps: int = 0

    @property
    def fused_recipe(self) -> LoraRecipe:
        """The model's defaults that its fused LoRAs bring (the first one to set a value wins)."""
        recipe = LoraRecipe()
        for lora in reversed(self.loras):
            if lora.fuse:
                recipe = lora.recipe.over(recipe)
        return recipe

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return Path(self.source.rstrip("/")).name.removesuffix(".safetensors") or self.source


@dataclass(frozen=True)
class DeviceConfig:
    device: str = "auto"
    dtype: str = "auto"
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    channels_last: bool = False
    compile: bool = False
    previews: bool = True
    threads: int = 0
    # Models kept loaded: the one in use on the device, the others parked in CPU RAM
    # (inference/residency.py). 0 = one on an accelerator, all on a CPU host.
    resident_models: int = 0
    # Linux: the GPU thread gets core(s) of its own and the rest of the bot the others, when the
    # machine has a core to spare (inference/placement.py).
    pin_threads: bool = True
    # The fast path (inference/fast_path.py): one product for q/k/v in every attention layer;
    # torch.compile's mode and shape handling (auto | static | dynamic).
    fuse_qkv: bool = False
    compile_mode: str = "reduce-overhead"
    compile_dynamic: str = "auto"
    # Opt-in speed-ups that CHANGE pixels (labelled in each PNG): the UNet's weights quantised by torchao
    # (none | int8 | int8-dynamic | fp8), and DeepCache step caching, the deep UNet blocks run every
    # ``fast_draft`` steps (0 = off). inference/fast_path.py, inference/step_cache.py.
    quantize: str = "none"
    fast_draft: int = 0


@dataclass(frozen=True)
class QueueConfig:
    per_user: int = 4
    total: int = 50
    max_batch: int = 4
    batch_wait_ms: int = 5
    # Times a job due next may be passed over for jobs of the model already on the GPU (0 = never).
    affinity_skips: int = 2


@dataclass(frozen=True)
class StorageConfig:
    database: str = "easel.db"
    outputs: str = "outputs"
    retention_days: int = 0
    # Encode and store result PNGs in a small child process (off the interpreter lock the GPU
    # thread needs); false: on a worker thread of the bot. storage/png_writer.py.
    png_process: bool = True


@dataclass(frozen=True)
class LimitsConfig:
    max_upload_mb: float = 20.0
    max_input_pixels: int = 16_000_000
    max_prompt_chars: int = 1000
    # Per member (cogs/utils/ratelimit.py): requests (image commands and menus, result buttons, reactions) and
    # ✉️ DMs, per minute; 0 = no limit.
    actions_per_minute: int = 20
    dms_per_minute: int = 5
    # Uploaded images (and masks) kept for a member's jobs, in MB; 0 = no cap.
    max_stored_input_mb_per_member: float = 200.0


@dataclass(frozen=True)
class AnimeConfig:
    cache_dir: str = "cache/animegan2"
    device: str = "auto"
    default_style: str = "face_paint_512_v2"
    weights: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    # Download missing weights into cache_dir: in the background at start-up, by --check and by
    # /easel anime (never for a job). false: only files placed there or named in weights are used.
    download: bool = True


@dataclass(frozen=True)
class DescribeConfig:
    """/describe: an image-captioning model (transformers: BLIP or Florence-2) that suggests prompts."""

    # A hub id (Salesforce/blip-image-captioning-base) or a local folder; "" = /describe is off.
    source: str = ""
    device: str = "auto"
    suggestions: int = 4  # 1-4 prompt suggestions per image
    # Download a hub model once: in the background at start-up and by --check (never for a job).
    download: bool = True
    cache_dir: str = ""  # "" = the Hugging Face cache (HF_HOME)


@dataclass(frozen=True)
class DiscordConfig:
    progress_interval_s: float = 1.5
    nsfw_words: tuple[str, ...] = ()
    sync_commands: bool = True
    dev_guild: int = 0
    # A result Discord would not take is posted again after delivery_retry_s, doubling up to
    # delivery_retry_max_s; refused (403 and other 4xx) or failed inside easel delivery_attempts times,
    # it is undeliverable.
    delivery_retry_s: float = 5.0
    delivery_retry_max_s: float = 300.0
    delivery_attempts: int = 8


@dataclass(frozen=True)
class RemoteConfig:
    """The Hugging Face Inference API backend (``backend = "remote"``).

    Which model to ask for is not set here: ``[model]`` (and ``[[models]]``) name it with a hub id
    for either backend, so presets, sizes and the model picker work the same way.
    """

    provider: str = "auto"  # "auto" = the first provider enabled for the model in the token's HF settings
    base_url: str = ""  # send every request here instead (a dedicated endpoint, or a test server)
    token_env: str = "HF_TOKEN"  # the environment variable holding the token (never the token itself)
    timeout_s: float = 120.0
    retries: int = 3  # further attempts after a 429, a 503 ("model loading"), a 5xx or a dropped connection
    backoff_s: float = 2.0  # first wait when the service gives no hint; doubles on each retry
    max_wait_s: float = 60.0  # longest single wait; a service asking for more fails the job at once
    concurrency: int = 2  # requests in flight at once


@dataclass(frozen=True)
class StyleConfig:
    """A style preset members pick with ``style:`` (``[[styles]]`` in easel.toml).

    ``prompt`` wraps the member's prompt where it says ``{prompt}`` (``"a watercolor of {prompt}"``),
    or else is appended to it after a comma; ``negative`` is added to the member's negative prompt.
    """

    name: str
    prompt: str = ""
    negative: str = ""


@dataclass(frozen=True)
class UpscalerConfig:
    """An upscaler model (``[[upscalers]]`` in easel.toml), loaded with spandrel (inference/upscale/).

    ``source``: a local ``.pth``/``.safetensors`` file, or an http(s) URL fetched once into
    ``cache/upscalers`` (inference/weights.py); ``sha256``: the file's digest (checked when given);
    ``scale``: how much the model enlarges (its architecture says too; they must agree)."""

    name: str
    source: str
    sha256: str = ""
    scale: int = 4


# Used when easel.toml has no [[styles]]; any [[styles]] list replaces all of them (styles = [] for none).
DEFAULT_STYLES: tuple[StyleConfig, ...] = (
    StyleConfig("photo", "a photo of {prompt}, natural light, 35mm, sharp focus", "painting, drawing, cartoon, 3d render"),
    StyleConfig("oil-painting", "{prompt}, oil painting, thick visible brush strokes, canvas texture", "photo, 3d render"),
    StyleConfig("watercolor", "{prompt}, watercolor painting, soft washes, paper texture", "photo, 3d render"),
    StyleConfig("van-gogh", "{prompt}, painting by Vincent van Gogh, swirling brush strokes", "photo"),
    StyleConfig("anime", "{prompt}, anime style, cel shading, clean line art", "photo, realistic"),
    StyleConfig("pixel-art", "pixel art of {prompt}, 16-bit, limited palette", "blurry, photo, smooth gradients"),
    StyleConfig("sketch", "pencil sketch of {prompt}, graphite, cross-hatching", "colour, photo"),
)


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics and /healthz over HTTP (cogs/metrics.py); off while ``port`` is 0."""

    port: int = 0
    host: str = "127.0.0.1"  # loopback: put a reverse proxy or the scraper on this machine


@dataclass(frozen=True)
class ClusterConfig:
    """Workers on other machines through Redis Streams (inference/cluster/). Off while ``redis_url`` is "".

    The bot (with a ``redis_url``) dispatches its jobs to workers instead of its own GPU; a worker
    (``python bot.py --worker``) reads the same section, with its own [model]/[[models]]/[device]."""

    redis_url: str = ""  # redis://host:6379/0, or rediss:// for TLS
    password_env: str = "EASEL_REDIS_PASSWORD"  # the environment variable holding Redis's password, if any
    prefix: str = "easel"  # of every Redis key, so several bots can share one server
    worker_name: str = ""  # "" = host name and process id (the bot's local worker: host name + "-local")
    slots: int = 1  # batches a worker runs at once (the bot hands out one more per worker, prefetched)
    heartbeat_s: float = 2.0  # how often a worker says it is alive
    lease_s: float = 30.0  # a job unacknowledged this long by a silent worker runs on another
    max_attempts: int = 3  # runs of one job on workers that stopped, before it fails
    no_worker_timeout_s: float = 600.0  # a job no live worker can run fails after this long
    max_entry_mb: float = 64.0  # largest job or result entry (input images, result PNGs)
    local_worker: bool = False  # the bot's own GPU serves as one more worker (inference/cluster/local.py)
    max_pixels: int = 0  # a worker's largest image (width x height) it makes; 0 = the bot's limits only
    in_flight: int = 32  # batches the bot takes from its fair queue for the cluster at once (>= workers x (slots + 1))


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    models: tuple[ModelConfig, ...] = ()
    device: DeviceConfig = field(default_factory=DeviceConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    anime: AnimeConfig = field(default_factory=AnimeConfig)
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    styles: tuple[StyleConfig, ...] = DEFAULT_STYLES
    upscalers: tuple[UpscalerConfig, ...] = ()
    backend: str = "local"
    base_dir: Path = Path(".")

    @property
    def all_models(self) -> tuple[ModelConfig, ...]:
        """The default model first, then the extra ones members may pick."""
        return (self.model, *self.models)

    def path(self, value: str) -> Path:
        """Resolve a configured path relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


# Keys that belong above the first [section] of easel.toml (plain values, not tables).
TOP_LEVEL_KEYS = frozenset(name for name, tp in typing.get_type_hints(Config).items()
                           if name != "base_dir" and tp in (str, int, float, bool))

# --------------------------------------------------------------------------- loading


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str) and not dataclasses.is_dataclass(item_tp):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return {str(k): _coerce(v, str, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - programming error


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "base_dir"}
    unknown = sorted(set(data) - names)
    misplaced = [name for name in unknown if prefix and name in TOP_LEVEL_KEYS]
    if misplaced:  # in TOML every key below a [section] header belongs to that section
        raise ConfigError(f"{prefix}.{misplaced[0]}: {misplaced[0]!r} is a top-level key, but it is written under "
                          f"[{prefix.split('[')[0]}]; move it to the top of the file, above the first [section]")
    if unknown:
        where = f"[{prefix}]" if prefix else "the top level"
        raise ConfigError(f"{prefix + '.' if prefix else ''}{unknown[0]}: unknown key in {where} "
                          f"(known keys: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if isinstance(tp, types.UnionType):  # pragma: no cover - no optional fields today
            tp = typing.get_args(tp)[0]
        kwargs[name] = _coerce(value, tp, f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"[{prefix}]: {exc}") from None


def _apply_env(data: dict[str, Any], environ: typing.Mapping[str, str]) -> None:
    """``EASEL_QUEUE__PER_USER=3`` sets ``data['queue']['per_user'] = '3'`` (coerced later)."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {part} is not a table")
        node[parts[-1]] = value


def load_config(path: str | Path | None = None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read, override and validate. ``path=None`` means ``easel.toml`` if present, else defaults."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is None:
        path = Path(environ.get("EASEL_CONFIG", "easel.toml"))
        explicit = "EASEL_CONFIG" in environ
    else:
        path, explicit = Path(path), True
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    elif explicit:
        raise ConfigError(f"{path}: config file not found")
    _apply_env(data, environ)
    cfg = _build(Config, data, "")
    cfg = dataclasses.replace(cfg, base_dir=path.resolve().parent if path.exists() else Path.cwd())
    from config_checks import check_config  # it imports this module's types

    check_config(cfg)
    return cfg


def read_token(environ: typing.Mapping[str, str] | None = None, dotenv: Path = Path(".env")) -> str:
    """The bot token from ``DISCORD_TOKEN`` or a ``.env`` file; raises ConfigError if absent."""
    token = read_secret("DISCORD_TOKEN", environ, dotenv)
    if not token:
        raise ConfigError("DISCORD_TOKEN is not set: put it in the environment or in a .env file "
                          "(see README, 'Getting a bot token')")
    return token
