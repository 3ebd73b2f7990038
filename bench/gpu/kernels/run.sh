#!/usr/bin/env bash
# rbee's decode kernels (native/kernels) on a GPU machine: builds the standalone harness with nvcc
# and runs it — checks against the CPU references, per-kernel timings at Llama-3-8B and
# Gemma-3-270M shapes, and a whole 8B-shaped decode step as one CUDA graph. One command, no
# network; needs nvcc (CUDA 12.x or 13.x) on PATH and one NVIDIA GPU (sm_80 or newer).
#
#   bash bench/gpu/kernels/run.sh            # from the repo root; writes into $OUT (default ./out)
#   bash bench/gpu/kernels/run.sh --quick    # fewer timings (batch 1 only, 8 decode steps)
#   bash bench/gpu/kernels/run.sh --mmq      # only the MMQ kernels' checks and timings
#   bash bench/gpu/kernels/run.sh --prefill  # only the GEMM prefill's dequantization and GEMM timings
#
# Output: $OUT/kernels.log (everything printed), $OUT/kernels-summary.json (checks, timings,
# steps). It also compiles every kernel for sm_80, sm_86, sm_89 (cubin) and compute_80 (PTX), so a
# build for A100s and consumer cards is known to work. Exit status: 0 when every check passed.
#
# Environment: OUT, NVCC (default nvcc), RBEE_ARCH (default: the GPU's compute capability, else
# 90), RBEE_PEAK_GBS (the bandwidth the percentages are of; default 3350, the H100 SXM datasheet).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
OUT="${OUT:-./out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee "$OUT/kernels.log") 2>&1

nvcc="${NVCC:-nvcc}"
command -v "$nvcc" >/dev/null || { echo "run.sh: $nvcc is not on PATH" >&2; exit 3; }
arch="${RBEE_ARCH:-}"
if [[ -z "$arch" ]] && command -v nvidia-smi >/dev/null; then
  arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
fi
arch="${arch:-90}"
echo "[kernels] $(date -u +%FT%TZ) $("$nvcc" --version | sed -n 's/^Cuda compilation tools, //p'), target sm_$arch"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
kernels=(norm mmvq mmq rope attention sample prefill)
# --fmad=false: the kernels' float arithmetic is written out (fmaf where fused); see common.cuh.
flags=(-std=c++17 -O3 --fmad=false -I"$root/native/kernels")

started=$(date +%s)
pids=()
for k in "${kernels[@]}"; do
  "$nvcc" "${flags[@]}" -arch="sm_$arch" -c "$root/native/kernels/$k.cu" -o "$build/$k.o" & pids+=($!)
done
"$nvcc" "${flags[@]}" -arch="sm_$arch" -Xcompiler -ffp-contract=off -c "$root/bench/gpu/kernels/harness.cu" -o "$build/harness.o" & pids+=($!)
# The other targets, compile-only.
mkdir -p "$build/archs"
for a in 80 86 89; do
  for k in "${kernels[@]}"; do
    "$nvcc" "${flags[@]}" -arch="sm_$a" -cubin "$root/native/kernels/$k.cu" -o "$build/archs/$k.sm_$a.cubin" > "$build/archs/$k.sm_$a.log" 2>&1 &
    pids+=($!)
  done
done
for k in "${kernels[@]}"; do
  "$nvcc" "${flags[@]}" -arch=compute_80 -ptx "$root/native/kernels/$k.cu" -o "$build/archs/$k.compute_80.ptx" > "$build/archs/$k.ptx.log" 2>&1 &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
if (( failed > 0 )); then
  echo "[kernels] $failed compile job(s) failed:"
  cat "$build"/archs/*.log 2>/dev/null || true
  exit 4
fi
"$nvcc" -arch="sm_$arch" "$build"/*.o -lcublas -o "$build/harness"
echo "[kernels] built in $(( $(date +%s) - started ))s: sm_$arch harness; sm_80/86/89 cubins and compute_80 PTX of every kernel compiled:"
ls -1 "$build/archs" | grep -v '\.log$' | tr '\n' ' '
echo

status=0
"$build/harness" "$OUT/kernels-summary.json" "$@" || status=$?
echo "[kernels] harness exit status $status; total $(( $(date +%s) - started ))s; summary: $OUT/kernels-summary.json"
exit "$status"
