#!/usr/bin/env python3
"""Check a converted MiniLM served by llama-server against a plain numpy forward pass of
the original safetensors weights (BERT, mean pooling, L2 normalisation).

Usage: minilm_reference.py MODEL_DIR BASE_URL [TEXT...]

It compares the token ids from the server's /tokenize with an independent WordPiece
tokenizer, and the server's /v1/embeddings with the reference vectors (cosine). Needs
numpy and safetensors; exits non-zero when a check fails.
"""

from __future__ import annotations

import json
import math
import sys
import unicodedata
import urllib.request
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

DEFAULT_TEXTS = [
    "the cat sat on the mat",
    "a cat was sitting on a mat",
    "quarterly revenue grew",
    "Héllo, WORLD! Tokenizers split punctuation; unaffable words get ##pieces.",
]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


class WordPiece:
    """BERT's uncased tokenizer: clean, lowercase, strip accents, split on whitespace and
    punctuation, then greedy longest-match subwords marked with `##`."""

    def __init__(self, vocab: list[str]):
        self.ids = {tok: i for i, tok in enumerate(vocab)}

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def _words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, cur = [], ""
        for ch in text:
            if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf"):
                words.append(cur)
                cur = ""
            elif self._is_punct(ch) or 0x4E00 <= ord(ch) <= 0x9FFF:
                words += [cur, ch]
                cur = ""
            else:
                cur += ch
        words.append(cur)
        return [w for w in words if w]

    def encode(self, text: str) -> list[int]:
        out = [self.ids["[CLS]"]]
        for word in self._words(text):
            pieces, start = [], 0
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.ids:
                        pieces.append(self.ids[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.ids["[UNK]"]]
                    break
                start = end
            out += pieces
        return [*out, self.ids["[SEP]"]]


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def embed(weights: dict[str, np.ndarray], cfg: dict, ids: list[int]) -> np.ndarray:
    w = weights
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    erf = np.vectorize(math.erf)

    def split(h: np.ndarray) -> np.ndarray:
        return h.reshape(n, heads, -1).transpose(1, 0, 2)

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(name: str, h: np.ndarray, p: str = p) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (split(lin(f"attention.self.{m}", x)) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        ctx = (scores @ v).transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(
            x + lin("attention.output.dense", ctx),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        h = lin("intermediate.dense", x)
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(
            x + lin("output.dense", h),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, base = Path(argv[0]), argv[1].rstrip("/")
    texts = argv[2:] or DEFAULT_TEXTS
    cfg = json.loads((model_dir / "config.json").read_text())
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    weights = {
        k: v.astype(np.float64)
        for k, v in load_file(model_dir / "model.safetensors").items()
        if v.dtype.kind == "f"
    }
    tok = WordPiece(vocab)

    served = post(f"{base}/v1/embeddings", {"input": texts})["data"]
    served.sort(key=lambda d: d["index"])
    ok = True
    for text, item in zip(texts, served, strict=True):
        ids = tok.encode(text)
        server_ids = post(f"{base}/tokenize", {"content": text, "add_special": True})["tokens"]
        ref = embed(weights, cfg, ids)
        got = np.asarray(item["embedding"], dtype=np.float64)
        cos = float(ref @ got / np.linalg.norm(got))
        same_ids = ids == server_ids
        ok &= same_ids and cos > 0.999
        print(
            f"{'ok ' if same_ids and cos > 0.999 else 'BAD'} cosine={cos:.6f} "
            f"tokens={'same' if same_ids else f'{ids} vs {server_ids}'} {text!r}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
