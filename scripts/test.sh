#!/usr/bin/env bash
# The one test command for Rust and Python: sets up the test venv under target/py (reused when
# present; see scripts/python-env.sh), builds the flexsn Python package into it, runs the Rust
# tests of the whole workspace, then the Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# shellcheck source=python-env.sh
source scripts/python-env.sh

cargo test --workspace --locked --no-fail-fast
"$FLEXSN_PY" -m pytest python/tests -q
