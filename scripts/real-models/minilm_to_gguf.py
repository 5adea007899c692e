#!/usr/bin/env python3
"""Convert a sentence-transformers BERT folder (all-MiniLM-L6-v2) to a GGUF file that
llama-server can serve with `--embeddings`.

Needs only `gguf`, `safetensors` and `numpy`: no torch, no transformers.

Usage: minilm_to_gguf.py MODEL_DIR OUT.gguf [--outtype f16|f32] [--name NAME]

MODEL_DIR holds config.json, model.safetensors, vocab.txt (or tokenizer.json) and,
optionally, 1_Pooling/config.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import gguf
import numpy as np
from safetensors import safe_open

ARCH = "bert"

# Tensors outside the encoder blocks: source name -> GGUF name.
GLOBAL_TENSORS = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}

# Per-block tensors: suffix after `encoder.layer.N.` -> GGUF suffix after `blk.N.`.
BLOCK_TENSORS = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}

F32_ONLY = {"token_types.weight"}

# Only used by masked-LM / next-sentence heads or as bookkeeping; embeddings never read them.
SKIPPED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\..*)$")
BLOCK = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")

POOLING_MODES = {
    "pooling_mode_mean_tokens": gguf.PoolingType.MEAN,
    "pooling_mode_cls_token": gguf.PoolingType.CLS,
}


def gguf_name(src: str) -> str | None:
    """Map a checkpoint tensor name to the name llama.cpp's BERT graph looks up."""
    name = src.removeprefix("bert.")
    # Some old checkpoints still use TF-style LayerNorm parameter names.
    name = re.sub(r"\.gamma$", ".weight", name)
    name = re.sub(r"\.beta$", ".bias", name)
    if SKIPPED.match(name):
        return None
    if name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[name]
    m = BLOCK.match(name)
    if m and m.group(2) in BLOCK_TENSORS:
        return f"blk.{m.group(1)}.{BLOCK_TENSORS[m.group(2)]}.{m.group(3)}"
    raise ValueError(f"unexpected tensor in checkpoint: {src}")


def read_vocab(model_dir: Path) -> tuple[list[str], set[str]]:
    """Return the WordPiece tokens in id order and the set of special tokens."""
    tok_json = model_dir / "tokenizer.json"
    specials: set[str] = set()
    if tok_json.is_file():
        data = json.loads(tok_json.read_text(encoding="utf-8"))
        model = data.get("model", {})
        if model.get("type") != "WordPiece":
            raise ValueError(f"expected a WordPiece tokenizer, got {model.get('type')!r}")
        by_id = sorted(model["vocab"].items(), key=lambda kv: kv[1])
        tokens = [tok for tok, _ in by_id]
        if [i for _, i in by_id] != list(range(len(tokens))):
            raise ValueError("tokenizer.json vocabulary ids are not dense")
        specials = {t["content"] for t in data.get("added_tokens", []) if t.get("special")}
    else:
        tokens = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    if not specials:
        specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"} & set(tokens)
    return tokens, specials


def to_llama_wordpiece(token: str, special: bool) -> str:
    """llama.cpp's WPM tokenizer marks word starts with U+2581 instead of marking
    continuations with `##`; special tokens keep their text."""
    if special:
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def read_pooling(model_dir: Path) -> gguf.PoolingType:
    cfg_path = model_dir / "1_Pooling" / "config.json"
    if not cfg_path.is_file():
        return gguf.PoolingType.MEAN
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    chosen = [mode for key, mode in POOLING_MODES.items() if cfg.get(key)]
    others = [
        k for k, v in cfg.items() if k.startswith("pooling_mode") and v and k not in POOLING_MODES
    ]
    if len(chosen) != 1 or others:
        raise ValueError(f"unsupported pooling configuration: {cfg}")
    return chosen[0]


def convert(model_dir: Path, out: Path, outtype: str, name: str) -> None:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if cfg.get("model_type") != "bert":
        raise ValueError(f"expected a BERT model, got model_type={cfg.get('model_type')!r}")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported activation {cfg.get('hidden_act')!r}")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")

    tokens, specials = read_vocab(model_dir)
    if len(tokens) != cfg["vocab_size"]:
        raise ValueError(f"vocabulary has {len(tokens)} tokens, config says {cfg['vocab_size']}")
    ids = {tok: i for i, tok in enumerate(tokens)}

    writer = gguf.GGUFWriter(str(out), ARCH)
    writer.add_name(name)
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32
    )
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(read_pooling(model_dir))

    writer.add_tokenizer_model("bert")
    writer.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
    writer.add_token_list([to_llama_wordpiece(t, t in specials) for t in tokens])
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    )
    # llama.cpp frames every input as [CLS] text [SEP], like the original tokenizer.
    for setter, tok in (
        (writer.add_bos_token_id, "[CLS]"),
        (writer.add_sep_token_id, "[SEP]"),
        (writer.add_unk_token_id, "[UNK]"),
        (writer.add_pad_token_id, "[PAD]"),
        (writer.add_mask_token_id, "[MASK]"),
    ):
        if tok in ids:
            setter(ids[tok])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_bool("tokenizer.ggml.normalizer.lowercase", True)

    n_tensors = 0
    with safe_open(str(model_dir / "model.safetensors"), framework="np") as st:
        for src in sorted(st.keys()):
            dst = gguf_name(src)
            if dst is None:
                continue
            data = np.ascontiguousarray(st.get_tensor(src).astype(np.float32))
            # Matrices dominate the size; norms and biases stay f32 for accuracy. The
            # token-type table is added to the activations as is (not gathered or
            # multiplied), and llama.cpp's CPU add needs both sides in f32.
            if outtype == "f16" and data.ndim == 2 and dst not in F32_ONLY:
                data = data.astype(np.float16)
            writer.add_tensor(dst, data)
            n_tensors += 1

    expected = 5 + 16 * cfg["num_hidden_layers"]
    if n_tensors != expected:
        raise ValueError(f"wrote {n_tensors} tensors, expected {expected}")

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--outtype", choices=("f16", "f32"), default="f16")
    parser.add_argument("--name", default="all-MiniLM-L6-v2")
    args = parser.parse_args(argv)

    start = time.monotonic()
    tmp = args.out.with_name(args.out.name + ".tmp")
    try:
        convert(args.model_dir, tmp, args.outtype, args.name)
        tmp.replace(args.out)
    finally:
        tmp.unlink(missing_ok=True)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in "
        f"{time.monotonic() - start:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
