#!/usr/bin/env bash
# Creates (or reuses) the test virtual environment under target/py/venv and installs the flexsn
# Python package into it. Source it to get FLEXSN_PY (the venv's python); run it to just set up.
#
# torch is PyPI's wheel with its dependencies: its libtorch links the nvidia-* CUDA libraries
# at import time, even on a machine without a GPU, so `--no-deps` leaves it unimportable.
# SpikingJelly comes without its declared dependencies (its import needs only the few listed).
# The venv under target/ is the cache: a second setup downloads nothing. pip's own wheel cache
# is off, since it would hold a second copy of torch's ~4 GB of wheels on a small CI disk.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_py_dir="$_root/target/py"
_venv="$_py_dir/venv"
export PIP_NO_CACHE_DIR=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$_venv/bin/python" ]; then
    python3 -m venv "$_venv"
fi
_pip() { "$_venv/bin/python" -m pip "$@"; }

# One stamp per requirement set: a warm run skips pip entirely.
_reqs="torch==${FLEXSN_TORCH_VERSION:-2.15.0} spikingjelly==2.0.0 loguru packaging tqdm scipy numpy scikit-learn matplotlib maturin pytest"
_stamp="$_venv/.flexsn-reqs"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_reqs" ]; then
    _pip install --no-deps spikingjelly==2.0.0
    _pip install "torch==${FLEXSN_TORCH_VERSION:-2.15.0}" loguru packaging tqdm scipy numpy scikit-learn matplotlib maturin pytest
    printf '%s' "$_reqs" > "$_stamp"
fi

# The package itself (rebuilds the extension when the Rust sources changed; cargo decides).
if [ -d "$_root/python" ] && [ -z "${FLEXSN_SKIP_PYBUILD:-}" ]; then
    (cd "$_root/python" && VIRTUAL_ENV="$_venv" CARGO_TARGET_DIR="$_root/target" \
        "$_venv/bin/maturin" develop -q) || {
        echo "python-env.sh: building the flexsn Python package failed" >&2
        return 1 2>/dev/null || exit 1
    }
fi
export FLEXSN_PY="$_venv/bin/python"
