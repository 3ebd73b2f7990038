#!/usr/bin/env bash
# A CUDA 13.0 toolkit from PyPI wheels, for building the candle engine's `cuda` feature on a machine
# with no GPU and no CUDA install (scripts/build-native-cuda.sh sources this file).
#
#   source scripts/cuda-toolchain.sh          # installs once, then exports PATH, CUDA_ROOT, ...
#   bash scripts/cuda-toolchain.sh            # same, and prints the exports (eval "$(...)" works)
#
# Why wheels: NVIDIA's own downloads are not reachable from every build machine, PyPI is. Since
# CUDA 13 the nvidia-* wheels all unpack into one nvidia/cu13/ tree laid out like a toolkit (bin/nvcc,
# nvvm/, include/ with crt/ and cccl/, lib/), and nvcc's nvcc.profile finds its headers from there
# with no help. The versions are pinned to one CUDA release (the pins of PyPI's `cuda-toolkit`
# metapackage at that release) so that nvcc, its headers and the libraries agree; the GPU machine
# only needs the same major version (13.x sonames, libcuda from a 13.0+ driver).
#
# What the wheels lack, made here:
#   - lib/lib*.so: the unversioned names the linker looks for (-lcublas) point at the .so.13 files;
#   - lib/stubs/libcuda.so: cudarc (candle-core turns on its `dynamic-linking`) links -lcuda, the
#     driver, which no wheel ships. The stub is a do-nothing library with soname libcuda.so.1 and
#     every cu* entry point declared by this toolkit's cuda.h: it satisfies the link and records
#     DT_NEEDED libcuda.so.1; at run time the GPU machine's driver library is loaded instead
#     (nothing puts this folder on the run-time search path: no rpath, no LD_LIBRARY_PATH).
#
# Environment: RBEE_CUDA_VERSION (13.0, the only pin set so far), RBEE_CACHE (default ~/.cache/rbee),
# PYTHON (default python3).
rbee_cuda_toolchain() {
  local version="${RBEE_CUDA_VERSION:-13.0}"
  local pins
  case "$version" in
    13.0)
      # = the pins of PyPI's cuda-toolkit==13.0.2 metapackage: nvcc/crt/nvvm/nvrtc 13.0.88,
      # cudart 13.0.96, cccl 13.0.85, cuBLAS 13.1.0.3, cuRAND 10.4.0.35.
      pins="nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
            nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88
            nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35" ;;
    *) echo "cuda-toolchain: no pin set for CUDA $version (known: 13.0)" >&2; return 1 ;;
  esac
  pins="$(echo $pins)"   # one line, single spaces: it is also the cache stamp

  local cache="${RBEE_CACHE:-$HOME/.cache/rbee}/cuda-$version"
  local site="$cache/site"
  local root="$site/nvidia/cu${version%%.*}"
  local stamp="$cache/.complete"

  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$pins" ]]; then
    echo "cuda-toolchain: installing CUDA $version wheels into $cache" >&2
    rm -rf "$site" "$cache/toolkit" "$stamp"
    mkdir -p "$cache"
    # --no-deps: the pins are the whole set (the wheels' own dependencies would pull other
    # 13.x releases); --target: nothing lands in any Python environment.
    # shellcheck disable=SC2086
    "${PYTHON:-python3}" -m pip install --disable-pip-version-check --no-deps --no-compile \
      --target "$site" $pins >&2 || return 1
    [[ -x "$root/bin/nvcc" ]] || { echo "cuda-toolchain: no nvcc in $root/bin after the install" >&2; return 1; }

    # Unversioned names for the linker (-lcudart -lcublas -lcublasLt -lcurand -lnvrtc).
    local so base
    for so in "$root"/lib/lib*.so.*; do
      base="$(basename "$so")"
      case "$base" in *.alt.so*|libnvrtc-builtins*|libnvblas*) continue ;; esac
      ln -sfn "$base" "$root/lib/${base%%.so.*}.so"
    done
    ln -sfn lib "$root/lib64"   # the toolkit layout some tools derive from nvcc's path

    # The libcuda link stub (see the header).
    mkdir -p "$root/lib/stubs"
    local stub_src="$cache/libcuda-stub.c"
    {
      echo "/* Link-time stand-in for the CUDA driver (libcuda.so.1); never loaded at run time. */"
      echo '#include <cuda.h>' | ${CC:-cc} -E -P -I "$root/include" -x c - \
        | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' (' | sort -u \
        | sed 's/.*/void &(void) {}/'
    } > "$stub_src" || return 1
    grep -q 'cuInit' "$stub_src" || { echo "cuda-toolchain: could not list the driver API from cuda.h" >&2; return 1; }
    ${CC:-cc} -shared -fPIC -o "$root/lib/stubs/libcuda.so" -Wl,-soname,libcuda.so.1 "$stub_src" || return 1

    # Stable path to the toolkit root, whatever the wheels call it.
    ln -sfn "$root" "$cache/toolkit"
    echo "$pins" > "$stamp"
    echo "cuda-toolchain: ready ($(du -sh "$cache" | cut -f1)): $("$root/bin/nvcc" --version | sed -n 's/^Cuda compilation tools, //p')" >&2
  fi

  local toolkit="$cache/toolkit"
  export CUDA_ROOT="$toolkit" CUDA_PATH="$toolkit" CUDA_HOME="$toolkit" CUDA_TOOLKIT_ROOT_DIR="$toolkit"
  export NVCC="$toolkit/bin/nvcc"
  case ":$PATH:" in *":$toolkit/bin:"*) ;; *) export PATH="$toolkit/bin:$PATH" ;; esac
  # CUDARC_CUDA_VERSION=13000 for CUDA 13.0: which API version cudarc's bindings are built for.
  export CUDARC_CUDA_VERSION="${version%%.*}0${version#*.}0"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  rbee_cuda_toolchain
  for var in PATH CUDA_ROOT CUDA_PATH CUDA_HOME CUDA_TOOLKIT_ROOT_DIR NVCC CUDARC_CUDA_VERSION; do
    printf 'export %s=%q\n' "$var" "${!var}"
  done
else
  rbee_cuda_toolchain
fi
