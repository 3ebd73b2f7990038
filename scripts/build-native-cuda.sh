#!/usr/bin/env bash
# Builds the candle engine with CUDA, for an H100 (compute capability 9.0) with CUDA 13 libraries,
# on a machine that has neither a GPU nor CUDA: the result is native/cuda/rbee-native.linux-x64-gnu.node.
#
#   scripts/build-native-cuda.sh           # from this working tree
#   scripts/build-native-cuda.sh --head    # from a clean checkout of HEAD (a git worktree in
#                                          # $RBEE_CUDA_WORKTREE, default /tmp/rbee-cuda) while native/src is mid-edit
#   scripts/device-bundle.sh               # then: what a bare GPU machine needs, in .device/
#   scripts/build-native-cuda.sh clippy    # clippy on every target with the cuda feature, warnings as errors
#                                          # (npm run lint:rust:cuda; CI runs it: the CUDA path has no GPU in CI,
#                                          # so this is what keeps it compiling between GPU sessions)
#
# Why it looks like this:
#   - The toolkit comes from PyPI wheels (scripts/cuda-toolchain.sh, cached in ~/.cache/rbee/cuda-13.0).
#   - Its own cargo target dir (~/.cache/rbee/native-cuda-target) and output folder (native/cuda/,
#     git-ignored): the CPU build in native/target and native/rbee-native.*.node are never touched,
#     and the CUDA dependencies (candle-kernels' PTX and its statically compiled MMQ/MoE kernels,
#     the slow part) stay compiled between runs, so a rebuild recompiles only rbee-native.
#   - CUDA_COMPUTE_CAP=90: candle-kernels compiles for sm_90a (PTX JIT-compiled by the driver, and
#     SASS for the static kernels); nvidia-smi, which it would ask otherwise, is not here.
#   - CUDARC_CUDA_VERSION=13000: cudarc's bindings for the CUDA 13.0 API (the target's driver).
#   - target-cpu x86-64-v3 (AVX2/FMA/F16C), not native/.cargo/config.toml's `native`: the binary
#     runs on the GPU machine's CPU, not this one (RBEE_NATIVE_TARGET_CPU overrides it).
#   - The committed loader (native/index.js, index.d.ts) is left alone; napi writes the loader and
#     types of this build next to the .node (native/cuda/index.js, index.d.ts), so the bundle carries
#     a loader generated from the same source as the binary. The committed loader also loads it:
#     NAPI_RS_NATIVE_LIBRARY_PATH=<this .node>.
#   - At run time the .node needs libcuda.so.1 (the driver), libcudart.so.13, libcublas.so.13 (which
#     loads libcublasLt.so.13) and libcurand.so.10 from the GPU machine's CUDA install (nvrtc is
#     linked too but dropped as unused: --as-needed), and glibc 2.34+ (GLIBC_2.34 is the newest
#     symbol version it uses); the script prints what it needs (DT_NEEDED), also in native/cuda/BUILD-INFO.
#
# Environment: CARGO_BUILD_JOBS (default 2), CUDA_COMPUTE_CAP (default 90), RBEE_CACHE (~/.cache/rbee),
# RBEE_CUDA_TARGET_DIR, RBEE_NATIVE_TARGET_CPU, RBEE_CUDA_WORKTREE; extra arguments go to `napi build`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${RBEE_CACHE:-$HOME/.cache/rbee}"

src="$root"
clippy=0
if [[ "${1:-}" == "clippy" ]]; then
  shift
  clippy=1
fi
if [[ "${1:-}" == "--head" ]]; then
  shift
  src="${RBEE_CUDA_WORKTREE:-/tmp/rbee-cuda}"
  head="$(git -C "$root" rev-parse HEAD)"
  if [[ -e "$src/.git" ]]; then
    git -C "$src" checkout --quiet --detach "$head"
  else
    git -C "$root" worktree add --detach "$src" "$head"
  fi
  # The worktree has no node_modules; scripts/device-bundle.sh compiles its TypeScript with ours.
  [[ -e "$src/node_modules" ]] || ln -s "$root/node_modules" "$src/node_modules"
  echo "build-native-cuda: building $(git -C "$src" log --oneline -1) from $src" >&2
fi

# shellcheck source=scripts/cuda-toolchain.sh
source "$root/scripts/cuda-toolchain.sh"

if ! command -v cargo >/dev/null 2>&1; then
  echo "build-native-cuda: cargo is not installed (https://rustup.rs); the candle engine needs Rust 1.88 or newer" >&2
  exit 1
fi
napi="$root/node_modules/.bin/napi"
if [[ "$clippy" == 0 && ! -x "$napi" ]]; then
  echo "build-native-cuda: @napi-rs/cli is not installed; run npm ci first" >&2
  exit 1
fi

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${RBEE_CUDA_TARGET_DIR:-$cache/native-cuda-target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$CARGO_BUILD_JOBS}"   # parallel nvcc in candle-kernels' build script
export RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=${RBEE_NATIVE_TARGET_CPU:-x86-64-v3}"
host="$(rustc -vV | sed -n 's/^host: //p')"
if [[ "$clippy" == 1 ]]; then
  # The same target dir and flags as the build: the two share compiled dependencies (candle-kernels'
  # CUDA kernels, the slow part, are compiled once by its build script for either).
  cd "$src/native"
  exec nice -n 10 cargo clippy --release --target "$host" --features cuda --all-targets "$@" -- -D warnings
fi
out="$root/native/cuda"
mkdir -p "$out"

started=$(date +%s)
nice -n 10 "$napi" build --cwd "$src/native" --release --platform --esm --target "$host" \
  --features cuda --output-dir "$out" --js index.js --dts index.d.ts "$@"

node_file="$(ls "$out"/rbee-native.*.node)"
# What this .node was built from: scripts/device-bundle.sh packs the JS of the same tree.
{
  echo "source=$src"
  echo "commit=$(git -C "$src" rev-parse HEAD)$(git -C "$src" diff --quiet HEAD -- native || echo '+uncommitted')"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$(( $(date +%s) - started ))"
  echo "cuda=$(nvcc --version | sed -n 's/^Cuda compilation tools, //p') compute_cap=$CUDA_COMPUTE_CAP cudarc=$CUDARC_CUDA_VERSION rustflags=${RUSTFLAGS# }"
  echo "needed=$(readelf -d "$node_file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
} > "$out/BUILD-INFO"
echo "build-native-cuda: built $node_file ($(du -h "$node_file" | cut -f1)) in $(( $(date +%s) - started ))s" >&2
echo "build-native-cuda: shared libraries it needs at run time:" >&2
readelf -d "$node_file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/  \1/p' >&2
