"""The checks of a model's ``[[model.embeddings]]`` (textual inversions), run by config_checks.py.

Each raises :class:`config.ConfigError` naming the key and the reason. Whether a file fits the
model (its width, SD or SDXL) can only be told when the model loads (inference/embeddings.py)."""

from __future__ import annotations

import re

from config import Config, ConfigError, ModelConfig, _looks_local, missing_path

# What a member can type as one word of a prompt: no spaces, and none of the characters the
# weighting syntax gives a meaning to ("(red:1.2)", "[blurry]", "BREAK" needs spaces around it).
TOKEN = re.compile(r"[A-Za-z0-9_<>.+-]{1,60}")
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")


def check_embeddings(cfg: Config, m: ModelConfig, key: str) -> None:
    """Each embedding of ``m``: a name and a token of its own, a source that is there, and a model
    that can take it (the local backend, not Kandinsky 2.2)."""
    if not m.embeddings:
        return
    if cfg.backend == "remote":
        raise ConfigError(f"{key}.embeddings: only the local backend can use them; remove them or set "
                          "backend = \"local\"")
    if m.family == "kandinsky22":
        raise ConfigError(f"{key}.embeddings: Kandinsky 2.2 models take no textual inversion embeddings "
                          "(they are made for Stable Diffusion's CLIP text encoders); remove them")
    names: set[str] = set()
    tokens: dict[str, str] = {}
    for j, emb in enumerate(m.embeddings):
        where = f"{key}.embeddings[{j}]"
        if not emb.name.strip():
            raise ConfigError(f"{where}.name: must not be empty")
        if emb.name in names:
            raise ConfigError(f"{where}.name: {emb.name!r} is used by two embeddings of this model")
        names.add(emb.name)
        if TOKEN.fullmatch(emb.word) is None:
            field = "token" if emb.token else "name"
            raise ConfigError(f"{where}.{field}: {emb.word!r} cannot be typed as one word of a prompt: use 1-60 "
                              "letters, digits and _ - . + < > (no spaces, brackets or colons)"
                              + ("" if emb.token else "; or set token to such a word"))
        if emb.word.lower() in tokens:
            raise ConfigError(f"{where}.token: {emb.word!r} is also the token of embedding "
                              f"{tokens[emb.word.lower()]!r}; each needs a word of its own")
        tokens[emb.word.lower()] = emb.name
        source = emb.source.strip()
        if not source:
            raise ConfigError(f"{where}.source: must name an embedding file, a folder or a hub repo")
        if emb.weight_name and source.endswith(EMBEDDING_SUFFIXES):
            raise ConfigError(f"{where}.weight_name: {source} is already one file; weight_name picks a file of a "
                              "folder or hub repo (remove it, or set source to the folder)")
        local = _looks_local(source, cfg.base_dir) or source.endswith(EMBEDDING_SUFFIXES)
        if local and not cfg.path(source).exists():
            raise ConfigError(f"{where}.source: {missing_path(source, cfg.base_dir)}")
