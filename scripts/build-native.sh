#!/usr/bin/env bash
# Builds rbee's candle engine (native/, Rust + napi-rs) into native/rbee-native.<platform>.node,
# regenerating the committed loader (native/index.js, native/index.d.ts).
#
#   scripts/build-native.sh                  # release build, CPU (the default feature)
#   scripts/build-native.sh --features cuda  # extra arguments go to `napi build`
#   scripts/build-native.sh test             # cargo test (engine unit tests) on the same artifacts
#   scripts/build-native.sh clippy           # clippy on every target, warnings as errors (npm run lint:rust)
#
# Environment:
#   CARGO_BUILD_JOBS           parallel rustc jobs (default: the CPU count; keep it at 2 on 2 cores)
#   RBEE_NATIVE_TARGET_CPU     -C target-cpu for x86_64 (default: native; x86-64-v3 for a portable binary)
#   CARGO_TARGET_DIR           default native/target (git-ignored)
#
# CUDA: scripts/build-native-cuda.sh (an H100 build with a CUDA 13.0 toolkit from PyPI wheels, in
# its own target dir, into native/cuda/); with a real CUDA toolkit on the PATH,
#   CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 scripts/build-native.sh --features cuda
# also works, but replaces the CPU .node.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/native"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/native/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
if [[ -n "${RBEE_NATIVE_TARGET_CPU:-}" ]]; then
  export RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=${RBEE_NATIVE_TARGET_CPU}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "build-native: cargo is not installed (https://rustup.rs); the candle engine needs Rust 1.88 or newer" >&2
  exit 1
fi

host="$(rustc -vV | sed -n 's/^host: //p')"

if [[ "${1:-}" == "test" ]]; then
  shift
  # Same target triple as the napi build, so the two share compiled dependencies.
  exec cargo test --release --target "$host" "$@"
fi
if [[ "${1:-}" == "clippy" ]]; then
  shift
  # Same triple and profile as the builds, so their build scripts and proc-macros are reused.
  exec cargo clippy --release --target "$host" --all-targets "$@" -- -D warnings
fi

napi="$root/node_modules/.bin/napi"
if [[ ! -x "$napi" ]]; then
  echo "build-native: @napi-rs/cli is not installed; run npm ci first" >&2
  exit 1
fi

started=$(date +%s)
"$napi" build --release --platform --esm --target "$host" "$@"
echo "build-native: built $(ls "$root"/native/*.node | xargs -n1 basename) in $(( $(date +%s) - started ))s"
