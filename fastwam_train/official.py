"""Fast-WAM checkpoint layouts <-> our model (import for predict / fine-tuning, export, exact round trip).

    Fast-WAM weights checkpoint (`FastWAM.save_checkpoint`, trainer `checkpoints/weights/step_*.pt`):
      {"mot": MoT.state_dict(), "step": int, "torch_dtype": "torch.bfloat16",
       "proprio_encoder": {"weight" [text_dim, S], "bias"}  (only with proprio), "optimizer": ... (optional)}
      MoT keys  mixtures.video.<WanVideoDiT key>  mixtures.action.<ActionDiT key>   (original Wan naming)
    Fast-WAM action backbone (`scripts/preprocess_action_dit_backbone.py` -> ActionDiT_*.pt):
      {"policy": {...}, "backbone_state_dict": ActionDiT keys minus action_encoder.* / head.*,
       "meta": {hidden_dim, ffn_dim, num_layers, num_heads, attn_head_dim, text_dim, freq_dim, eps}}

Ours uses diffusers' WanTransformer3DModel names; the mapping is 1:1 on names and shapes (no reshapes):
    condition_embedder.text_embedder.linear_1|2   <-> text_embedding.0|2
    condition_embedder.time_embedder.linear_1|2   <-> time_embedding.0|2
    condition_embedder.time_proj                  <-> time_projection.1
    blocks.i.attn1|attn2.to_q|to_k|to_v|to_out.0  <-> blocks.i.self_attn|cross_attn.q|k|v|o (+ norm_q, norm_k)
    blocks.i.norm2 (cross-attn norm, affine)      <-> blocks.i.norm3
    blocks.i.ffn.net.0.proj | ffn.net.2           <-> blocks.i.ffn.0 | ffn.2
    blocks.i.scale_shift_table                    <-> blocks.i.modulation
    video: proj_out, scale_shift_table            <-> head.head, head.modulation
    action: action_in, proj_out                   <-> action_encoder, head
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from schemas.errors import WamdataError

MOT_KEY, STEP_KEY, DTYPE_KEY, PROPRIO_KEY = "mot", "step", "torch_dtype", "proprio_encoder"
VIDEO_PREFIX, ACTION_PREFIX = "mixtures.video.", "mixtures.action."
BACKBONE_META = ("hidden_dim", "ffn_dim", "num_layers", "num_heads", "attn_head_dim", "text_dim", "freq_dim",
                 "eps")

_COMMON = [
    (r"condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"condition_embedder\.time_proj\.", "time_projection.1."),
    (r"(blocks\.\d+\.)attn1\.to_out\.0\.", r"\1self_attn.o."),
    (r"(blocks\.\d+\.)attn2\.to_out\.0\.", r"\1cross_attn.o."),
    (r"(blocks\.\d+\.)attn1\.to_([qkv])\.", r"\1self_attn.\2."),
    (r"(blocks\.\d+\.)attn2\.to_([qkv])\.", r"\1cross_attn.\2."),
    (r"(blocks\.\d+\.)attn1\.(norm_[qk])\.", r"\1self_attn.\2."),
    (r"(blocks\.\d+\.)attn2\.(norm_[qk])\.", r"\1cross_attn.\2."),
    (r"(blocks\.\d+\.)norm2\.", r"\1norm3."),
    (r"(blocks\.\d+\.)ffn\.net\.0\.proj\.", r"\1ffn.0."),
    (r"(blocks\.\d+\.)ffn\.net\.2\.", r"\1ffn.2."),
    (r"(blocks\.\d+\.)scale_shift_table$", r"\1modulation"),
]
_VIDEO = [*_COMMON, (r"^proj_out\.", "head.head."), (r"^scale_shift_table$", "head.modulation"),
          (r"^patch_embedding\.", "patch_embedding.")]
_ACTION = [*_COMMON, (r"^action_in\.", "action_encoder."), (r"^proj_out\.", "head.")]


def _rename(name: str, rules) -> str:
    for pat, rep in rules:
        new, n = re.subn(pat, rep, name)
        if n:
            return new
    raise KeyError(f"no Fast-WAM name for our tensor {name!r}")


def expert_key_map(expert: torch.nn.Module, kind: str) -> dict[str, str]:
    """{our name: Fast-WAM name} for every tensor of the video or action expert."""
    rules = _VIDEO if kind == "video" else _ACTION
    return {k: _rename(k, rules) for k in expert.state_dict()}


def mot_key_map(model) -> dict[str, str]:
    """{our WAM name: Fast-WAM MoT name} over both experts."""
    out = {f"mot.video.{k}": VIDEO_PREFIX + v for k, v in expert_key_map(model.mot.video, "video").items()}
    out.update({f"mot.action.{k}": ACTION_PREFIX + v for k, v in expert_key_map(model.mot.action, "action").items()})
    return out


def to_official(model, step: int = 0, dtype: torch.dtype | None = None) -> dict:
    """Our WAM (plain, unsharded) -> a Fast-WAM weights checkpoint payload (tensors cloned to CPU)."""
    sd = model.state_dict()
    dt = dtype or next(model.parameters()).dtype

    def cvt(t):
        return t.detach().to("cpu", dt if t.is_floating_point() else t.dtype).clone()

    payload = {MOT_KEY: {off: cvt(sd[ours]) for ours, off in mot_key_map(model).items()}, STEP_KEY: int(step),
               DTYPE_KEY: str(dt)}
    if model.proprio_encoder is not None:
        payload[PROPRIO_KEY] = {"weight": cvt(sd["proprio_encoder.weight"]), "bias": cvt(sd["proprio_encoder.bias"])}
    return payload


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WamdataError(f"{path}: no such Fast-WAM checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear error
        raise WamdataError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict):
        raise WamdataError(f"{path}: expected a dict payload, got {type(payload).__name__}")
    return payload


@torch.no_grad()
def _copy_strict(dst: dict[str, torch.Tensor], src: dict[str, torch.Tensor], names: dict[str, str], where: str):
    """dst[ours] <- src[official] for every pair; every official key used, shapes equal."""
    missing = sorted(off for off in names.values() if off not in src)
    unexpected = sorted(set(src) - set(names.values()))
    if missing or unexpected:
        raise WamdataError(f"{where}: key mismatch with the configured model: missing {missing[:4]}"
                           f"{'…' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
                           f"{'…' if len(unexpected) > 4 else ''}")
    for ours, off in names.items():
        t = src[off]
        if tuple(t.shape) != tuple(dst[ours].shape):
            raise WamdataError(f"{where}: tensor {off!r} has shape {tuple(t.shape)}, the model config expects "
                               f"{tuple(dst[ours].shape)}")
        dst[ours].copy_(t.to(dst[ours].dtype))


def from_official(model, payload: dict, where: str = "checkpoint") -> int:
    """Fast-WAM weights payload -> our WAM, strictly (every tensor, both ways); returns its step."""
    if MOT_KEY not in payload or not isinstance(payload[MOT_KEY], dict):
        raise WamdataError(f"{where}: no {MOT_KEY!r} state dict (not a Fast-WAM weights checkpoint)")
    own = model.state_dict()
    _copy_strict(own, payload[MOT_KEY], mot_key_map(model), where)
    if model.proprio_encoder is not None:
        if PROPRIO_KEY not in payload:
            raise WamdataError(f"{where}: model has a proprio encoder but the checkpoint has no {PROPRIO_KEY!r}")
        _copy_strict(own, payload[PROPRIO_KEY], {"proprio_encoder.weight": "weight", "proprio_encoder.bias": "bias"},
                     f"{where}: {PROPRIO_KEY}")
    elif PROPRIO_KEY in payload:
        raise WamdataError(f"{where}: checkpoint has {PROPRIO_KEY!r} but the model has state_dim 0")
    return int(payload.get(STEP_KEY) or 0)


def load_official(model, path: str | Path) -> int:
    return from_official(model, _read(path), str(path))


def save_official(model, path: str | Path, step: int = 0, dtype: torch.dtype | None = None) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(to_official(model, step, dtype), tmp)
    tmp.replace(path)
    return path


def backbone_meta(cfg) -> dict:
    """The `meta` block Fast-WAM writes beside an action backbone for our ModelConfig."""
    return {"hidden_dim": cfg.action_width, "ffn_dim": cfg.action_ffn_dim, "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads, "attn_head_dim": cfg.head_dim, "text_dim": cfg.text_dim,
            "freq_dim": cfg.freq_dim, "eps": cfg.eps}


def load_action_backbone(action, path: str | Path, cfg=None) -> None:
    """A Fast-WAM `ActionDiT_*.pt` backbone -> our action expert (action_in / proj_out keep their init)."""
    payload = _read(path)
    sd, meta = payload.get("backbone_state_dict"), payload.get("meta")
    if not isinstance(sd, dict) or not isinstance(meta, dict):
        raise WamdataError(f"{path}: no 'backbone_state_dict'/'meta' (not a Fast-WAM action backbone)")
    if cfg is not None:
        want = backbone_meta(cfg)
        for k in BACKBONE_META:
            if k not in meta:
                raise WamdataError(f"{path}: meta lacks {k!r}")
            if float(meta[k]) != float(want[k]):
                raise WamdataError(f"{path}: meta {k}={meta[k]} but the model config has {want[k]}")
    names = {k: v for k, v in expert_key_map(action, "action").items()
             if not v.startswith(("action_encoder.", "head."))}
    own = action.state_dict()
    _copy_strict(own, sd, names, str(path))
