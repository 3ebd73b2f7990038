#!/usr/bin/env bash
# The CUDA graph decode path (RBEE_CANDLE_FORWARD=graph) against the eager tensor path on a
# synthetic Llama-3-8B-shaped Q4_K_M (bench/synthetic-gguf.py), on a GPU machine with no Node,
# Rust or network (only the driver, CUDA 13 libraries and Python with numpy). Two stages:
#
#   bash bench/gpu/graph-decode.sh prepare [dir]   # HERE: CUDA .node (scripts/build-native-cuda.sh first),
#                                                  # Node, the napi loader, the bench, gguf-py, the Llama 3 vocab -> dir
#   bash bench/gpu/graph-decode.sh run <dir> <out> # THERE: unpack, write the 8B model, bench/gpu/graph-decode.mjs
#
# dir defaults to .device-graph/ (kept out of git through .git/info/exclude); it is what travels
# to the GPU machine (about 45 MiB). Output: <out>/graph-decode.json and graph-decode.log.
set -euo pipefail

stage="${1:?stage: prepare [dir] | run <dir> <out>}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { echo "[graph-decode $(date +%H:%M:%S)] $*"; }

case "$stage" in
  prepare)
    dir="${2:-$root/.device-graph}"
    mkdir -p "$dir"
    # shellcheck source=bench/gpu/lib/prepare.sh
    source "$root/bench/gpu/lib/prepare.sh"
    gpu_pack_candle "$root" "$dir" || exit 1
    cp "$root/bench/gpu/graph-decode.mjs" "$root/bench/gpu/graph-decode.sh" "$root/bench/synthetic-gguf.py" "$dir/"
    gpu_pack_llama_assets "$root" "$dir"
    du -sh "$dir"/* >&2
    ;;
  run)
    dir="$(cd "${2:?dir}" && pwd)"
    out="${3:?out folder}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    work=/tmp/rbee-graph-decode
    rm -rf "$work" && mkdir -p "$work/native"
    cd "$work"
    xz -dc "$dir/node.xz" > node20 && chmod +x node20
    xz -dc "$dir/rbee-native.node.xz" > native/rbee-native.linux-x64-gnu.node
    cp "$dir/loader.js" native/index.js
    printf '{"type": "module"}\n' > native/package.json
    xz -dc "$dir/ggml-vocab-llama-bpe.gguf.xz" > ggml-vocab-llama-bpe.gguf
    tar -xJf "$dir/gguf-py.tar.xz"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.csv"
    log "writing the synthetic 8B model"
    PYTHONPATH="$work/gguf-py" python3 "$dir/synthetic-gguf.py" --vocab ggml-vocab-llama-bpe.gguf --out synthetic-8b.gguf
    log "model: $(du -h synthetic-8b.gguf | cut -f1)"
    ./node20 "$dir/graph-decode.mjs" native/index.js synthetic-8b.gguf "$out/graph-decode.json" "${@:4}" 2>&1 | tee "$out/graph-decode.log"
    ;;
  *)
    echo "unknown stage $stage" >&2
    exit 2
    ;;
esac
