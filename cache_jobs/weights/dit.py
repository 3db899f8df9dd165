"""Wan2.2 DiT: the official release key layout (`WanModel` of Wan2.2's model.py, the
`diffusion_pytorch_model*.safetensors` + `config.json` of Wan-AI/Wan2.2-TI2V-5B) -> diffusers
`WanTransformer3DModel` names (also the names of fastwam_train's video expert).

    Wan name                                  diffusers name
    patch_embedding.*                         patch_embedding.*
    text_embedding.{0,2}.*                    condition_embedder.text_embedder.linear_{1,2}.*
    time_embedding.{0,2}.*                    condition_embedder.time_embedder.linear_{1,2}.*
    time_projection.1.*                       condition_embedder.time_proj.*
    blocks.i.self_attn.{q,k,v,o}.*            blocks.i.attn1.{to_q,to_k,to_v,to_out.0}.*
    blocks.i.self_attn.norm_{q,k}.weight      blocks.i.attn1.norm_{q,k}.weight
    blocks.i.cross_attn.*                     blocks.i.attn2.*   (same sub-names as attn1)
    blocks.i.norm3.*                          blocks.i.norm2.*   (the affine norm before cross-attention)
    blocks.i.ffn.{0,2}.*                      blocks.i.ffn.net.{0.proj,2}.*
    blocks.i.modulation                       blocks.i.scale_shift_table
    head.head.* / head.modulation             proj_out.* / scale_shift_table
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from schemas.errors import SchemaError

_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"}
_TOP = {"text_embedding.0": "condition_embedder.text_embedder.linear_1",
        "text_embedding.2": "condition_embedder.text_embedder.linear_2",
        "time_embedding.0": "condition_embedder.time_embedder.linear_1",
        "time_embedding.2": "condition_embedder.time_embedder.linear_2",
        "time_projection.1": "condition_embedder.time_proj", "head.head": "proj_out",
        "patch_embedding": "patch_embedding"}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_ATTN_RE = re.compile(r"^(self_attn|cross_attn)\.(q|k|v|o|norm_q|norm_k)\.(weight|bias)$")

RELEASE_MARKERS = ("blocks.0.self_attn.q.weight", "head.head.weight", "blocks.0.modulation")
DIFFUSERS_MARKERS = ("blocks.0.attn1.to_q.weight", "proj_out.weight", "blocks.0.scale_shift_table")

# Wan-AI/Wan2.2-TI2V-5B config.json (WanModel kwargs) and the WanTransformer3DModel config it maps to
WAN22_TI2V_5B = {"dim": 3072, "ffn_dim": 14336, "freq_dim": 256, "in_dim": 48, "out_dim": 48, "num_heads": 24,
                 "num_layers": 30, "eps": 1e-6, "text_len": 512}


def original_to_diffusers(name: str) -> str | None:
    if name == "head.modulation":
        return "scale_shift_table"
    stem, _, leaf = name.rpartition(".")
    if stem in _TOP and leaf in ("weight", "bias"):
        return f"{_TOP[stem]}.{leaf}"
    m = _BLOCK.match(name)
    if not m:
        return None
    i, rest = m.groups()
    if rest == "modulation":
        return f"blocks.{i}.scale_shift_table"
    a = _ATTN_RE.match(rest)
    if a:
        return f"blocks.{i}.{'attn1' if a.group(1) == 'self_attn' else 'attn2'}.{_ATTN[a.group(2)]}.{a.group(3)}"
    for src, dst in (("norm3.", "norm2."), ("ffn.0.", "ffn.net.0.proj."), ("ffn.2.", "ffn.net.2.")):
        if rest.startswith(src) and rest[len(src):] in ("weight", "bias"):
            return f"blocks.{i}.{dst}{rest[len(src):]}"
    return None


def diffusers_config(original: dict, src: str, text_dim: int = 4096) -> dict:
    """WanTransformer3DModel config of a WanModel config.json (text-to-video / TI2V: no image branch);
    text_dim comes from the weights (text_embedding.0.weight), the config does not carry it."""
    need = ("dim", "ffn_dim", "freq_dim", "in_dim", "out_dim", "num_heads", "num_layers")
    missing = [k for k in need if k not in original]
    if missing:
        raise SchemaError(f"{src}: WanModel config lacks {missing}")
    if original.get("model_type", "t2v") not in ("t2v", "ti2v"):
        raise SchemaError(f"{src}: model_type {original['model_type']!r}; only t2v/ti2v Wan DiTs are supported")
    if original["dim"] % original["num_heads"]:
        raise SchemaError(f"{src}: dim {original['dim']} is not a multiple of num_heads {original['num_heads']}")
    if original["dim"] == WAN22_TI2V_5B["dim"]:
        for k in need:
            if original[k] != WAN22_TI2V_5B[k]:
                raise SchemaError(f"{src}: full-size DiT but {k}={original[k]}, Wan2.2-TI2V-5B has {WAN22_TI2V_5B[k]}")
    return {"_class_name": "WanTransformer3DModel", "added_kv_proj_dim": None,
            "attention_head_dim": original["dim"] // original["num_heads"], "cross_attn_norm": True,
            "eps": float(original.get("eps", 1e-6)), "ffn_dim": original["ffn_dim"],
            "freq_dim": original["freq_dim"], "image_dim": None, "in_channels": original["in_dim"],
            "num_attention_heads": original["num_heads"], "num_layers": original["num_layers"],
            "out_channels": original["out_dim"], "patch_size": list(original.get("patch_size", [1, 2, 2])),
            "pos_embed_seq_len": None, "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 1024,
            "text_dim": int(text_dim)}


def read_config(d: Path) -> dict:
    p = Path(d) / "config.json"
    if not p.is_file():
        raise SchemaError(f"{d}: no config.json (a Wan DiT dir holds config.json + "
                          f"diffusion_pytorch_model*.safetensors)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"{p}: not valid JSON ({e})") from None


def is_original_config(cfg: dict) -> bool:
    return "dim" in cfg and "num_heads" in cfg and "num_attention_heads" not in cfg
