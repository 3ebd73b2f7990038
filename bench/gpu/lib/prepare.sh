# Shared by the `prepare` stages of bench/gpu/*-on-gpu.sh and graph-decode.sh, which run HERE (not on
# the GPU machine): what every candle run on a bare GPU machine needs, packed for the device tool's
# 64 MiB uploads. Source it; each function writes into the folder it is given.

gpu_cache="${RBEE_CACHE:-$HOME/.cache/rbee}"

# Node 20 (packed once by scripts/device-bundle.sh), the CUDA .node (scripts/build-native-cuda.sh),
# the loader napi generated beside it and its build record.
gpu_pack_candle() {
  local root="$1" into="$2"
  local node_xz="$gpu_cache/device/node-v20.20.2-linux-x64.xz"
  [[ -s "$node_xz" ]] || { echo "no $node_xz: run scripts/device-bundle.sh once (it packs Node)" >&2; return 1; }
  [[ -f "$root/native/cuda/rbee-native.linux-x64-gnu.node" ]] || { echo "no CUDA .node: run scripts/build-native-cuda.sh" >&2; return 1; }
  cp "$node_xz" "$into/node.xz"
  nice xz -6 -T2 -c "$root/native/cuda/rbee-native.linux-x64-gnu.node" > "$into/rbee-native.node.xz"
  cp "$root/native/cuda/index.js" "$into/loader.js"
  cp "$root/native/cuda/BUILD-INFO" "$into/BUILD-INFO"
}

# gguf-py and the Llama 3 vocabulary GGUF (what bench/synthetic-gguf.py writes the 8B shape with),
# from the llama.cpp source node-llama-cpp ships.
gpu_pack_llama_assets() {
  local root="$1" into="$2" src
  src="$(mktemp -d)"
  git clone -q --no-checkout "$root/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$src/llama.cpp"
  git -C "$src/llama.cpp" show HEAD:models/ggml-vocab-llama-bpe.gguf | xz -6 > "$into/ggml-vocab-llama-bpe.gguf.xz"
  git -C "$src/llama.cpp" archive --format=tar HEAD gguf-py | xz -6 > "$into/gguf-py.tar.xz"
  rm -rf "$src"
}

# Gemma 3 270M in slices: <base>/g-first fills <base> up to 58 MiB, the rest go to <dir>/g0, g1, …
# (55 MiB each, one upload each); <base>/gemma.sha256 checks the reassembly there.
gpu_slice_gemma() {
  local dir="$1" base="$2"
  local model="${RBEE_GEMMA:-$gpu_cache/models/default/gemma-3-270m-q4_k_m.gguf}" used first f
  sha256sum "$model" | cut -d' ' -f1 > "$base/gemma.sha256"
  used=$(du -cb "$base" | tail -1 | cut -f1)
  first=$(( 58 * 1048576 - used ))
  (( first > 0 )) || first=0
  head -c "$first" "$model" > "$base/g-first"
  mkdir -p "$dir/split"
  # 55 MiB: a slice plus the checkout (~4.5 MiB) stays under the device tool's 64 MiB a call.
  tail -c +$(( first + 1 )) "$model" | split -b 57671680 -d -a 1 - "$dir/split/g"
  for f in "$dir"/split/g*; do mkdir -p "$dir/$(basename "$f")" && mv "$f" "$dir/$(basename "$f")/"; done
  rmdir "$dir/split"
}
