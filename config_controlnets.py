"""``[[model.controlnets]]``: the ControlNet models of one model, and their checks.

A ControlNet steers text-to-image by a control map (edges, a scribble, line art, depth). Each
entry names the ``mode`` it was trained for; the member's picture is turned into that mode's map
by a preprocessor: OpenCV for canny, scribble and lineart (no weights), a transformers
depth-estimation model for depth (``preprocessor``), none for a pose map the member brings ready
(``preprocessor = "none"``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config import Config, ModelConfig

OPENCV_MODES = ("canny", "scribble", "lineart")  # made from the member's picture with OpenCV
MODEL_MODES = ("depth",)  # need a preprocessor model (or "none": the picture is the map already)
READY_MODES = ("pose",)  # easel has no estimator for these: the member's picture is the map
CONTROL_MODES = OPENCV_MODES + MODEL_MODES + READY_MODES
NO_PREPROCESSOR = "none"


@dataclass(frozen=True)
class ControlNetConfig:
    """One ``[[model.controlnets]]`` entry. ``source``: a hub id, a diffusers folder or one
    ``.safetensors`` file; ``strength``: the default ``controlnet_conditioning_scale`` (0-2)."""

    source: str
    mode: str
    name: str = ""
    preprocessor: str = ""
    strength: float = 1.0

    @property
    def display_name(self) -> str:
        return self.name or self.mode


def check_controlnets(cfg: Config, m: ModelConfig, key: str) -> None:
    """Each entry: a known mode (one ControlNet per mode), a preprocessor where the mode needs one, a
    source that exists when local; none on Kandinsky or the remote backend."""
    from config import ConfigError, _looks_local, missing_path

    if not m.controlnets:
        return
    if m.family == "kandinsky22" or m.prior_source or (m.family == "auto" and "kandinsky" in m.source.lower()):
        raise ConfigError(f"{key}.controlnets: Kandinsky 2.2 models take no ControlNet; remove them from this model")
    if cfg.backend == "remote":
        raise ConfigError(f"{key}.controlnets: only the local backend can use ControlNets; remove them or set "
                          "backend = \"local\"")
    modes: set[str] = set()
    for j, c in enumerate(m.controlnets):
        where = f"{key}.controlnets[{j}]"
        if c.mode not in CONTROL_MODES:
            raise ConfigError(f"{where}.mode: {c.mode!r} is not one of {', '.join(CONTROL_MODES)}")
        if c.mode in modes:
            raise ConfigError(f"{where}.mode: this model has two ControlNets for {c.mode!r}; keep one")
        modes.add(c.mode)
        if not c.source.strip():
            raise ConfigError(f"{where}.source: must name a hub id, a diffusers folder or a .safetensors file")
        if _looks_local(c.source, cfg.base_dir) and not cfg.path(c.source).exists():
            raise ConfigError(f"{where}.source: {missing_path(c.source, cfg.base_dir)}")
        if not 0.0 <= c.strength <= 2.0:
            raise ConfigError(f"{where}.strength: {c.strength:g} is outside 0..2")
        pre = c.preprocessor.strip()
        if c.mode in OPENCV_MODES and pre:
            raise ConfigError(f"{where}.preprocessor: {c.mode} maps are made with OpenCV; remove preprocessor")
        if c.mode in MODEL_MODES and not pre:
            raise ConfigError(f"{where}.preprocessor: {c.mode} needs a depth-estimation model (a transformers "
                              f"folder or hub id such as Intel/dpt-hybrid-midas), or \"{NO_PREPROCESSOR}\" when "
                              "members upload ready depth maps")
        if c.mode in READY_MODES and pre != NO_PREPROCESSOR:
            raise ConfigError(f"{where}.preprocessor: easel has no {c.mode} estimator; set preprocessor = "
                              f"\"{NO_PREPROCESSOR}\" (members upload ready {c.mode} maps)")
        if pre and pre != NO_PREPROCESSOR and _looks_local(pre, cfg.base_dir) and not cfg.path(pre).exists():
            raise ConfigError(f"{where}.preprocessor: {missing_path(pre, cfg.base_dir)}")

