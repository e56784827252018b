# shellcheck shell=bash
# Sourced by .ci/run: installs NVRTC from the nvidia-cuda-nvrtc-cu12 Python wheel (no GPU needed)
# and makes it findable by the tests that compile every generated CUDA kernel to PTX.
#
# Exports:
#   FLEXSN_NVRTC_PATH  the libnvrtc.so.12 file; flexsn preloads it by full path, so nothing else
#                      is needed (cudarc then finds the loaded library by its soname)
#   LD_LIBRARY_PATH    with the wheel's lib folder prepended, for any process that loads NVRTC
#                      by bare name without going through flexsn's preload
#   FLEXSN_REQUIRE_NVRTC=1  the NVRTC tests fail (instead of skipping) if NVRTC is still missing
#
# Use it locally the same way: `source scripts/ci-nvrtc.sh && cargo test -p flexsn-runtime --test cuda_nvrtc`.

flexsn_python="${PYTHON:-python3}"
if ! "$flexsn_python" -c 'import nvidia.cuda_nvrtc' >/dev/null 2>&1; then
    echo "ci-nvrtc: installing nvidia-cuda-nvrtc-cu12 (NVRTC, about 100 MB)" >&2
    "$flexsn_python" -m pip install --quiet --disable-pip-version-check nvidia-cuda-nvrtc-cu12 >&2
fi
flexsn_nvrtc_dir="$("$flexsn_python" - <<'PY'
import os, nvidia.cuda_nvrtc as m
paths = list(getattr(m, "__path__", [])) or [os.path.dirname(m.__file__ or "")]
print(os.path.join(paths[0], "lib"))
PY
)"
flexsn_nvrtc_lib="$( (ls "$flexsn_nvrtc_dir"/libnvrtc.so.* 2>/dev/null | grep -v 'alt\|builtins' | head -n 1) || true)"
if [ -z "$flexsn_nvrtc_lib" ]; then
    echo "ci-nvrtc: no libnvrtc.so.* in $flexsn_nvrtc_dir" >&2
    return 1 2>/dev/null || exit 1
fi
export FLEXSN_NVRTC_PATH="$flexsn_nvrtc_lib"
export LD_LIBRARY_PATH="$flexsn_nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FLEXSN_REQUIRE_NVRTC=1
echo "ci-nvrtc: FLEXSN_NVRTC_PATH=$FLEXSN_NVRTC_PATH" >&2
unset flexsn_python flexsn_nvrtc_dir flexsn_nvrtc_lib
