# shellcheck shell=bash
# Sourced by .ci/run: installs ptxas (NVIDIA's PTX assembler) from the nvidia-cuda-nvcc-cu12
# Python wheel into target/cuda-tools (cached between runs with target/; no GPU needed), for the
# static checks that assemble every generated built-in kernel for sm_80 and sm_90 and report
# registers and spills (tests/cuda_ptxas.rs, `flexsn inspect NEURON --emit sass-info`).
#
# Exports:
#   FLEXSN_PTXAS=<target/cuda-tools/nvidia/cuda_nvcc/bin/ptxas>
#   FLEXSN_REQUIRE_PTXAS=1   the ptxas checks fail (instead of skipping) if ptxas is missing
#
# Locally: `source scripts/ci-ptxas.sh && cargo test -p flexsn --test cuda_ptxas`.

flexsn_python="${PYTHON:-python3}"
flexsn_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/cuda-tools"
flexsn_ptxas="$flexsn_tools/nvidia/cuda_nvcc/bin/ptxas"
if [ ! -x "$flexsn_ptxas" ]; then
    echo "ci-ptxas: installing nvidia-cuda-nvcc-cu12 into $flexsn_tools (ptxas)" >&2
    "$flexsn_python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$flexsn_tools" --upgrade nvidia-cuda-nvcc-cu12 >&2
fi
if [ ! -x "$flexsn_ptxas" ]; then
    echo "ci-ptxas: no ptxas at $flexsn_ptxas" >&2
    return 1 2>/dev/null || exit 1
fi
export FLEXSN_PTXAS="$flexsn_ptxas"
export FLEXSN_REQUIRE_PTXAS=1
echo "ci-ptxas: FLEXSN_PTXAS=$FLEXSN_PTXAS ($("$FLEXSN_PTXAS" --version | tail -n 1))" >&2
unset flexsn_python flexsn_tools flexsn_ptxas
