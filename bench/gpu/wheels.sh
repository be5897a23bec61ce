#!/usr/bin/env bash
# Run HERE (where PyPI is reachable), before a GPU run: downloads the pure-Python wheels the GPU machine
# lacks into bench/gpu/wheels/ (git-ignored), at the versions this project uses. The GPU machine has
# torch, transformers, huggingface_hub, accelerate, peft, safetensors, numpy, Pillow and OpenCV
# (/work/.library/device/KINDS.md); bench/gpu.py's imports need four more: diffusers, compel
# (inference/prompting.py), aiosqlite (storage/, for the bot's job log in the turbo section) and
# DeepCache (device.fast_draft, drafts section); and torchao (device.quantize, drafts section), the one
# wheel with compiled parts: its abi3 build for x86_64 Linux, which runs on Python 3.10 and later.
# Versions: the `==` pins of pyproject.toml; a package pinned only by a range (aiosqlite) gets the
# version installed in the Python that runs this script (the one the tests pass with).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
dest="$here/wheels"
specs="$("$python" - "$root/pyproject.toml" <<'PY'
import importlib.metadata
import re
import sys
import tomllib

deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for name in ("diffusers", "compel", "aiosqlite", "DeepCache"):
    spec = next(d for d in deps if re.match(rf"{name}\b", d, re.I))
    pin = re.search(r"==\s*([\w.]+)", spec)
    print(f"{name}=={pin.group(1) if pin else importlib.metadata.version(name)}")
PY
)"
rm -rf "$dest"
mkdir -p "$dest"
# Pure-Python wheels only (py3-none-any): the machine's Python version is not known for sure.
# shellcheck disable=SC2086
"$python" -m pip download -q --no-deps --only-binary=:all: --implementation py --abi none --platform any \
    --python-version 3.12 -d "$dest" $specs
torchao="$("$python" - "$root/pyproject.toml" <<'PY'
import re
import sys
import tomllib

extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["quantize"]
print(next(re.sub(r"\s", "", d) for d in extras if d.startswith("torchao")))
PY
)"
"$python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.12 -d "$dest" "$torchao"
specs="$specs
$torchao"
for wheel in "$dest"/*.whl; do
    case "$wheel" in
        *-none-any.whl) ;;
        */torchao-*-abi3-*x86_64*.whl) ;;
        *) echo "not a pure-Python wheel: $wheel" >&2; exit 1 ;;
    esac
done
echo "$(echo "$specs" | tr '\n' ' ')-> $dest ($(du -sh "$dest" | cut -f1))"
