#!/usr/bin/env bash
# Run ON THE GPU MACHINE from the repository root (bench/README.md has the exact call): installs the
# carried wheels (bench/gpu/wheels.sh made them) into a folder of their own with pip --no-index
# --no-deps, leaving the machine's Python as it is, then runs bench/gpu.py with the given arguments.
# With $OUT set, the JSON and the whole log land there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
site="${EASEL_GPU_SITE:-/tmp/easel-gpu-site}"
if ! ls "$here"/wheels/*.whl >/dev/null 2>&1; then
    echo "no wheels in $here/wheels: run bench/gpu/wheels.sh where PyPI is reachable, and carry bench/gpu/wheels" >&2
    exit 2
fi
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$here"/wheels/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
cd "$root"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    "$python" bench/gpu.py "$@" 2>&1 | tee "$OUT/gpu-log.txt"
else
    exec "$python" bench/gpu.py "$@"
fi
