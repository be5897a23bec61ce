"""The checks of a model's ``[model.ip_adapter]`` (config.IpAdapterConfig): the IP-Adapter behind
/imagine's ``style_ref``. Run by config_checks.check_config for every model; each mistake is one
ConfigError naming the key."""

from __future__ import annotations

from config import Config, ConfigError, ModelConfig, _looks_local, missing_path

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def is_kandinsky_config(m: ModelConfig) -> bool:
    """What the configuration alone says of a Kandinsky 2.2 model (the loader checks the folder too)."""
    return m.family == "kandinsky22" or bool(m.prior_source) or (m.family == "auto" and "kandinsky" in m.source.lower())


def check_ip_adapter(cfg: Config, m: ModelConfig, key: str) -> None:
    """``{key}.ip_adapter``: a source with a weight file in it, an encoder that is there, a strength of 0-1,
    and a model family diffusers' IP-Adapter loader serves (SD 1.x/2.x, SDXL; local backend)."""
    ip = m.ip_adapter
    where = f"{key}.ip_adapter"
    if not ip.source.strip():
        if ip.weight_name or ip.subfolder or ip.image_encoder:
            raise ConfigError(f"{where}.source: must name the IP-Adapter (a hub repo like \"h94/IP-Adapter\", a "
                              "folder or a .safetensors file) when weight_name, subfolder or image_encoder is set")
        return
    if is_kandinsky_config(m):
        raise ConfigError(f"{where}: Kandinsky 2.2 models take no IP-Adapter (style references work with SD 1.x/2.x "
                          "and SDXL models); remove it")
    if cfg.backend == "remote":
        raise ConfigError(f"{where}: only the local backend can use it; remove it or set backend = \"local\"")
    if not 0.0 <= ip.strength <= 1.0:
        raise ConfigError(f"{where}.strength: {ip.strength:g} must be between 0 and 1")
    is_file = ip.source.endswith(WEIGHT_SUFFIXES)
    if is_file and (ip.weight_name or ip.subfolder):
        raise ConfigError(f"{where}: source {ip.source} is already one file; weight_name and subfolder pick a file of "
                          "a folder or hub repo (remove them, or set source to the folder)")
    if not is_file and not ip.weight_name:
        raise ConfigError(f"{where}.weight_name: name the weight file in {ip.source} "
                          "(e.g. \"ip-adapter_sd15.safetensors\", with subfolder = \"models\")")
    if ip.weight_name and not ip.weight_name.endswith(WEIGHT_SUFFIXES):
        raise ConfigError(f"{where}.weight_name: {ip.weight_name!r} must be a .safetensors or .bin file")
    for name, value in (("source", ip.source), ("image_encoder", ip.image_encoder)):
        if value and _looks_local(value, cfg.base_dir) and not cfg.path(value).exists():
            raise ConfigError(f"{where}.{name}: {missing_path(value, cfg.base_dir)}")
    if is_file and not ip.image_encoder:
        raise ConfigError(f"{where}.image_encoder: a single IP-Adapter file carries no image encoder; name the "
                          "CLIPVisionModelWithProjection folder or hub id it was trained with")
