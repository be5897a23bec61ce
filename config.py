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
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_FAMILIES = ("auto", "sd15", "sd21", "sd-turbo", "sdxl", "sdxl-turbo", "kandinsky22")
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float32", "float16", "bfloat16")
BACKENDS = ("local", "remote")
ENV_PREFIX = "EASEL_"
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key and the reason."""


SPACINGS = ("leading", "linspace", "trailing")  # diffusers' ``timestep_spacing`` values


@dataclass(frozen=True)
class LoraRecipe:
    """The settings a LoRA was made for (a speed LoRA wants its own steps and sampler).

    Unset values (0, -1, "") leave the model's defaults alone. They are defaults only: what a member
    sets explicitly wins (inference/validation.py)."""

    steps: int = 0
    guidance: float = -1.0
    scheduler: str = ""
    spacing: str = ""  # "" = the sampler's own timestep spacing
    eta: float = -1.0  # TCD's gamma (stochasticity); -1 = the sampler's default

    def over(self, other: LoraRecipe) -> LoraRecipe:
        """This recipe's values, falling back to ``other``'s where this one leaves them unset."""
        return LoraRecipe(
            steps=self.steps or other.steps,
            guidance=self.guidance if self.guidance >= 0 else other.guidance,
            scheduler=self.scheduler or other.scheduler,
            spacing=self.spacing or other.spacing,
            eta=self.eta if self.eta >= 0 else other.eta,
        )


@dataclass(frozen=True)
class LoraConfig:
    """One ``[[model.loras]]`` entry.

    ``source`` is a LoRA file, a folder holding LoRA files, or a hub repo; ``weight_name`` picks one
    file of a folder or repo that holds several (Hyper-SD ships a dozen in one repo). ``fuse`` merges
    the LoRA into the model's weights at load time at ``weight``: always on, never offered to members,
    and no per-request LoRA switching can undo it."""

    name: str
    source: str
    weight: float = 0.8
    weight_name: str = ""
    fuse: bool = False
    recipe: LoraRecipe = field(default_factory=LoraRecipe)


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
    # For a single .safetensors file: a diffusers folder or hub id holding the matching configs
    # (needed offline; online, diffusers finds them by itself).
    single_file_config: str = ""
    # Kandinsky 2.2: the prior's folder or hub id (source is the decoder); empty = the community prior for a hub decoder.
    prior_source: str = ""
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
    # Linux: the GPU thread gets core(s) of its own and the rest of the bot the others, when the
    # machine has a core to spare (inference/placement.py).
    pin_threads: bool = True


@dataclass(frozen=True)
class QueueConfig:
    per_user: int = 4
    total: int = 50
    max_batch: int = 4
    batch_wait_ms: int = 5


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
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    models: tuple[ModelConfig, ...] = ()
    device: DeviceConfig = field(default_factory=DeviceConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    anime: AnimeConfig = field(default_factory=AnimeConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    remote: RemoteConfig = field(default_factory=RemoteConfig)
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


def _check(cfg: Config) -> None:
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
        if cfg.backend == "remote":
            _check_remote_model(cfg, m, key)
        elif _looks_local(m.source, cfg.base_dir) and not cfg.path(m.source).exists():
            raise ConfigError(f"{key}.source: {missing_path(m.source, cfg.base_dir)}")
    need(cfg.device.device in DEVICES, f"device.device: {cfg.device.device!r} is not one of {', '.join(DEVICES)}")
    need(cfg.device.dtype in DTYPES, f"device.dtype: {cfg.device.dtype!r} is not one of {', '.join(DTYPES)}")
    need(cfg.device.threads >= 0, "device.threads: must be 0 (torch's default) or more")
    need(cfg.anime.device in DEVICES, f"anime.device: {cfg.anime.device!r} is not one of {', '.join(DEVICES)}")
    q = cfg.queue
    need(1 <= q.per_user <= 1000, f"queue.per_user: {q.per_user} must be between 1 and 1000")
    need(q.per_user <= q.total <= 100_000, f"queue.total: {q.total} must be at least queue.per_user and at most 100000")
    need(1 <= q.max_batch <= 16, f"queue.max_batch: {q.max_batch} must be between 1 and 16")
    need(0 <= q.batch_wait_ms <= 1000, f"queue.batch_wait_ms: {q.batch_wait_ms} must be between 0 and 1000")
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
    # Both folders are created at start-up (and the database's file); only a file in the way stops that.
    for key, folder in (("storage.database", cfg.path(cfg.storage.database).parent),
                        ("storage.outputs", cfg.path(cfg.storage.outputs))):
        blocker = _file_in_the_way(folder)
        need(blocker is None, f"{key}: cannot create the folder {folder}: {blocker} is a file")


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


def _check_remote_model(cfg: Config, m: ModelConfig, key: str) -> None:
    """What the remote backend cannot do is refused here, not silently dropped."""
    if not cfg.remote.base_url and _looks_local(m.source, cfg.base_dir):
        raise ConfigError(f"{key}.source: the remote backend needs a hub id like 'org/name', not {m.source!r} "
                          "(local files run only with backend = \"local\")")
    if m.family == "kandinsky22" or m.prior_source or (m.family == "auto" and "kandinsky" in m.source.lower()):
        raise ConfigError(f"{key}: Kandinsky 2.2 models run only with backend = \"local\" (the remote service "
                          "cannot run its prior and decoder)")
    for name, value in (("loras", m.loras), ("inpaint_source", m.inpaint_source),
                        ("single_file_config", m.single_file_config)):
        if value:
            raise ConfigError(f"{key}.{name}: only the local backend can use it; remove it or set backend = \"local\"")
    if m.safety_checker:
        raise ConfigError(f"{key}.safety_checker: the local NSFW classifier cannot check remote images; set it "
                          "to false with backend = \"remote\" (discord.nsfw_words still applies)")


def _looks_local(source: str, base_dir: Path | None = None) -> bool:
    """A source is a local path if it is absolute, relative with ./, names a file, is not shaped like
    ``org/name``, or is ``folder/name`` whose first folder exists in ``base_dir`` (``models/sd15``)."""
    if (source.startswith(("/", "./", "../", "~")) or source.endswith((".safetensors", ".ckpt"))
            or source.count("/") != 1 or "\\" in source):
        return True
    if base_dir is None:
        return False
    first = Path(source.split("/")[0]).expanduser()
    return (first if first.is_absolute() else base_dir / first).is_dir()


def is_local_source(source: str, base_dir: Path | None = None) -> bool:
    """Public wrapper used by the loader and ``--check`` to tell a path from a hub id."""
    return _looks_local(source, base_dir)


def source_path(source: str, base_dir: Path) -> Path:
    """``source`` read as a path: absolute, relative paths starting at ``base_dir`` (the config's folder)."""
    path = Path(source).expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()


def missing_path(source: str, base_dir: Path) -> str:
    """"no such folder: /abs/path" (or file), for a local model source that is not there."""
    what = "file" if source.endswith((".safetensors", ".ckpt")) else "folder"
    where = "" if Path(source).expanduser().is_absolute() else " (relative paths start at the folder of easel.toml)"
    return f"no such {what}: {source_path(source, base_dir)}{where}"


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
    _check(cfg)
    return cfg


def read_secret(name: str, environ: typing.Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> str:
    """``name`` from the environment, else from a ``.env`` file (``dotenv=None``: environment only);
    "" when neither has it. Used for the Discord token and the remote backend's access token."""
    environ = os.environ if environ is None else environ
    value = environ.get(name, "").strip()
    if not value and dotenv is not None and dotenv.exists():
        for line in dotenv.read_text(encoding="utf-8").splitlines():
            key, sep, rest = line.partition("=")
            if sep and key.strip().removeprefix("export ").strip() == name:
                value = rest.strip().strip("'\"")
    return value


def read_token(environ: typing.Mapping[str, str] | None = None, dotenv: Path = Path(".env")) -> str:
    """The bot token from ``DISCORD_TOKEN`` or a ``.env`` file; raises ConfigError if absent."""
    token = read_secret("DISCORD_TOKEN", environ, dotenv)
    if not token:
        raise ConfigError("DISCORD_TOKEN is not set: put it in the environment or in a .env file "
                          "(see README, 'Getting a bot token')")
    return token
