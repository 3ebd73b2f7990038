#!/usr/bin/env bash
# A worker group across NVIDIA GPUs, driven by the real hive: bench/worker-group.ts on a machine with
# two or more GPUs, no network, no Node and no Rust (the device tool's machines). In stages, each call's
# upload under 64 MiB:
#
#   bash bench/gpu/group-on-gpu.sh prepare      # HERE: .device-group/ with Node, rbee (dist + production
#                                               # node_modules), the bench bundle, the llama.cpp source
#   bash bench/gpu/group-on-gpu.sh setup        # THERE: unpack; build llama-server + ggml-rpc-server with
#                                               # CUDA (sm_90) and write the synthetic 8B model, both in the background
#   bash bench/gpu/group-on-gpu.sh run <out>    # THERE: wait for both, then the bench on cuda:0,cuda:1
set -uo pipefail

repo="$(pwd)"
work=/root/rbee-group
stage="${1:?stage: prepare | setup | run <out>}"
log() { echo "[group $(date +%H:%M:%S)] $*"; }

case "$stage" in
  prepare)
    set -e
    out="$repo/.device-group"
    rm -rf "$out" && mkdir -p "$out"
    grep -qx '/.device-group/' .git/info/exclude || echo '/.device-group/' >> .git/info/exclude
    npm run build >/dev/null
    npx esbuild bench/worker-group.ts --bundle --platform=node --format=esm --target=node20 --external:node-llama-cpp \
      "--banner:js=import {createRequire as bannerCreateRequire} from 'node:module'; const require = bannerCreateRequire(import.meta.url);" \
      --outfile=bench/.work/worker-group.mjs
    # rbee as npm would install it: dist/, bin/, and the production dependencies, less what a CUDA
    # box does not run (other platforms' llama.cpp bindings, node-llama-cpp's own llama.cpp source,
    # the TypeScript compiler).
    list="$(mktemp)"
    npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$repo/||" | grep '^node_modules/' | sort -u \
      | grep -v -e '^node_modules/@node-llama-cpp/' -e '^node_modules/typescript$' -e '^node_modules/@typescript' > "$list"
    echo node_modules/@node-llama-cpp/linux-x64 >> "$list"
    tar -cf - --exclude='node_modules/node-llama-cpp/llama/gitRelease.bundle' --exclude='node_modules/node-llama-cpp/llama/addon' \
      --exclude='node_modules/node-llama-cpp/llama/xpack' package.json bin dist bench/.work/worker-group.mjs $(cat "$list") \
      | nice xz -6 -T2 > "$out/rbee-hive.tar.xz"
    rm -f "$list"
    cp "$HOME/.cache/rbee/device/node-v20.20.2-linux-x64.xz" "$out/node.xz"
    cp "$HOME"/.cache/rbee/device/llama.cpp-*.tar.xz "$out/"
    # llama-server's build runs scripts/ui-assets.cmake (embedding no UI with LLAMA_USE_PREBUILT_UI=OFF),
    # which the cut-down source of scripts/device-bundle.sh leaves out.
    bare="$(mktemp -d)"
    git clone -q --bare node_modules/node-llama-cpp/llama/gitRelease.bundle "$bare/llama.cpp.git"
    git -C "$bare/llama.cpp.git" archive --prefix=llama.cpp/ HEAD scripts | xz -9 > "$out/llama-scripts.tar.xz"
    rm -rf "$bare"
    [[ -f .device/ggml-vocab-llama-bpe.gguf.xz ]] && cp .device/ggml-vocab-llama-bpe.gguf.xz "$out/"
    cp bench/synthetic-gguf.py "$out/"
    du -sh "$out"/* >&2
    ;;
  setup)
    rm -rf "$work" && mkdir -p "$work"
    cd "$work"
    xz -dc "$repo/.device-group/node.xz" > node20 && chmod +x node20
    mkdir rbee && tar -C rbee -xJf "$repo/.device-group/rbee-hive.tar.xz"
    tar -xJf "$repo"/.device-group/llama.cpp-*.tar.xz
    tar -xJf "$repo/.device-group/llama-scripts.tar.xz"
    xz -dc "$repo/.device-group/ggml-vocab-llama-bpe.gguf.xz" > ggml-vocab-llama-bpe.gguf
    cp "$repo/.device-group/synthetic-gguf.py" .
    log "node $(./node20 --version); $(nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tr '\n' ';')"
    cd llama.cpp
    setsid nohup bash -c "cmake -B build -G Ninja -DGGML_CUDA=ON -DGGML_RPC=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      && cmake --build build -j \$(nproc) --target llama-server ggml-rpc-server && touch build/ok" > "$work/llama-build.log" 2>&1 < /dev/null &
    cd "$work"
    setsid nohup bash -c "PYTHONPATH=$work/llama.cpp/gguf-py python3 synthetic-gguf.py --vocab ggml-vocab-llama-bpe.gguf --out synthetic-8b.gguf \
      && touch model.ok" > "$work/model.log" 2>&1 < /dev/null &
    log "llama.cpp build and synthetic model started"
    ;;
  run)
    out="${2:?results folder}"
    mkdir -p "$out"
    cd "$work"
    while [[ ! -f llama.cpp/build/ok || ! -f model.ok ]]; do
      if [[ ! -f llama.cpp/build/ok ]] && ! pgrep -f "cmake" >/dev/null; then log "llama.cpp build failed:"; tail -30 llama-build.log; exit 1; fi
      if [[ ! -f model.ok ]] && ! pgrep -f "synthetic-gguf" >/dev/null; then log "model failed:"; tail -30 model.log; exit 1; fi
      sleep 5
    done
    log "built: $(ls llama.cpp/build/bin | tr '\n' ' '); model $(du -h synthetic-8b.gguf | cut -f1)"
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$out/gpus.csv"
    cd rbee
    RBEE_LLAMA_SERVER="$work/llama.cpp/build/bin/llama-server" RBEE_GGML_RPC_SERVER="$work/llama.cpp/build/bin/ggml-rpc-server" \
      ../node20 bench/.work/worker-group.mjs --model "$work/synthetic-8b.gguf" --devices cuda:0,cuda:1 --runs 5 --max-tokens 128 \
      --label h100x2-synthetic8b-group --out "$out" 2>&1 | tail -30
    log "processes left: $(pgrep -fa 'llama-server|ggml-rpc-server|worker run' | wc -l)"
    ;;
  *)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
