"""Every top-level module is installed with the package (a module missing from py-modules works from
a checkout and fails in an install)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_top_level_module_is_in_py_modules() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["py-modules"])
    assert {p.stem for p in ROOT.glob("*.py")} == listed
