#!/usr/bin/env bash
# GPU check of the CUDA backend: conformance and differential tests against real CUDA (scans and
# the PSN mixing kernels), the golden cases on `--backend cuda` (built-ins, PSN, MaskedPSN), and
# `flexsn bench --backend cuda` (LIF f32/f16/bf16 and others at T = 64, N = 16 777 216; LIF at an
# unaligned N = 2^20 + 1 with dense and padded rows beside the aligned N = 2^20; PSN at T = 4, 16,
# 64 with GFLOP/s; each against a same-run device-to-device copy), then a short table.
# Sized for one 540 s device call once built: each step's timeout is cut to what is left of
# FLEXSN_GPU_CHECK_BUDGET (500 s by default; the timeouts add up to 630 s), each step's
# result line is appended to the report (and copied to $OUT) as soon as the step ends, an
# allocation smoke test runs first (nothing else runs if it fails), and the run fails when a test
# fails, a step times out, or a benchmark target is missed (`target: ... NOT MET`).
#
# Usage
#   scripts/gpu-check.sh                 on a GPU machine with Rust: build (release), then run
#   scripts/gpu-check.sh --prepare       on a machine with Rust (no GPU needed): build the release
#                                        binaries into target/gpu-bundle/ (stripped), for a GPU
#                                        machine without Rust or network
#   scripts/gpu-check.sh --bundle DIR    on the GPU machine: run from the prepared binaries
#
# For the device tool (GPU machine without Rust or network): run `scripts/gpu-check.sh --prepare`
# here (about 13 MB of stripped binaries), then one call there:
#   run(command: "scripts/gpu-check.sh --bundle target/gpu-bundle", carry: ["target/gpu-bundle"],
#       timeout_s: 540)
# The logs and the table are also written under $OUT when that is set.
#
# NVRTC: FLEXSN_NVRTC_PATH if set, else the first libnvrtc.so* found on the loader path, in
# /usr/local/cuda*/lib64, or in Python's site-packages (nvidia/*/lib). FLEXSN_REQUIRE_GPU=1 and
# FLEXSN_REQUIRE_NVRTC=1 are set, so a missing GPU, driver or NVRTC fails the tests instead of
# skipping them.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=build
bundle=""
case "${1:-}" in
    --prepare) mode=prepare ;;
    --bundle) mode=bundle; bundle="${2:?--bundle needs a folder}" ;;
    "") ;;
    *) echo "usage: $0 [--prepare | --bundle DIR]" >&2; exit 2 ;;
esac

out_dir="${OUT:-}"
log() { echo "gpu-check: $*" >&2; }

# ---- prepare: release binaries into target/gpu-bundle ------------------------------------------
build_bundle() {
    local dest="$1"
    log "building release binaries (flexsn, runtime CUDA test binaries)"
    cargo build --release --locked --bin flexsn || return 1
    local json
    json="$(cargo test --release --locked -p flexsn-runtime --test cuda_device --test cuda_borrowed \
        --test cuda_mixing --test cuda_kernel_device --no-run --message-format=json 2>/dev/null)" \
        || return 1
    rm -rf "$dest" && mkdir -p "$dest" || return 1
    cp target/release/flexsn "$dest/flexsn" || return 1
    local name exe
    for name in cuda_device cuda_borrowed cuda_mixing cuda_kernel_device; do
        exe="$(printf '%s\n' "$json" | grep '"executable":"[^"]*' | grep "/$name-" \
            | sed 's/.*"executable":"\([^"]*\)".*/\1/' | tail -n 1)"
        [ -n "$exe" ] || { log "no test executable for $name"; return 1; }
        cp "$exe" "$dest/$name" || return 1
    done
    strip "$dest"/* 2>/dev/null || true
    du -sh "$dest" >&2
}

if [ "$mode" = prepare ]; then
    build_bundle target/gpu-bundle || { log "prepare failed"; exit 1; }
    log "ready: target/gpu-bundle (carry it; run: scripts/gpu-check.sh --bundle target/gpu-bundle)"
    exit 0
fi

if [ "$mode" = build ]; then
    build_bundle target/gpu-bundle || { log "build failed"; exit 1; }
    bundle=target/gpu-bundle
fi
chmod +x "$bundle"/* 2>/dev/null
[ -x "$bundle/flexsn" ] || { log "no flexsn binary in $bundle"; exit 1; }

# ---- NVRTC -------------------------------------------------------------------------------------
find_nvrtc() {
    local c
    for c in $(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so/ && !/builtins|alt/ {print $NF}') \
        /usr/local/cuda*/lib64/libnvrtc.so.* /usr/local/cuda*/lib64/libnvrtc.so \
        /usr/lib/x86_64-linux-gnu/libnvrtc.so.*; do
        case "$c" in *builtins*|*alt*) continue ;; esac
        [ -e "$c" ] && { echo "$c"; return 0; }
    done
    local py
    for py in python3 /opt/torch/.venv/bin/python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        c="$("$py" - <<'PY' 2>/dev/null
import glob, os, site
roots = list(site.getsitepackages()) + [site.getusersitepackages()]
for r in roots:
    for p in sorted(glob.glob(os.path.join(r, "nvidia", "**", "libnvrtc.so*"), recursive=True)):
        b = os.path.basename(p)
        if "builtins" not in b and "alt" not in b:
            print(p); raise SystemExit
PY
)"
        [ -n "$c" ] && { echo "$c"; return 0; }
    done
    return 1
}
if [ -z "${FLEXSN_NVRTC_PATH:-}" ]; then
    if p="$(find_nvrtc)"; then export FLEXSN_NVRTC_PATH="$p"; fi
fi
# NVRTC wheels load libnvrtc-builtins from their own folder: it must be on the loader path.
if [ -n "${FLEXSN_NVRTC_PATH:-}" ]; then
    export LD_LIBRARY_PATH="$(dirname "$FLEXSN_NVRTC_PATH")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export FLEXSN_REQUIRE_GPU=1 FLEXSN_REQUIRE_NVRTC=1
log "FLEXSN_NVRTC_PATH=${FLEXSN_NVRTC_PATH:-<not found>}"
export FLEXSN_CACHE_DIR="${FLEXSN_CACHE_DIR:-$(mktemp -d)}"
nvidia-smi -L 2>/dev/null || log "nvidia-smi not available"

tmp="$(mktemp -d)"
report="$tmp/gpu-check.txt"
budget="${FLEXSN_GPU_CHECK_BUDGET:-500}"
save() { [ -n "$out_dir" ] && cp "$1" "$out_dir/" 2>/dev/null; return 0; }
# Appends one result line to the report at once (a later timeout cannot lose it).
record() { printf '%-34s %s\n' "$1" "$2" | tee -a "$report" >&2; save "$report"; }
{
    echo "== flexsn gpu-check ($(date -u +%Y-%m-%dT%H:%M:%SZ)) =="
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    echo "NVRTC: ${FLEXSN_NVRTC_PATH:-<not found>}"
} >"$report"
save "$report"
status=0
# The step timeout, cut to what is left of the budget (at least 1 s).
limit() {
    local left=$((budget - SECONDS))
    [ "$left" -lt "$1" ] && { [ "$left" -gt 1 ] && echo "$left" || echo 1; } || echo "$1"
}

# ---- tests on the GPU (synchronous mode: a device fault is reported by the kernel that made it)
run_tests() {
    local name="$1" secs="$2" filter="${3:-}" log_file="$tmp/$1${3:+-$3}.log" threads=1
    local start=$SECONDS
    FLEXSN_CUDA_SYNC=1 timeout "$(limit "$secs")" "$bundle/$name" $filter --test-threads=$threads \
        >"$log_file" 2>&1
    local rc=$?
    save "$log_file"
    local summary
    summary="$(grep -E '^test result:' "$log_file" | tail -n 1)"
    [ $rc -eq 124 ] && summary="TIMED OUT after $((SECONDS - start)) s"
    record "$name${filter:+ $filter}" "${summary:-no result (exit $rc)} [$((SECONDS - start)) s]"
    if [ $rc -ne 0 ]; then
        grep -E 'panicked|FAILED|failed' "$log_file" | head -n 20 >&2
    fi
    return $rc
}

# Smoke test first: allocation, copies and one launch; nothing else is worth running without it.
if ! run_tests cuda_borrowed 30 smoke; then
    record "gpu-check" "FAIL (the allocation smoke test failed; nothing else was run)"
    exit 1
fi
run_tests cuda_borrowed 35 || status=1
run_tests cuda_device 90 || status=1
run_tests cuda_mixing 40 || status=1
run_tests cuda_kernel_device 15 || status=1

# ---- golden cases on real CUDA -----------------------------------------------------------------
start=$SECONDS
conf_log="$tmp/conformance.log"
timeout "$(limit 45)" "$bundle/flexsn" conformance tests/golden/ifnode.json tests/golden/lifnode.json \
    tests/golden/plif.json tests/golden/nonspiking.json tests/golden/psn.json \
    tests/golden/masked_psn.json --backend cuda >"$conf_log" 2>&1
rc=$?
save "$conf_log"
record "golden cases, --backend cuda" "$(tail -n 1 "$conf_log") [exit $rc, $((SECONDS - start)) s]"
if [ $rc -ne 0 ]; then status=1; grep -E '^FAIL|error' "$conf_log" | head -n 20 >&2; fi

# ---- benchmarks (each step's table saved as it ends) ------------------------------------------
bench() {
    local label="$1" secs="$2"
    shift 2
    local start=$SECONDS log_file="$tmp/bench-$label.log"
    timeout "$(limit "$secs")" "$bundle/flexsn" bench --backend cuda "$@" >"$log_file" 2>&1
    local rc=$?
    save "$log_file"
    cat "$log_file" >>"$tmp/bench.log"
    local missed
    missed="$(grep -c 'NOT MET' "$log_file")"
    record "bench $label" "exit $rc, targets missed: $missed [$((SECONDS - start)) s]"
    if [ $rc -ne 0 ] || [ "$missed" -ne 0 ]; then return 1; fi
    return 0
}
: >"$tmp/bench.log"
bench lif 70 --neuron lif --dtype f32 --dtype bf16 --dtype f16 --t 64 --n 16777216 || status=1
# What padded rows pay at an unaligned N: rows `lif` (dense) and `lif+pad` at N = 2^20 and
# N = 2^20 + 1 (dense rows there start off every 128-byte boundary but one in 32).
bench pitch 40 --neuron lif --dtype f32 --dtype bf16 --t 64 --n 1048576 --n 1048577 \
    --rows dense --rows padded || status=1
bench others 45 --neuron if --neuron plif --neuron alif --dtype f32 --dtype bf16 --t 64 \
    --n 16777216 || status=1
bench psn 50 --neuron psn --dtype f32 --dtype bf16 --t 4 --t 16 --t 64 --n 4194304 || status=1

# ---- save policies: checkpoint:32 against states (LIF, T = 1024, CUDA through the kernel API) --
start=$SECONDS
policy_log="$tmp/bench-save-policy.log"
(for p in states checkpoint:32; do
    timeout "$(limit 55)" "$bundle/flexsn" bench --backend cuda-jit --neuron lif --t 1024 \
        --n 262144 --threads 1 --phase forward_backward --min-ms 300 --save-policy "$p" || exit 1
done) >"$policy_log" 2>&1
rc=$?
save "$policy_log"
cat "$policy_log" >>"$tmp/bench.log"
record "bench --save-policy (cuda-jit)" "exit $rc [$((SECONDS - start)) s]"
[ $rc -ne 0 ] && status=1

# ---- the same on device buffers: the fused checkpoint kernels against the states scans ------
start=$SECONDS
policy_log="$tmp/bench-save-policy-device.log"
(for p in states checkpoint:32; do
    timeout "$(limit 30)" "$bundle/flexsn" bench --backend cuda --neuron lif --neuron alif \
        --dtype f32 --dtype bf16 --t 1024 --n 262144 --save-policy "$p" || exit 1
done) >"$policy_log" 2>&1
rc=$?
save "$policy_log"
cat "$policy_log" >>"$tmp/bench.log"
record "bench --save-policy (cuda, device buffers)" "exit $rc [$((SECONDS - start)) s]"
[ $rc -ne 0 ] && status=1

# ---- table ----------------------------------------------------------------------------------
{
    echo
    cat "$tmp/bench.log"
    echo
    if [ $status -eq 0 ]; then echo "gpu-check: PASS"; else echo "gpu-check: FAIL"; fi
} >>"$report"
save "$report"
cat "$report"
exit $status
