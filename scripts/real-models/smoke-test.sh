#!/usr/bin/env bash
# End-to-end check of the real local backends: builds or reuses llama-server, fetches or
# reuses the models, then
#   - chat: serves SmolLM2, waits for /health, warms up, runs a chat completion and a
#     streamed one (with usage) and checks the stream's framing;
#   - embeddings: serves the converted MiniLM, checks 384-d unit vectors and that
#     similar sentences are closer than unrelated ones, and compares tokens and vectors
#     with a numpy forward pass of the original weights (minilm_reference.py).
# Prints what it observed; exits non-zero on the first failed check.
#
# Environment: as build-llama-server.sh and fetch-models.sh, plus
#   LLAMA_SERVER   use this binary instead of building one
#   SMOKE_THREADS  threads per server (default: 2)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
threads="${SMOKE_THREADS:-2}"
python="${PYTHON:-python3}"

log() { printf '[smoke-test] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

server="${LLAMA_SERVER:-$("$here/build-llama-server.sh" | tail -n 1)}"
mapfile -t models < <("$here/fetch-models.sh" | tail -n 2)
chat_model="${models[0]}"
embed_model="${models[1]}"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME MODEL [EXTRA ARGS...]; sets $port and $base
start() {
    local name="$1" model="$2"
    shift 2
    port="$(free_port)"
    base="http://127.0.0.1:$port"
    "$server" -m "$model" --alias "$name" --host 127.0.0.1 --port "$port" \
        -c 4096 -np 2 -t "$threads" --no-webui "$@" >"$work/$name.log" 2>&1 &
    pids+=("$!")
    local pid="$!" started
    started=$(date +%s%N)
    for _ in $(seq 1 600); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health" || true)" == 200 ]]; then
            log "$name ready on port $port after $(( ($(date +%s%N) - started) / 1000000 )) ms"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$work/$name.log" >&2; fail "$name exited"; }
        sleep 0.1
    done
    tail -n 20 "$work/$name.log" >&2
    fail "$name not healthy within 60 s"
}

post() { curl -sS --fail-with-body -H 'Content-Type: application/json' "$base$1" -d "$2"; }

# ---- chat -----------------------------------------------------------------------------
start smollm2 "$chat_model"
post /v1/chat/completions '{"model":"x","messages":[{"role":"user","content":"Hi"}],"max_tokens":8}' >/dev/null
log "warm-up done"

prompt='What is the capital of France? Answer in one sentence.'
post /v1/chat/completions "{\"model\":\"anything\",\"messages\":[{\"role\":\"user\",\"content\":\"$prompt\"}],\"max_tokens\":64,\"temperature\":0}" >"$work/chat.json"
post /v1/chat/completions "{\"model\":\"anything\",\"messages\":[{\"role\":\"user\",\"content\":\"$prompt\"}],\"max_tokens\":64,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$work/stream.txt"

"$python" - "$work/chat.json" "$work/stream.txt" <<'PY'
import json, sys

chat = json.load(open(sys.argv[1]))
choice = chat["choices"][0]
print(f"chat: model={chat['model']!r} finish_reason={choice['finish_reason']!r} usage={chat['usage']}")
print(f"chat reply: {choice['message']['content']!r}")
assert chat["model"] == "smollm2", "the model field should echo the alias"
assert choice["message"]["content"].strip(), "empty reply"

raw = open(sys.argv[2], encoding="utf-8").read()
assert "\r" not in raw, "expected LF framing"
events = [block for block in raw.split("\n\n") if block.strip()]
assert all(e.startswith("data: ") and "\n" not in e for e in events), "one data line per event"
assert events[-1] == "data: [DONE]", "stream must end with [DONE]"
chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
first, finish, usage = chunks[0], chunks[-2], chunks[-1]
print(f"stream: {len(chunks)} chunks then [DONE]")
print(f"  first  : {json.dumps(first['choices'][0])}")
print(f"  finish : choices={json.dumps(finish['choices'])} extra keys={sorted(set(finish) - {'choices', 'id', 'object', 'created', 'model', 'system_fingerprint'})}")
print(f"  usage  : choices={usage['choices']} usage={usage['usage']}")
assert first["choices"][0]["delta"] == {"role": "assistant", "content": None}, "role chunk has null content"
assert finish["choices"][0]["finish_reason"] in ("stop", "length") and finish["choices"][0]["delta"] == {}
assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
middle = chunks[1:-2]
assert all(c["choices"][0]["finish_reason"] is None for c in middle)
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in middle)
print(f"stream reply: {text!r}")
assert text == chat["choices"][0]["message"]["content"], "temperature 0: stream equals non-stream"
PY

# ---- embeddings -----------------------------------------------------------------------
start minilm "$embed_model" --embeddings
post /v1/embeddings '{"model":"x","input":"warm up"}' >/dev/null
post /v1/embeddings '{"model":"x","input":["the cat sat on the mat","a cat was sitting on a mat","quarterly revenue grew"]}' >"$work/embed.json"
"$python" - "$work/embed.json" <<'PY'
import json, math, sys

data = json.load(open(sys.argv[1]))["data"]
vecs = [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]
assert [len(v) for v in vecs] == [384] * 3, [len(v) for v in vecs]
norms = [math.sqrt(sum(x * x for x in v)) for v in vecs]
assert all(abs(n - 1) < 1e-3 for n in norms), norms
cos = lambda a, b: sum(x * y for x, y in zip(a, b))
near, far = cos(vecs[0], vecs[1]), cos(vecs[0], vecs[2])
print(f"embeddings: dim=384 norms={[round(n, 6) for n in norms]}")
print(f"cosine(cat sat on mat, cat was sitting on mat) = {near:.4f}")
print(f"cosine(cat sat on mat, quarterly revenue grew) = {far:.4f}")
assert near > far + 0.3, "similar sentences should be much closer"
PY
cache="${INFERENCEKEY_CACHE:-$HOME/.cache/inferencekey}"
"$cache/tools-venv/bin/python" "$here/minilm_reference.py" "$cache/models/all-MiniLM-L6-v2" "$base" ||
    fail "served embeddings differ from the numpy reference"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' "$base/v1/chat/completions" -d '{"messages":[{"role":"user","content":"hi"}]}')
log "chat on the embeddings server answers $code"
log "all checks passed"
