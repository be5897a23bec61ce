"""Where configured things come from: a model source read as a local path or a hub id, and secrets
read from the environment or a ``.env`` file. No other config module is imported here."""

from __future__ import annotations

import os
import typing
from pathlib import Path


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
    what = "file" if source.endswith((".safetensors", ".ckpt", ".pth", ".pt")) else "folder"
    where = "" if Path(source).expanduser().is_absolute() else " (relative paths start at the folder of easel.toml)"
    return f"no such {what}: {source_path(source, base_dir)}{where}"


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
