#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the sources vendored in the llama-cpp-python
# source distribution, and cache the binary. Prints the binary's path on the last line.
#
# Environment:
#   INFERENCEKEY_CACHE          cache root (default: $HOME/.cache/inferencekey)
#   LLAMA_CPP_PYTHON_VERSION    sdist version that carries the sources (default: 0.3.36)
#   LLAMA_BUILD_JOBS            parallel compile jobs (default: 2)
#   LLAMA_KEEP_BUILD=1          keep the unpacked sources and the build tree
#   PYTHON                      interpreter whose pip downloads the sdist (default: python3)
set -euo pipefail

version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache="${INFERENCEKEY_CACHE:-$HOME/.cache/inferencekey}"
jobs="${LLAMA_BUILD_JOBS:-2}"
python="${PYTHON:-python3}"
dest="$cache/llama-server/$version"
bin="$dest/bin/llama-server"

log() { printf '[build-llama-server] %s\n' "$*" >&2; }

mkdir -p "$dest"
# Two callers racing (e.g. parallel test jobs) must not compile twice or see a half-copied binary.
exec 9>"$dest/.lock"
flock 9

if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
    log "reusing cached build"
    printf '%s\n' "$bin"
    exit 0
fi

if ! command -v cmake >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
        log "cmake is missing and installing it needs root (apt-get install cmake)"
        exit 1
    fi
    log "installing cmake with apt-get"
    apt_log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake; } >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        exit 1
    fi
    rm -f "$apt_log"
fi
for tool in c++ make tar flock; do
    command -v "$tool" >/dev/null 2>&1 || { log "missing required tool: $tool"; exit 1; }
done

work="$dest/work"
rm -rf "$work"
mkdir -p "$work"
cleanup() {
    if [[ "${LLAMA_KEEP_BUILD:-0}" != 1 ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT

start=$(date +%s)
log "downloading the llama-cpp-python $version source distribution"
# `--no-binary` names only this package: with `:all:` pip would also compile the build
# backend's own dependencies (cmake, ninja) from source just to read the metadata.
"$python" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$work/dl" >&2
sdist=$(find "$work/dl" -maxdepth 1 -name 'llama_cpp_python-*.tar.gz' | head -n 1)
[[ -n "$sdist" ]] || { log "the source distribution was not downloaded"; exit 1; }

log "unpacking $(basename "$sdist")"
tar -xzf "$sdist" -C "$work" --wildcards '*/vendor/llama.cpp/*'
src=$(find "$work" -maxdepth 3 -type d -path '*/vendor/llama.cpp' | head -n 1)
[[ -n "$src" && -f "$src/CMakeLists.txt" ]] || { log "vendor/llama.cpp not found in the sdist"; exit 1; }

flags=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_SERVER=ON
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_OPENSSL=OFF
    -DGGML_NATIVE=OFF
)
# Older trees download models through libcurl; newer ones dropped the option and only
# warn about it, so pass it only where it is still a real option.
if grep -q 'option(LLAMA_CURL' "$src/CMakeLists.txt"; then
    flags+=(-DLLAMA_CURL=OFF)
fi

log "configuring (${flags[*]})"
nice -n 19 cmake -S "$src" -B "$work/build" "${flags[@]}" >"$work/configure.log" 2>&1 || {
    tail -n 40 "$work/configure.log" >&2
    exit 1
}
log "compiling llama-server with $jobs jobs (several minutes on 2 cores)"
nice -n 19 cmake --build "$work/build" --target llama-server -j "$jobs" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    exit 1
}

built=$(find "$work/build" -type f -name llama-server -perm -u+x | head -n 1)
[[ -n "$built" ]] || { log "the build produced no llama-server binary"; exit 1; }
mkdir -p "$dest/bin"
cp "$built" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
"$bin" --version >&2 2>&1 || true
log "built in $(( $(date +%s) - start )) s"
printf '%s\n' "$bin"
