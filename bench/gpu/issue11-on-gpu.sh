#!/usr/bin/env bash
# Issue 11's same-run comparison on one NVIDIA GPU machine (no network, no Node, no Rust): the
# candle engine's CUDA graph path against llama.cpp's CUDA build (node-llama-cpp's source, built
# there with CUDA graphs on, sm_90), same GGUFs, same run, alternating; and greedy agreement of
# the two on Gemma 3 270M. How bench/results/2026-12-06-gpu-h100-* were made.
#
#   bash bench/gpu/issue11-on-gpu.sh prepare <dir>       # HERE: <dir>/base (Node, the CUDA .node, benches,
#                                                        # llama.cpp source, gguf-py, vocab) and <dir>/g0..g3
#                                                        # (Gemma 3 270M in slices), each under 60 MiB
#   bash <dir>/base/issue11-on-gpu.sh setup <dir>/base   # THERE: unpack; start the llama.cpp build and the
#                                                        # synthetic 8B model in the background
#   bash <dir>/base/issue11-on-gpu.sh part <dir>/gN      # THERE: one slice of the Gemma model
#   bash <dir>/base/issue11-on-gpu.sh bench <out> [--runs N]  # THERE: wait for both, then agreement and speed
#   bash <dir>/base/issue11-on-gpu.sh diag <out>        # THERE: where the VRAM goes (RBEE_CANDLE_VRAM_TRACE on the
#                                                        # 8B shape at context 8192) and greedy agreement against
#                                                        # four llama.cpp runs (prompt batched, a token at a time,
#                                                        # flash attention off, its CPU backend) for graph,
#                                                        # graph-serial, tensor and the engine's CPU (ggml) path;
#                                                        # bad input on the GPU path (bad-input.mjs)
#   bash <dir>/base/issue11-on-gpu.sh quick <out> [runs] # THERE, after setup (no Gemma needed): bad input with tiny
#                                                        # models, the VRAM trace, the 8B speed with PDL on and off
#   bash <dir>/base/issue11-on-gpu.sh tp <out>          # THERE, after setup (issue 14): tensor-parallel candle ranks
#                                                        # (tp-check.mjs) on the machine's GPUs, or two ranks on one
#                                                        # GPU: agreement with one GPU, batching, a shard killed
#   bash <dir>/base/issue11-on-gpu.sh serve <out>       # THERE: the 8B shape served: 8 and 32 streams against
#                                                        # llama-server -np 8 / -np 32 (batching.mjs), TTFT of a
#                                                        # 512-token prompt and GPU memory at context 8192 (ttft-vram.mjs)
#
# RBEE_I11_NO_GEMMA=1 (prepare): no Gemma slices (bench then skips agreement and Gemma's speed).
# RBEE_I11_PDL_AB=1 (bench): the 8B speed also with RBEE_CANDLE_PDL=on.
# RBEE_I11_GEMMS="tf32 bf16" (bench, serve): the GEMM prefill's operand types to run
# (RBEE_CANDLE_PREFILL_GEMM), each a run of its own; default tf32.
#
# The device tool copies one folder per call (64 MiB); the machine keeps /root/i11 between calls
# while it stays warm, and a background job started with setsid runs on between them.
set -uo pipefail

stage="${1:?stage: prepare <dir> | setup <base> | part <slice> | quick <out> | bench <out> | diag <out> | serve <out> | tp <out>}"
work=/root/i11
log() { echo "[i11 $(date +%H:%M:%S)] $*"; }
# Waits (in $work) for setup's llama.cpp build and synthetic 8B model.
# RBEE_I11_NO_LLAMA=1: candle alone, no llama.cpp build (quick then has no peer: TTFT and memory
# of candle only, PDL on/off from graph-decode.mjs): for a call that must be short.
no_llama="${RBEE_I11_NO_LLAMA:-0}"
wait_ready() {
  local wanted=("llama.cpp/build/ok:llama-build.log" "synthetic-8b.gguf:synthetic.log")
  [[ "$no_llama" == 1 ]] && wanted=("synthetic-8b.gguf:synthetic.log")
  for what in "${wanted[@]}"; do
    file="${what%%:*}"
    logf="${what##*:}"
    waited=0
    while [[ ! -f "$file" ]]; do
      if ! pgrep -f "cmake|ninja|synthetic-gguf" > /dev/null; then
        log "$file did not appear:"
        tail -30 "$logf"
        break
      fi
      sleep 3
      waited=$((waited + 3))
    done
    log "$file ready (waited ${waited}s)"
  done
}
# Results go into $work/res (kept between calls, beside earlier stages'), packed by `pack` into
# <out>/results.tar.xz (the device tool brings back 8 files at most); cd to $work, $bin is llama.cpp's.
results_into() {
  mkdir -p "$1"
  final="$(cd "$1" && pwd)"
  out="$work/res"
  mkdir -p "$out"
  cd "$work" || exit 1
  bin="$work/llama.cpp/build/bin"
}
pack() { tar -C "$work" -cJf "$final/results.tar.xz.tmp" res && mv "$final/results.tar.xz.tmp" "$final/results.tar.xz"; }
# The machine, the builds and the GPU's short name ($gpu), into $out/machine.txt.
machine_info() {
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
    echo "rbee commit $(cat COMMIT); .node: $(tr '\n' ' ' < BUILD-INFO)"
    echo "llama.cpp $(cat llama.cpp/COMMIT); nvcc $(nvcc --version | tail -2 | head -1)"
    grep -E "CUDA_GRAPHS|CMAKE_CUDA_ARCHITECTURES|GGML_NATIVE" llama.cpp/build/CMakeCache.txt
    lscpu | grep -E "Model name|^CPU\(s\)"
  } > "$out/machine.txt" 2>&1
  cat "$out/machine.txt"
  gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -oiE 'h100|h200|a100|l40s' | head -1 | tr 'A-Z' 'a-z')"
}
# <model basename> <label suffix> [env...]: graph path vs llama-bench (pp512, tg128), alternating, medians ($runs rounds).
speed() {
  local m="$1" suffix="$2"
  shift 2
  local peer=(--peer "llama-bench:$bin/llama-bench")
  [[ "$no_llama" == 1 ]] && peer=()
  env "$@" timeout 240 ./node20 bench/.work/candle-bench.mjs --device cuda:0 --forward graph "${peer[@]}" \
    --model "$m.gguf" --threads 8 --prompt-tokens 512 --decode-tokens 128 --runs "$runs" --quiet-wait-ms 1000 --retries 0 \
    --label "${gpu:-gpu}-$m-graph$suffix" --out "$out" > "$out/bench-$m$suffix.log" 2>&1
  local rc=$?
  tail -22 "$out/bench-$m$suffix.log"
  pack
  return $rc
}
# Joins the Gemma slices (in $work) and checks the sum.
join_gemma() {
  [[ -f gemma.sha256 && ! -f gemma-3-270m-q4_k_m.gguf ]] || return 0
  cat model/a model/g? > gemma-3-270m-q4_k_m.gguf
  if [[ "$(sha256sum gemma-3-270m-q4_k_m.gguf | cut -d' ' -f1)" != "$(cat gemma.sha256)" ]]; then
    log "the Gemma slices do not add up to the model (sha256 differs)"
    rm -f gemma-3-270m-q4_k_m.gguf
  fi
}

case "$stage" in
  prepare)
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    dir="$(realpath -m "${2:?dir}")"
    base="$dir/base"
    rm -rf "$dir" && mkdir -p "$base"
    # shellcheck source=bench/gpu/lib/prepare.sh
    source "$root/bench/gpu/lib/prepare.sh"
    llama_xz="$(ls "$gpu_cache"/device/llama.cpp-*-src2.tar.xz | head -1)"
    [[ -s "$llama_xz" ]] || { log "run scripts/device-bundle.sh once (it packs the llama.cpp source)"; exit 1; }
    gpu_pack_candle "$root" "$base" || exit 1
    cp "$llama_xz" "$base/"
    (cd "$root" && npx esbuild bench/candle-engine.ts --bundle --platform=node --format=esm --target=node20 --external:node-llama-cpp \
      --external:../../native/index.js "--banner:js=import {createRequire} from 'node:module'; const require = createRequire(import.meta.url);" \
      --outfile="$base/candle-bench.mjs" --log-level=warning)
    cp "$root/bench/gpu/issue11-on-gpu.sh" "$root/bench/gpu/llama-agreement.mjs" "$root/bench/gpu/graph-decode.mjs" "$root/bench/gpu/batching.mjs" \
      "$root/bench/gpu/ttft-vram.mjs" "$root/bench/gpu/llama-server.mjs" "$root/bench/gpu/bad-input.mjs" "$root/bench/gpu/tp-check.mjs" "$root/bench/synthetic-gguf.py" "$base/"
    cp -r "$root/bench/gpu/llama-ref" "$base/llama-ref"
    git -C "$root" rev-parse HEAD > "$base/COMMIT"
    gpu_pack_llama_assets "$root" "$base"
    [[ "${RBEE_I11_NO_GEMMA:-0}" == 1 ]] || gpu_slice_gemma "$dir" "$base"
    du -sh "$dir"/* >&2
    ;;
  setup)
    base="$(cd "${2:?base}" && pwd)"
    rm -rf "$work" && mkdir -p "$work/native" "$work/bench/.work" "$work/model"
    cd "$work"
    xz -dc "$base/node.xz" > node20 && chmod +x node20
    xz -dc "$base/rbee-native.node.xz" > native/rbee-native.linux-x64-gnu.node
    cp "$base/loader.js" native/index.js
    printf '{"type": "module"}\n' > native/package.json
    cp "$base/candle-bench.mjs" bench/.work/
    cp "$base"/*.mjs "$base"/*.py "$base/issue11-on-gpu.sh" "$base/COMMIT" "$base/BUILD-INFO" .
    if [[ -f "$base/g-first" ]]; then
      cp "$base/gemma.sha256" .
      cp "$base/g-first" model/a
    fi
    xz -dc "$base/ggml-vocab-llama-bpe.gguf.xz" > ggml-vocab-llama-bpe.gguf
    tar -xJf "$base/gguf-py.tar.xz"
    tar -xJf "$base"/llama.cpp-*.tar.xz
    mkdir -p llama.cpp/tools/rbee-ref && cp "$base"/llama-ref/* llama.cpp/tools/rbee-ref/
    echo 'add_subdirectory(rbee-ref)' >> llama.cpp/tools/CMakeLists.txt
    log "node $(./node20 --version); $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader); $(nvcc --version | tail -2 | head -1); cores $(nproc)"
    cd "$work/llama.cpp"
    # An `if`, not `[[ … ]] || … &`: a backgrounded list runs in a subshell that keeps this script's stdout open until
    # the build ends, so a caller reading that output (`| tail`) would wait for the whole build.
    if [[ "$no_llama" != 1 ]]; then
      setsid nohup bash -c "cmake -B build -G Ninja -DGGML_CUDA=ON -DGGML_CUDA_GRAPHS=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
          -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
          -DLLAMA_USE_PREBUILT_UI=OFF && cmake --build build -j 16 --target llama-bench llama-server rbee-llama-ref && touch build/ok" \
        > "$work/llama-build.log" 2>&1 < /dev/null &
    fi
    cd "$work"
    setsid nohup bash -c "PYTHONPATH=$work/gguf-py python3 synthetic-gguf.py --vocab ggml-vocab-llama-bpe.gguf --out synthetic-8b.gguf.tmp \
      && mv synthetic-8b.gguf.tmp synthetic-8b.gguf" > "$work/synthetic.log" 2>&1 < /dev/null &
    log "llama.cpp build and the synthetic 8B model started"
    ;;
  part)
    cp "${2:?slice dir}"/g* "$work/model/"
    log "slices: $(ls "$work/model" | tr '\n' ' '); build: $(tail -c 200 "$work/llama-build.log" | tr '\r\n' '  ' | tail -c 100)"
    ;;
  bench)
    # What is done so far goes back (pack) even if the call runs out of time later.
    results_into "${2:?out}"
    runs=5
    [[ "${3:-}" == "--runs" ]] && runs="${4:?runs}"
    wait_ready
    cp llama-build.log "$out/" 2>/dev/null
    join_gemma
    machine_info
    pack
    gemms="${RBEE_I11_GEMMS:-tf32}"
    # 1. The 8B shape first (the figure the default hangs on), once per GEMM prefill type; should
    #    the GEMM prefill fail, again with every prompt on the batch-8 decode graph, so the decode
    #    comparison still happens.
    # RBEE_I11_PDL_AB=1: the 8B shape once more with the decode graph's kernels as programmatic
    # dependent launches (RBEE_CANDLE_PDL=on), for their share.
    if [[ "${RBEE_I11_PDL_AB:-0}" == 1 ]]; then
      speed synthetic-8b "-pdl-on" RBEE_CANDLE_PDL=on RBEE_CANDLE_PREFILL_GEMM="${gemms%% *}"
    fi
    for g in $gemms; do
      if ! speed synthetic-8b "-$g" RBEE_CANDLE_PREFILL_GEMM="$g"; then
        mv "$out/bench-synthetic-8b-$g.log" "$out/bench-synthetic-8b-$g-failed.log"
        speed synthetic-8b "-$g-batch8" RBEE_CANDLE_PREFILL=graph
      fi
    done
    # 2. Greedy agreement with llama.cpp's CUDA build, Gemma 3 270M: graph path (GEMM prefill for
    #    prompts over 8 tokens) and tensor path; then its speed.
    if [[ -f gemma-3-270m-q4_k_m.gguf && "${SKIP_GEMMA:-0}" != 1 ]]; then
      timeout 200 ./node20 llama-agreement.mjs native/index.js gemma-3-270m-q4_k_m.gguf "$bin/rbee-llama-ref" "$out/agreement-gemma.json" \
        --tokens 32 --forwards graph,tensor 2>&1 | tee "$out/agreement-gemma.log"
      pack
      speed gemma-3-270m-q4_k_m ""
    fi
    # 3. Graph path vs tensor path on the 8B shape (decode, prompt of 16 and 1000 tokens, the
    #    prefill check: GEMM prefill vs one token a replay).
    for g in $gemms; do
      RBEE_CANDLE_PREFILL_GEMM="$g" timeout 200 ./node20 graph-decode.mjs native/index.js synthetic-8b.gguf "$out/graph-decode-8b-$g.json" \
        --tokens 64 --runs 2 --ctx 2048 > "$out/graph-decode-8b-$g.log" 2>&1
      cat "$out/graph-decode-8b-$g.log"
      pack
    done
    ls -la "$out" "$final"
    ;;
  quick)
    # A short call for a machine that may not come twice: no Gemma needed. Bad input (tiny synthetic
    # models stand in for Gemma), where the VRAM goes, and the 8B speed with and without the
    # programmatic dependent launches.
    results_into "${2:?out}"
    runs="${3:-5}"
    wait_ready
    machine_info
    pack
    PYTHONPATH="$work/gguf-py" python3 synthetic-gguf.py --vocab ggml-vocab-llama-bpe.gguf --out tiny-q4.gguf --layers 2 --embd 256 --ffn 512 \
      --heads 4 --kv-heads 2 > "$out/bad-input.log" 2>&1
    PYTHONPATH="$work/gguf-py" python3 synthetic-gguf.py --vocab ggml-vocab-llama-bpe.gguf --out tiny-f16.gguf --layers 2 --embd 256 --ffn 512 \
      --heads 4 --kv-heads 2 --ffn-type f16 >> "$out/bad-input.log" 2>&1
    timeout 120 ./node20 bad-input.mjs native/index.js "$out/bad-input.json" --big synthetic-8b.gguf --small tiny-q4.gguf \
      --f16 tiny-f16.gguf 2>&1 | tee -a "$out/bad-input.log"
    pack
    server=(--llama-server "$bin")
    [[ "$no_llama" == 1 ]] && server=()
    RBEE_CANDLE_VRAM_TRACE=1 RBEE_CANDLE_PREFILL_GEMM=bf16 timeout 150 ./node20 ttft-vram.mjs native/index.js synthetic-8b.gguf \
      "$out/ttft-vram-8b-trace.json" "${server[@]}" --ctx 8192 --prompt 512 --rounds 5 2>&1 | tee "$out/ttft-vram-8b-trace.log"
    pack
    if [[ "$no_llama" == 1 ]]; then
      # No llama-bench to pace against: the graph path's own decode (graph-decode.mjs), alternating.
      for p in on off on off; do
        RBEE_CANDLE_PDL=$p timeout 90 ./node20 graph-decode.mjs native/index.js synthetic-8b.gguf "$out/graph-decode-8b-pdl-$p.json" \
          --tokens 128 --runs 3 --ctx 2048 2>&1 | tee -a "$out/graph-decode-8b-pdl-$p.log" | grep "graph short\|graph long\|identical"
        pack
      done
    else
      speed synthetic-8b "-pdl-on" RBEE_CANDLE_PDL=on RBEE_CANDLE_PREFILL_GEMM=bf16
      speed synthetic-8b "-pdl-off" RBEE_CANDLE_PDL=off RBEE_CANDLE_PREFILL_GEMM=bf16
    fi
    ls -la "$out" "$final"
    ;;
  tp)
    # Issue 14 where only one GPU is lent: two ranks on it check the split arithmetic, the
    # exchange kernels and a killed shard (speed needs one GPU a rank: then --devices names them).
    results_into "${2:?out}"
    wait_ready
    machine_info
    gpus="$(nvidia-smi -L | wc -l)"
    # Two ranks on one GPU take turns on it (no two processes' kernels run at once): slow, so 4
    # streams there, for batching's agreement; one GPU a rank: the issue's aggregate at 8 streams.
    devices="cuda:0,cuda:0"
    streams=4
    [[ "$gpus" -ge 2 ]] && devices="cuda:0,cuda:1" && streams=8
    runs=3
    tokens=64
    [[ "$gpus" -ge 2 ]] || runs=1 tokens=32
    # Gemma first: a real model's text, the agreement that matters.
    join_gemma
    if [[ -s gemma-3-270m-q4_k_m.gguf ]]; then
      timeout 200 ./node20 tp-check.mjs native/index.js gemma-3-270m-q4_k_m.gguf "$out/tp-gemma.json" --devices "$devices" --tokens "$tokens" \
        --runs "$runs" --parallel "$streams" --timeout-ms 5000 2>&1 | tee "$out/tp-gemma.log"
      pack
    fi
    timeout 300 ./node20 tp-check.mjs native/index.js synthetic-8b.gguf "$out/tp-8b.json" --devices "$devices" --tokens "$tokens" --runs "$runs" \
      --parallel "$streams" --timeout-ms 5000 2>&1 | tee "$out/tp-8b.log"
    pack
    ls -la "$out" "$final"
    ;;
  diag)
    results_into "${2:?out}"
    wait_ready
    join_gemma
    RBEE_CANDLE_VRAM_TRACE=1 RBEE_CANDLE_PREFILL_GEMM=bf16 timeout 150 ./node20 ttft-vram.mjs native/index.js synthetic-8b.gguf \
      "$out/ttft-vram-8b-trace.json" --llama-server "$bin" --ctx 8192 --prompt 512 --rounds 3 2>&1 | tee "$out/ttft-vram-8b-trace.log"
    pack
    if [[ -f gemma-3-270m-q4_k_m.gguf ]]; then
      PYTHONPATH="$work/gguf-py" python3 synthetic-gguf.py --vocab ggml-vocab-llama-bpe.gguf --out tiny-f16.gguf --layers 2 --embd 256 --ffn 512 \
        --heads 4 --kv-heads 2 --ffn-type f16 > "$out/bad-input.log" 2>&1
      timeout 120 ./node20 bad-input.mjs native/index.js "$out/bad-input.json" --big synthetic-8b.gguf --small gemma-3-270m-q4_k_m.gguf \
        --f16 tiny-f16.gguf 2>&1 | tee -a "$out/bad-input.log"
      pack
      timeout 300 ./node20 llama-agreement.mjs native/index.js gemma-3-270m-q4_k_m.gguf "$bin/rbee-llama-ref" "$out/agreement-diag.json" \
        --tokens 32 --forwards graph,graph-serial,tensor,cpu --refs batch,serial,nofa,cpu 2>&1 | tee "$out/agreement-diag.log"
      pack
    fi
    ls -la "$out" "$final"
    ;;
  serve)
    # Into $work/res beside bench's results (one results.tar.xz for both).
    results_into "${2:?out}"
    [[ -f synthetic-8b.gguf && -x "$bin/llama-server" ]] || { log "run setup and bench first (no model or llama-server)"; exit 1; }
    for g in ${RBEE_I11_GEMMS:-tf32}; do
      RBEE_CANDLE_PREFILL_GEMM="$g" timeout 150 ./node20 ttft-vram.mjs native/index.js synthetic-8b.gguf "$out/ttft-vram-8b-$g.json" \
        --llama-server "$bin" --ctx 8192 --prompt 512 --rounds 9 2>&1 | tee "$out/ttft-vram-8b-$g.log"
      pack
    done
    timeout 400 ./node20 batching.mjs native/index.js synthetic-8b.gguf "$out/batching-8b.json" --llama-server "$bin" \
      --check-tokens 32 --tokens 128 --streams 8,32 2>&1 | tee "$out/batching-8b.log"
    pack
    ls -la "$out" "$final"
    ;;
  *)
    echo "unknown stage $stage" >&2
    exit 2
    ;;
esac
