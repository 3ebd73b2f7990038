#!/usr/bin/env bash
# The candle engine against llama.cpp on an NVIDIA GPU machine that has no network, no Node and no
# Rust, only the driver, CUDA 13 libraries, nvcc, cmake and a Python with numpy: how the figures in
# bench/results/*-gpu-*-candle.md were made. Run from the repo root on that machine, in stages, so
# that each call's upload stays under the device tool's 64 MiB:
#
#   bash bench/gpu/run-on-gpu.sh prepare        # HERE, not there: CUDA .node, bundles, .device/, model chunks in .gpu-model/
#   bash bench/gpu/run-on-gpu.sh setup          # unpack .device/ (scripts/device-bundle.sh), start the llama.cpp CUDA build
#   bash bench/gpu/run-on-gpu.sh part <file>    # add one chunk of the real test model (.gpu-model/a0, b0..b3)
#   bash bench/gpu/run-on-gpu.sh bench <out>    # wait for the build, assemble the model; agreement and speed on Gemma 3 270M
#   bash bench/gpu/run-on-gpu.sh bench8b <out>  # a synthetic Llama-3-8B-shaped Q4_K_M: speed against the roofline
#
# The llama.cpp build runs in its own session so it goes on between calls while the machine is held.
set -uo pipefail

repo="$(pwd)"
work=/root/rbee-gpu
stage="${1:?stage: setup | part <file> | bench <out>}"

log() { echo "[gpu $(date +%H:%M:%S)] $*"; }

case "$stage" in
  prepare)
    bash scripts/build-native-cuda.sh
    npm run bench:candle:bundle
    npx esbuild bench/candle-agreement.ts --bundle --platform=node --format=esm --target=node20 --external:node-llama-cpp \
      --external:../../native/index.js "--banner:js=import {createRequire} from 'node:module'; const require = createRequire(import.meta.url);" \
      --outfile=bench/.work/candle-agreement.mjs
    model="$HOME/.cache/rbee/models/default/gemma-3-270m-q4_k_m.gguf"
    [[ -f bench/.work/gemma-agreement-ref.json ]] || node --import tsx bench/candle-agreement.ts --record bench/.work/gemma-agreement-ref.json --model "$model"
    bash scripts/device-bundle.sh
    cp bench/.work/candle-bench.mjs bench/.work/candle-agreement.mjs bench/.work/gemma-agreement-ref.json .device/
    # Llama 3 8B's shape and tokenizer, for the synthetic 8B model: from the llama.cpp source node-llama-cpp ships.
    source="$(mktemp -d)"
    git clone -q --no-checkout node_modules/node-llama-cpp/llama/gitRelease.bundle "$source/llama.cpp"
    git -C "$source/llama.cpp" show HEAD:models/ggml-vocab-llama-bpe.gguf | xz -9 > .device/ggml-vocab-llama-bpe.gguf.xz
    rm -rf "$source"
    # The first chunk travels with .device/ (about 40 MiB), the others alone.
    rm -rf .gpu-model && mkdir .gpu-model
    head -c 22000000 "$model" > .gpu-model/a0
    tail -c +22000001 "$model" | split -b 62914560 -d -a 1 - .gpu-model/b
    grep -qx '/.gpu-model/' .git/info/exclude || echo '/.gpu-model/' >> .git/info/exclude
    ;;
  setup)
    rm -rf "$work" && mkdir -p "$work/model" "$work/bench/.work"
    cd "$work"
    xz -dc "$repo/.device/node.xz" > node20 && chmod +x node20
    tar -xJf "$repo/.device/rbee-js.tar.xz"
    xz -dc "$repo/.device/rbee-native.linux-x64-gnu.node.xz" > native/rbee-native.linux-x64-gnu.node
    cp "$repo"/.device/*.mjs bench/.work/
    cp "$repo/.device/gemma-agreement-ref.json" .
    xz -dc "$repo/.device/ggml-vocab-llama-bpe.gguf.xz" > ggml-vocab-llama-bpe.gguf
    tar -xJf "$repo"/.device/llama.cpp-*.tar.xz
    log "node $(./node20 --version); $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
    ./node20 -e "import('./native/index.js').then(b => console.log('binding backends:', b.backends()))"
    cd "$work/llama.cpp"
    # Every ggml-cuda kernel for sm_90 only; nothing fetched at configure or build time.
    setsid nohup bash -c "cmake -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      && cmake --build build -j 16 --target llama-bench llama-quantize && touch build/ok" > "$work/llama-build.log" 2>&1 < /dev/null &
    log "llama.cpp build started"
    ;;
  part)
    cp "$repo/${2:?chunk file}" "$work/model/"
    log "model chunks: $(ls "$work/model" | tr '\n' ' '); llama.cpp build: $(tail -c 300 "$work/llama-build.log" | tr '\r\n' '  ' | tail -c 120)"
    ;;
  bench)
    out="${2:?results folder}"
    mkdir -p "$out"
    cd "$work"
    while [[ ! -f llama.cpp/build/ok ]]; do
      if ! pgrep -f "cmake --build" >/dev/null && ! pgrep -f "cmake -B" >/dev/null; then
        log "llama.cpp build failed:"; tail -30 llama-build.log; exit 1
      fi
      sleep 5
    done
    bin="$work/llama.cpp/build/bin"
    log "llama.cpp built: $(ls "$bin")"
    cat model/a0 model/b? > gemma-3-270m-q4_k_m.gguf
    log "gemma sha256 $(sha256sum gemma-3-270m-q4_k_m.gguf | cut -c1-16)"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv > "$out/gpu.csv"
    # 1. Correctness: greedy tokens on the GPU against llama.cpp's, recorded on CPU beforehand.
    ./node20 bench/.work/candle-agreement.mjs --reference gemma-agreement-ref.json --model gemma-3-270m-q4_k_m.gguf --device cuda:0 --out "$out" 2>&1 | tee "$out/agreement.txt"
    # 2. Speed on the real small model.
    ./node20 bench/.work/candle-bench.mjs --device cuda:0 --peer "llama-bench:$bin/llama-bench" --model gemma-3-270m-q4_k_m.gguf \
      --threads 8 --runs 5 --label h100-gemma270m --out "$out" 2>&1 | tail -40
    ;;
  bench8b)
    # 3. Speed on an 8B-shaped Q4_K_M with random weights, against the memory-bandwidth roofline.
    out="${2:?results folder}"
    mkdir -p "$out"
    cd "$work"
    bin="$work/llama.cpp/build/bin"
    PYTHONPATH="$work/llama.cpp/gguf-py" python3 "$repo/bench/synthetic-gguf.py" --vocab ggml-vocab-llama-bpe.gguf --out synthetic-8b.gguf
    ./node20 bench/.work/candle-bench.mjs --device cuda:0 --peer "llama-bench:$bin/llama-bench" --model synthetic-8b.gguf \
      --threads 8 --runs 3 --label h100-synthetic8b --out "$out" 2>&1 | tail -40
    ;;
  *)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
