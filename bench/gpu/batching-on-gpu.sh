#!/usr/bin/env bash
# Continuous batching on the CUDA graph path (issue 11), on one NVIDIA GPU machine with no Node,
# Rust or network: bench/gpu/batching.mjs on Gemma 3 270M (each batched stream equal to itself
# alone; aggregate decode tok/s at 1, 8 and 32 streams), and optionally on the synthetic
# Llama-3-8B-shaped Q4_K_M (bench/synthetic-gguf.py, written there).
#
#   bash bench/gpu/batching-on-gpu.sh prepare <dir>          # HERE: <dir>/base (Node, the CUDA .node, the
#                                                            # bench, gguf-py, the Llama 3 vocab, a first
#                                                            # slice of Gemma) and <dir>/g0.. (the rest), each < 60 MiB
#   bash <dir>/base/batching-on-gpu.sh setup <dir>/base      # THERE: unpack into /root/gb
#   bash <dir>/base/batching-on-gpu.sh part <dir>/gN         # THERE: one slice of the Gemma model
#   bash <dir>/base/batching-on-gpu.sh llama <dir>/llama     # THERE: a prebuilt llama.cpp CUDA bin/ (optional;
#                                                            # ~/.cache/rbee/device/llama-cuda-sm90-*-shared-bin.tar.xz,
#                                                            # prepare copies it when it is there); bench then adds --llama-server
#   bash <dir>/base/batching-on-gpu.sh llamasrc <dir>/llamasrc  # THERE: or build llama-server from source
#                                                            # (background; bench waits for it)
#   bash <dir>/base/batching-on-gpu.sh bench <out> [args]    # THERE: batching.mjs on Gemma (args go to it;
#                                                            # RBEE_GB_NO_LLAMA=1 leaves llama-server out,
#                                                            # RBEE_CANDLE_MMQ=off the MMQ kernels)
#   bash <dir>/base/batching-on-gpu.sh bench8b <out> [args]  # THERE: write the 8B-shaped model, batching.mjs on it
#   bash <dir>/base/batching-on-gpu.sh hivebench <dir>/hive <out> [args]  # THERE: 8 OpenAI streams through a hive
#                                                            # to a candle worker --parallel 8 (bench/gpu-hive-parallel.ts)
#
# The device tool copies one folder per call (64 MiB with the repository); the machine keeps
# /root/gb between calls while it stays warm (30 s), so the calls go back to back.
set -uo pipefail

stage="${1:?stage: prepare <dir> | setup <base> | part <slice> | bench <out> | bench8b <out>}"
work=/root/gb
log() { echo "[gb $(date +%H:%M:%S)] $*"; }

case "$stage" in
  prepare)
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    dir="$(realpath -m "${2:?dir}")"
    base="$dir/base"
    rm -rf "$dir" && mkdir -p "$base"
    # shellcheck source=bench/gpu/lib/prepare.sh
    source "$root/bench/gpu/lib/prepare.sh"
    gpu_pack_candle "$root" "$base" || exit 1
    cp "$root/bench/gpu/batching-on-gpu.sh" "$root/bench/gpu/batching.mjs" "$root/bench/gpu/llama-server.mjs" "$root/bench/synthetic-gguf.py" "$base/"
    git -C "$root" rev-parse HEAD > "$base/COMMIT"
    gpu_pack_llama_assets "$root" "$base"
    gpu_slice_gemma "$dir" "$base"
    llama="$(ls "${RBEE_CACHE:-$HOME/.cache/rbee}"/device/llama-cuda-sm90-*-shared-bin.tar.xz 2>/dev/null | head -1)"
    if [[ -n "$llama" ]]; then
      mkdir -p "$dir/llama" && cp "$llama" "$dir/llama/"
    else
      # No prebuilt CUDA llama.cpp here: its source, built there by the llamasrc stage (~5 min on
      # 16 cores, in the background while the other calls go on).
      bash "$root/scripts/device-bundle.sh" --out "$dir/.bundle" llama.cpp >/dev/null
      mkdir -p "$dir/llamasrc" && mv "$dir"/.bundle/llama.cpp-*.tar.xz "$dir/llamasrc/" && rm -rf "$dir/.bundle"
    fi
    # The hive as npm installs it, with bench/gpu-hive-parallel.ts bundled: the hivebench stage.
    (cd "$root" && npm run build >/dev/null && npx esbuild bench/gpu-hive-parallel.ts --bundle --platform=node --format=esm --target=node20 \
      --external:node-llama-cpp --log-level=warning \
      "--banner:js=import {createRequire as bannerCreateRequire} from 'node:module'; const require = bannerCreateRequire(import.meta.url);" \
      --outfile=bench/.work/gpu-hive-parallel.mjs)
    (cd "$root" && RBEE_DEVICE_HIVE_EXTRA="bench/.work/gpu-hive-parallel.mjs" RBEE_DEVICE_LIMIT_MIB=0 \
      bash scripts/device-bundle.sh --out "$dir/.hive" hive >/dev/null)
    mkdir -p "$dir/hive" && mv "$dir/.hive/rbee-hive.tar.xz" "$dir/hive/" && rm -rf "$dir/.hive"
    du -sh "$dir"/* >&2
    ;;
  setup)
    base="$(cd "${2:?base}" && pwd)"
    rm -rf "$work" && mkdir -p "$work/native" "$work/model"
    cd "$work"
    xz -dc "$base/node.xz" > node20 && chmod +x node20
    xz -dc "$base/rbee-native.node.xz" > native/rbee-native.linux-x64-gnu.node
    cp "$base/loader.js" native/index.js
    printf '{"type": "module"}\n' > native/package.json
    cp "$base"/*.mjs "$base"/*.py "$base/batching-on-gpu.sh" "$base/COMMIT" "$base/BUILD-INFO" "$base/gemma.sha256" .
    cp "$base/g-first" model/a
    xz -dc "$base/ggml-vocab-llama-bpe.gguf.xz" > ggml-vocab-llama-bpe.gguf
    tar -xJf "$base/gguf-py.tar.xz"
    log "node $(./node20 --version); $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader); cores $(nproc)"
    # The 8B-shaped model is written in the background (one core, ~5 GB) while the Gemma slices
    # come; bench8b waits for it.
    setsid nohup bash -c "PYTHONPATH=$work/gguf-py python3 synthetic-gguf.py --vocab ggml-vocab-llama-bpe.gguf --out synthetic-8b.gguf.tmp \
      && mv synthetic-8b.gguf.tmp synthetic-8b.gguf" > "$work/synthetic.log" 2>&1 < /dev/null &
    ;;
  part)
    cp "${2:?slice dir}"/g* "$work/model/"
    log "slices: $(ls "$work/model" | tr '\n' ' ')"
    ;;
  llamasrc)
    # llama-server from source for this GPU (CUDA graphs on by default in ggml-cuda); bench waits for it.
    mkdir -p "$work/llama-src"
    tar -C "$work/llama-src" -xJf "${2:?llamasrc dir}"/llama.cpp-*.tar.xz
    cd "$work/llama-src"/llama.cpp* || exit 1
    arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')"
    setsid nohup bash -c "cmake -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${arch:-90} -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      && cmake --build build -j \$(nproc) --target llama-server \
      && mkdir -p $work/llama && ln -sfn \$PWD/build/bin $work/llama/bin" > "$work/llama-build.log" 2>&1 < /dev/null &
    log "llama.cpp build started (sm_${arch:-90})"
    ;;
  llama)
    mkdir -p "$work/llama"
    tar -C "$work/llama" -xJf "${2:?llama dir}"/llama-cuda-*.tar.xz
    log "llama.cpp: $(ls "$work/llama/bin" | tr '\n' ' ')"
    ;;
  hivebench)
    # 8 OpenAI streams through a real hive to one candle worker --parallel 8 on cuda:0, each equal
    # to itself served alone (bench/gpu-hive-parallel.ts). Needs setup and every Gemma slice.
    hive="$(cd "${2:?hive dir}" && pwd)"
    out="${3:?out}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    shift 3
    cd "$work"
    model=gemma-3-270m-q4_k_m.gguf
    [[ -f "$model" ]] || cat model/a model/g? > "$model"
    [[ "$(sha256sum "$model" | cut -d' ' -f1)" == "$(cat gemma.sha256)" ]] || { log "the Gemma slices do not add up to the model"; exit 1; }
    rm -rf rbee && mkdir rbee && tar -C rbee -xJf "$hive/rbee-hive.tar.xz"
    cd rbee
    # The package's loader (native/index.js) loads the CUDA build named here.
    NAPI_RS_NATIVE_LIBRARY_PATH="$work/native/rbee-native.linux-x64-gnu.node" timeout 500 ../node20 bench/.work/gpu-hive-parallel.mjs \
      --model "$work/$model" --device cuda:0 --out "$out" "$@" 2>&1 | tee "$out/hive-parallel.log"
    log "processes left: $(pgrep -fa 'worker run|hive start' | grep -vc pgrep)"
    ;;
  bench | bench8b)
    out="${2:?out}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    shift 2
    cd "$work"
    {
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
      echo "rbee commit $(cat COMMIT); .node: $(tr '\n' ' ' < BUILD-INFO)"
      lscpu | grep -E "Model name|^CPU\(s\)"
    } > "$out/machine.txt" 2>&1
    cat "$out/machine.txt"
    if [[ "$stage" == bench ]]; then
      model=gemma-3-270m-q4_k_m.gguf
      [[ -f "$model" ]] || cat model/a model/g? > "$model"
      if [[ "$(sha256sum "$model" | cut -d' ' -f1)" != "$(cat gemma.sha256)" ]]; then
        log "the Gemma slices do not add up to the model (sha256 differs)"
        exit 1
      fi
      label=gemma
    else
      model=synthetic-8b.gguf
      waited=0
      while [[ ! -f "$model" ]] && pgrep -f synthetic-gguf > /dev/null; do
        sleep 2
        waited=$((waited + 2))
      done
      [[ -f "$model" ]] || { log "the synthetic 8B model did not appear:"; tail -20 synthetic.log; exit 1; }
      log "model: $(du -h "$model" | cut -f1) (waited ${waited}s)"
      label=synthetic-8b
    fi
    extra=()
    if [[ -z "${RBEE_GB_NO_LLAMA:-}" ]]; then
      while [[ ! -x "$work/llama/bin/llama-server" ]] && pgrep -f "cmake --build" > /dev/null; do sleep 3; done
      [[ -x "$work/llama/bin/llama-server" ]] && extra=(--llama-server "$work/llama/bin")
    fi
    log "llama-server: ${extra[*]:-none}; RBEE_CANDLE_MMQ=${RBEE_CANDLE_MMQ:-on}"
    timeout 500 ./node20 batching.mjs native/index.js "$model" "$out/batching-$label.json" "${extra[@]}" "$@" 2>&1 | tee "$out/batching-$label.log"
    ;;
  *)
    echo "unknown stage $stage" >&2
    exit 2
    ;;
esac
