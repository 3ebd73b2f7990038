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
    node_xz="${RBEE_CACHE:-$HOME/.cache/rbee}/device/node-v20.20.2-linux-x64.xz"
    [[ -s "$node_xz" ]] || { log "no $node_xz: run scripts/device-bundle.sh once (it downloads and packs Node)"; exit 1; }
    [[ -f "$root/native/cuda/rbee-native.linux-x64-gnu.node" ]] || { log "no CUDA .node: run scripts/build-native-cuda.sh"; exit 1; }
    cp "$node_xz" "$dir/node.xz"
    nice xz -6 -T1 -c "$root/native/cuda/rbee-native.linux-x64-gnu.node" > "$dir/rbee-native.node.xz"
    cp "$root/native/cuda/index.js" "$dir/loader.js"
    cp "$root/native/cuda/BUILD-INFO" "$dir/BUILD-INFO" 2>/dev/null || true
    cp "$root/bench/gpu/graph-decode.mjs" "$root/bench/gpu/graph-decode.sh" "$root/bench/synthetic-gguf.py" "$dir/"
    # gguf-py and the Llama 3 vocab/shape GGUF, from the llama.cpp source node-llama-cpp ships.
    src="$(mktemp -d)"
    git clone -q --no-checkout "$root/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$src/llama.cpp"
    git -C "$src/llama.cpp" show HEAD:models/ggml-vocab-llama-bpe.gguf | xz -6 > "$dir/ggml-vocab-llama-bpe.gguf.xz"
    git -C "$src/llama.cpp" archive --format=tar HEAD gguf-py | xz -6 > "$dir/gguf-py.tar.xz"
    rm -rf "$src"
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
