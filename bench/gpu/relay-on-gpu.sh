#!/usr/bin/env bash
# The relay's overhead on an NVIDIA GPU machine: bench/gpu-relay.ts (through rbee's hive vs straight to
# llama-server, both on a llama-server built there with CUDA, Gemma 3 270M, 1 and 64 streams). That
# machine has no Node, no network and no npm, and the device tool sends the session's checkout plus
# at most 64 MiB, so everything travels in upload folders of the checkout (git-ignored), one a call:
#
#   bash bench/gpu/relay-on-gpu.sh prepare          # HERE: bundle (scripts/device-bundle.sh node llama.cpp hive),
#                                                   # the bench bundle, the model; cut into <checkout>/.relay-up/1..N
#   bash .relay-up/1/relay-on-gpu.sh part .relay-up/1   # THERE, first: unpack llama.cpp, start its CUDA build
#                                                   # (own session: it goes on between calls while the machine is held)
#   bash .relay-up/K/relay-on-gpu.sh part .relay-up/K   # THERE: the next slice of node + hive + model
#   bash .relay-up/N/relay-on-gpu.sh bench <out> [gpu-relay.ts flags]   # THERE: join the slices, wait for the
#                                                   # build, run the bench (flags default to the ones below)
#   bash .relay-up/N/relay-on-gpu.sh pack <out>     # THERE, optional: the CUDA build back, for later sessions;
#                                                   # cat the pieces into one file and prepare with
#                                                   # RBEE_RELAY_LLAMA_BIN=<it> to skip the build next time
#
# Device time, from the first H100 run (bench/results/2026-12-05-gpu-h100-relay-partial.md): machine start 1-2 min,
# six uploads of <= 57 MiB ~1 min (issue them back to back: the machine goes back after 30 s idle), the CUDA build
# ~5 min (it runs while the slices travel), then the bench. llama-server needs ~125 ms a decode step at 64 slots
# with this model, so a 64-stream batch of 256 tokens takes ~33 s; the defaults (64 tokens, no worker-direct side)
# keep the bench near 3 min. Give the last call its whole 600 s; the results are written before the profile run.
# Each upload folder holds a copy of this script, so a call needs nothing from the checkout it lands in.
#
# RBEE_RELAY_WITH_I11=1 (prepare): for a machine that already ran issue11-on-gpu.sh's setup and
# parts (/root/i11: Node, Gemma 3 270M, llama.cpp built with CUDA graphs on, same commit): one
# upload, the hive and the bench; bench takes the rest from /root/i11.
set -uo pipefail

work="${RBEE_RELAY_WORK:-/root/rbee-relay}"
stage="${1:?stage: prepare | part <folder> | bench <out> | pack <out>}"
slice_bytes=$((56 * 1048576))
log() { echo "[relay $(date +%H:%M:%S)] $*"; }

case "$stage" in
  prepare)
    set -e
    repo="$(pwd)"
    model="${RBEE_RELAY_MODEL:-$HOME/.cache/rbee/models/default/gemma-3-270m-q4_k_m.gguf}"
    # The device tool sends the checkout the session started in: for a worktree, the main one.
    checkout="$(dirname "$(git rev-parse --path-format=absolute --git-common-dir)")"
    upload="$checkout/.relay-up"
    exclude="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"
    grep -qxF '/.relay-up/' "$exclude" || echo '/.relay-up/' >> "$exclude"
    npm run build >/dev/null
    npx esbuild bench/gpu-relay.ts --bundle --platform=node --format=esm --target=node20 --external:node-llama-cpp --log-level=warning \
      "--banner:js=import {createRequire as bannerCreateRequire} from 'node:module'; const require = bannerCreateRequire(import.meta.url);" \
      --outfile=bench/.work/gpu-relay.mjs
    git describe --always --dirty > bench/.work/gpu-relay.commit
    RBEE_DEVICE_HIVE_EXTRA="bench/.work/gpu-relay.mjs bench/.work/gpu-relay.commit bench/lib/cpu-prof-preload.mjs bench/relay-floor.mjs" RBEE_DEVICE_LIMIT_MIB=0 \
      bash scripts/device-bundle.sh --out .device-relay node llama.cpp hive
    rm -rf "$upload" && mkdir -p "$upload/1"
    if [[ "${RBEE_RELAY_WITH_I11:-0}" == 1 ]]; then
      cp .device-relay/rbee-hive.tar.xz bench/gpu/relay-on-gpu.sh "$upload/1/"
      printf 'parts=0\ni11=/root/i11\nmodel=gemma-3-270m-q4_k_m.gguf\n' > "$upload/1/PAYLOAD"
      du -sh "$upload"/* >&2
      log "1 upload in $upload: call 'part .relay-up/1' after issue11-on-gpu.sh's setup and parts, then 'bench \$OUT'"
      exit 0
    fi
    if [[ -n "${RBEE_RELAY_LLAMA_BIN:-}" ]]; then
      # A build brought back by 'pack' earlier (same llama.cpp commit): no build there at all.
      cp "$RBEE_RELAY_LLAMA_BIN" "$upload/1/llama-cuda-bin.tar.xz"
    else
      # First call: the llama.cpp source alone, so its build starts while the rest travels.
      cp .device-relay/llama.cpp-*.tar.xz "$upload/1/"
    fi
    # The rest, one stream cut into slices: Node, the hive (+ bench), the model.
    stream="$(mktemp -d)"
    cp .device-relay/node.xz .device-relay/rbee-hive.tar.xz "$stream/"
    ln -s "$model" "$stream/model.gguf"
    tar -C "$stream" -chf - node.xz rbee-hive.tar.xz model.gguf > "$stream/payload.tar"
    sha="$(sha256sum "$stream/payload.tar" | cut -d' ' -f1)"
    first=$(( slice_bytes - $(du -cb "$upload/1" | tail -1 | cut -f1) ))
    head -c "$first" "$stream/payload.tar" > "$upload/1/part-00"
    tail -c +$((first + 1)) "$stream/payload.tar" | split -b "$slice_bytes" -d -a 2 --numeric-suffixes=1 - "$stream/part-"
    count=1
    for part in "$stream"/part-*; do
      count=$((count + 1))
      mkdir -p "$upload/$count" && mv "$part" "$upload/$count/"
    done
    for dir in "$upload"/*; do
      cp bench/gpu/relay-on-gpu.sh "$dir/"
      printf 'parts=%s\nsha256=%s\nmodel=%s\n' "$count" "$sha" "$(basename "$model")" > "$dir/PAYLOAD"
    done
    rm -rf "$stream"
    du -sh "$upload"/* >&2
    log "$count uploads in $upload: call 'part .relay-up/K' for K = 1..$count (carry .relay-up/K), then 'bench \$OUT'"
    ;;
  part)
    from="${2:?upload folder}"
    mkdir -p "$work/parts"
    cp "$from"/part-* "$work/parts/" 2>/dev/null
    cp "$from/PAYLOAD" "$from/relay-on-gpu.sh" "$work/"
    i11="$(sed -n 's/^i11=//p' "$work/PAYLOAD")"
    if [[ -n "$i11" ]]; then
      [[ -x "$i11/node20" && -f "$i11/gemma-3-270m-q4_k_m.gguf" || -f "$i11/model/a" ]] || { log "no issue11 setup in $i11"; exit 1; }
      cp "$from/rbee-hive.tar.xz" "$work/"
      log "hive bundle here; Node, model and llama.cpp from $i11"
      exit 0
    fi
    if [[ -f "$from/llama-cuda-bin.tar.xz" && ! -d "$work/llama.cpp" ]]; then
      log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader); $(nproc) cores; prebuilt llama.cpp"
      mkdir -p "$work/llama.cpp/build" && tar -C "$work/llama.cpp/build" -xJf "$from/llama-cuda-bin.tar.xz" && touch "$work/llama.cpp/build/ok"
    fi
    if compgen -G "$from/llama.cpp-*.tar.xz" >/dev/null && [[ ! -d "$work/llama.cpp" ]]; then
      log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader); $(nproc) cores; nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
      tar -C "$work" -xJf "$from"/llama.cpp-*.tar.xz
      cd "$work/llama.cpp"
      # llama-server alone, for sm_90; CUDA graphs are on by default in ggml-cuda; nothing fetched.
      setsid nohup bash -c "cmake -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
          -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF \
          -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        && cmake --build build -j \$(nproc) --target llama-server && touch build/ok" > "$work/llama-build.log" 2>&1 < /dev/null &
      log "llama.cpp build started"
    fi
    log "slices here: $(ls "$work/parts" | tr '\n' ' ')(of $(sed -n 's/^parts=//p' "$work/PAYLOAD")); build: $(tail -c 200 "$work/llama-build.log" 2>/dev/null | tr '\r\n' '  ' | tail -c 100)"
    ;;
  bench)
    out="${2:?results folder}"
    shift 2
    (( $# > 0 )) || set -- --rounds 5 --streams 1,64 --max-tokens 64 --context 1024 --skip-worker-direct --profile
    mkdir -p "$out"
    cd "$work"
    want="$(sed -n 's/^parts=//p' PAYLOAD)"
    have="$(ls parts | wc -l)"
    [[ "$have" == "$want" ]] || { log "only $have of $want slices here (a fresh machine loses them: start again at part 1)"; exit 1; }
    i11="$(sed -n 's/^i11=//p' PAYLOAD)"
    if [[ -n "$i11" && ! -f payload.ok ]]; then
      # issue11-on-gpu.sh joins the Gemma slices in its bench or diag stage.
      [[ -f "$i11/gemma-3-270m-q4_k_m.gguf" ]] || { log "run issue11-on-gpu.sh diag or bench first (no joined Gemma model)"; exit 1; }
      ln -sf "$i11/node20" node20 && ln -sf "$i11/gemma-3-270m-q4_k_m.gguf" model.gguf && ln -sfn "$i11/llama.cpp" llama.cpp
      mkdir -p rbee && tar -C rbee -xJf rbee-hive.tar.xz
      touch payload.ok
    fi
    if [[ ! -f payload.ok ]]; then
      sha="$(cat parts/part-* | sha256sum | cut -d' ' -f1)"
      [[ "$sha" == "$(sed -n 's/^sha256=//p' PAYLOAD)" ]] || { log "payload sha256 mismatch"; exit 1; }
      cat parts/part-* | tar -xf - && rm -rf parts && mkdir parts && for i in $(seq 1 "$want"); do touch "parts/$i"; done
      xz -dc node.xz > node20 && chmod +x node20
      mkdir -p rbee && tar -C rbee -xJf rbee-hive.tar.xz
      touch payload.ok
    fi
    log "node $(./node20 --version); model $(sha256sum model.gguf | cut -c1-16) $(stat -c %s model.gguf) bytes"
    while [[ ! -f llama.cpp/build/ok ]]; do
      if ! pgrep -f "cmake" >/dev/null; then log "llama.cpp build failed:"; tail -30 llama-build.log; exit 1; fi
      sleep 3
    done
    server="$work/llama.cpp/build/bin/llama-server"
    # A prebuilt (packed) build keeps its old RUNPATH; its libraries sit beside the binary.
    export LD_LIBRARY_PATH="$work/llama.cpp/build/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    log "llama-server built: $("$server" --version 2>&1 | tr '\n' ' ')"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv > "$out/gpu.csv"
    cd rbee
    set -o pipefail
    ../node20 bench/.work/gpu-relay.mjs --server "$server" --model "$work/model.gguf" --device cuda:0 --out "$out" "$@" 2>&1 | tee "$out/gpu-relay.log"
    status=$?
    log "processes left: $(pgrep -fa 'llama-server|worker run|hive start' | grep -vc pgrep)"
    exit $status
    ;;
  pack)
    # Brings the CUDA build back (llama-server plus llama-bench, shared libs; build/bin), so a later
    # session can carry it instead of paying ~4 min of device time for the build again. Pieces of
    # 15 MiB (the device tool returns at most 8 files of 16 MiB). Binaries keep their build-tree
    # RUNPATH: run them with LD_LIBRARY_PATH=<unpacked bin>.
    out="${2:?results folder}"
    mkdir -p "$out"
    cd "$work/llama.cpp" || exit 1
    cmake --build build -j "$(nproc)" --target llama-bench 2>&1 | tail -2
    ls -la build/bin
    tar -C build -cf - bin | xz -T0 -6 | split -b 15M -d -a 1 - "$out/llama-cuda-bin.tar.xz."
    ls -la "$out"
    ;;
  *)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
