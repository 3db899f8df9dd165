"""Wan's umT5-XXL encoder file (`models_t5_umt5-xxl-enc-bf16.pth`, DiffSynth's `.safetensors`: the `T5Encoder`
module of Wan's t5.py, per-layer relative position buckets) -> transformers `UMT5EncoderModel` names.

    Wan name                                   UMT5EncoderModel name
    token_embedding.weight                     shared.weight (= encoder.embed_tokens.weight, tied)
    blocks.i.norm1.weight                      encoder.block.i.layer.0.layer_norm.weight
    blocks.i.attn.{q,k,v,o}.weight             encoder.block.i.layer.0.SelfAttention.{q,k,v,o}.weight
    blocks.i.pos_embedding.embedding.weight    encoder.block.i.layer.0.SelfAttention.relative_attention_bias.weight
    blocks.i.norm2.weight                      encoder.block.i.layer.1.layer_norm.weight
    blocks.i.ffn.gate.0.weight                 encoder.block.i.layer.1.DenseReluDense.wi_0.weight  (GELU branch)
    blocks.i.ffn.fc1.weight                    encoder.block.i.layer.1.DenseReluDense.wi_1.weight  (linear branch)
    blocks.i.ffn.fc2.weight                    encoder.block.i.layer.1.DenseReluDense.wo.weight
    norm.weight                                encoder.final_layer_norm.weight

Both compute: no attention scaling, RMS layer norms (eps 1e-6), tanh-GELU gated FFN, bidirectional buckets with
max distance 128 (not stored in the file: Wan's constant).
"""

from __future__ import annotations

import re

from schemas.errors import SchemaError

WAN_MAX_DISTANCE = 128
UMT5_XXL = {"vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
            "relative_attention_num_buckets": 32}
TIED = ("encoder.embed_tokens.weight", "shared.weight")

_BLOCK = {"norm1.weight": "layer.0.layer_norm.weight", "attn.q.weight": "layer.0.SelfAttention.q.weight",
          "attn.k.weight": "layer.0.SelfAttention.k.weight", "attn.v.weight": "layer.0.SelfAttention.v.weight",
          "attn.o.weight": "layer.0.SelfAttention.o.weight",
          "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
          "norm2.weight": "layer.1.layer_norm.weight", "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
          "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight", "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}
_TOP = {"token_embedding.weight": "shared.weight", "norm.weight": "encoder.final_layer_norm.weight"}
_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")

RELEASE_MARKERS = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight")
DIFFUSERS_MARKERS = ("encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.final_layer_norm.weight")


def release_to_hf(name: str) -> str | None:
    if name in _TOP:
        return _TOP[name]
    m = _RE.match(name)
    if m and m.group(2) in _BLOCK:
        return f"encoder.block.{m.group(1)}.{_BLOCK[m.group(2)]}"
    return None


def derive_config(shapes: dict[str, tuple], src: str) -> dict:
    """UMT5Config kwargs from the shapes of a UMT5-named state dict (Wan's umT5 encoder conventions)."""
    def dim(name, axis):
        if name not in shapes:
            raise SchemaError(f"{src}: no tensor {name!r}: not a umT5 encoder")
        return int(shapes[name][axis])

    emb = "shared.weight" if "shared.weight" in shapes else TIED[0]
    layers = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.block.")})
    if not layers or layers != list(range(len(layers))):
        raise SchemaError(f"{src}: encoder blocks {layers}: not a umT5 encoder")
    rel = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    heads, inner = dim(rel, 1), dim("encoder.block.0.layer.0.SelfAttention.q.weight", 0)
    if inner % heads:
        raise SchemaError(f"{src}: attention width {inner} is not a multiple of {heads} heads")
    cfg = {"vocab_size": dim(emb, 0), "d_model": dim(emb, 1), "d_kv": inner // heads,
           "d_ff": dim("encoder.block.0.layer.1.DenseReluDense.wi_0.weight", 0), "num_layers": len(layers),
           "num_heads": heads, "relative_attention_num_buckets": dim(rel, 0)}
    if cfg["d_model"] == UMT5_XXL["d_model"]:
        for k, v in UMT5_XXL.items():
            if cfg[k] != v:
                raise SchemaError(f"{src}: full-size umT5 but {k}={cfg[k]}, umT5-XXL has {v}")
    return cfg


def umt5_config(arch: dict):
    """The full UMT5Config of Wan's encoder for an architecture dict (from derive_config or a config.json)."""
    from transformers import UMT5Config

    kw = {"relative_attention_max_distance": WAN_MAX_DISTANCE, "feed_forward_proj": "gated-gelu",
          "layer_norm_epsilon": 1e-6, **arch}
    return UMT5Config(**kw, is_encoder_decoder=True, tie_word_embeddings=False, num_decoder_layers=arch["num_layers"],
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, scalable_attention=True,
                      tokenizer_class="T5Tokenizer", architectures=["UMT5EncoderModel"])


ARCH_KEYS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "relative_attention_num_buckets",
             "relative_attention_max_distance", "feed_forward_proj", "layer_norm_epsilon")
