"""Mixture-of-Transformer experts: a Wan2.2-TI2V-5B video expert and a narrower action expert.

    video expert   latents [B, 48, F, h, w] --patch 1x2x2--> tokens [B, F*h/2*w/2, Dv]   (Dv = heads*head_dim)
    action expert  actions [B, T, A] --linear--> tokens [B, T, Da] --blocks--> --linear--> [B, T, A]
                   (Fast-WAM ActionDiT: the output head is one plain Linear on the last block's tokens)
    every layer    per-expert adaLN modulation + q/k/v (RMSNorm, RoPE) -> ONE joint SDPA over
                   [video tokens | action tokens] under a boolean mask (heads x head_dim shared) ->
                   per-expert out-proj, cross-attention to (umT5 context + proprio token), FFN.

The video expert's parameter names and shapes equal diffusers' `WanTransformer3DModel` state dict, so
real Wan2.2 weights load 1:1 (`load_wan_weights`). `init_action_from_video` builds the action expert
from them exactly as Fast-WAM's backbone preprocessing does (linear interpolation + alpha scaling).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
)
from torch.utils.checkpoint import checkpoint

from fastwam_train.config import ModelConfig


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved RoPE on [B, S, H, D] with cos/sin [1, S, 1, D] (same arithmetic as diffusers Wan)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x1 * s + x2 * c
    return out.type_as(x)


class ExpertBlock(nn.Module):
    """WanTransformerBlock's parameters, with the head layout decoupled from the width."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, head_dim: int, eps: float):
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(dim=dim, heads=heads, dim_head=head_dim, eps=eps,
                                  processor=WanAttnProcessor())
        self.attn2 = WanAttention(dim=dim, heads=heads, dim_head=head_dim, eps=eps,
                                  cross_attention_dim_head=head_dim, processor=WanAttnProcessor())
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.heads = heads

    def pre(self, x: torch.Tensor, tproj: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        """x [B,S,D], tproj [B,S|1,6,D] -> q,k,v [B,S,H,hd] and the modulation kept for `post`."""
        mods = (self.scale_shift_table.unsqueeze(0) + tproj.float()).chunk(6, dim=2)
        shift, scale, gate, c_shift, c_scale, c_gate = (m.squeeze(2) for m in mods)
        n = (self.norm1(x.float()) * (1 + scale) + shift).type_as(x)
        a = self.attn1
        q = a.norm_q(a.to_q(n)).unflatten(2, (self.heads, -1))
        k = a.norm_k(a.to_k(n)).unflatten(2, (self.heads, -1))
        v = a.to_v(n).unflatten(2, (self.heads, -1))
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v, (gate, c_shift, c_scale, c_gate)

    def post(self, x, attn, mods, ctx):
        gate, c_shift, c_scale, c_gate = mods
        attn = self.attn1.to_out[1](self.attn1.to_out[0](attn.flatten(2, 3).type_as(x)))
        x = (x.float() + attn * gate).type_as(x)
        x = x + self.attn2(self.norm2(x.float()).type_as(x), ctx, None, None)
        n = (self.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x)
        return (x.float() + self.ffn(n).float() * c_gate).type_as(x)


def _out_head(x, temb, table, norm, proj):
    shift, scale = (table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
    return proj((norm(x.float()) * (1 + scale.squeeze(2)) + shift.squeeze(2)).type_as(x))


class VideoExpert(nn.Module):
    """Wan2.2 TI2V-5B DiT (diffusers naming); timesteps are per token (first frame t = 0)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, self.patch = cfg.video_width, cfg.patch_size
        self.rope = WanRotaryPosEmbed(cfg.head_dim, cfg.patch_size, cfg.rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size)
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=d, time_freq_dim=cfg.freq_dim, time_proj_dim=6 * d, text_embed_dim=cfg.text_dim)
        self.blocks = nn.ModuleList(ExpertBlock(d, cfg.video_ffn_dim, cfg.num_heads, cfg.head_dim, cfg.eps)
                                    for _ in range(cfg.num_layers))
        self.norm_out = FP32LayerNorm(d, cfg.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(d, cfg.in_channels * math.prod(cfg.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, d) / d**0.5)

    def tokens_per_frame(self, h: int, w: int) -> int:
        return (h // self.patch[1]) * (w // self.patch[2])

    def embed(self, latents: torch.Tensor, t_frames: torch.Tensor, context: torch.Tensor) -> dict:
        """latents [B,C,F,h,w], t_frames [B,F] (timestep per latent frame), context [B,L,text_dim]."""
        rope = self.rope(latents)
        x = self.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        seq = x.shape[1]
        t_tok = t_frames.repeat_interleave(seq // latents.shape[2] * self.patch[0], dim=1)
        temb, tproj, ctx, _ = self.condition_embedder(t_tok.flatten(), context, None, timestep_seq_len=seq)
        return {"x": x, "temb": temb, "tproj": tproj.unflatten(2, (6, -1)), "ctx": ctx, "rope": rope}

    def head(self, x: torch.Tensor, temb: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        x = _out_head(x, temb, self.scale_shift_table, self.norm_out, self.proj_out)
        (f, h, w), (pt, ph, pw) = grid, self.patch
        x = x.reshape(x.shape[0], f // pt, h // ph, w // pw, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


class ActionExpert(nn.Module):
    """Narrow DiT with the video expert's depth and head layout; 1-D RoPE over the chunk."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.action_width
        self.action_in = nn.Linear(cfg.action_dim, d)
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=d, time_freq_dim=cfg.freq_dim, time_proj_dim=6 * d, text_embed_dim=cfg.text_dim)
        self.blocks = nn.ModuleList(ExpertBlock(d, cfg.action_ffn_dim, cfg.num_heads, cfg.head_dim, cfg.eps)
                                    for _ in range(cfg.num_layers))
        self.proj_out = nn.Linear(d, cfg.action_dim)   # Fast-WAM ActionDiT.head: a plain Linear, nothing before it
        cos, sin = get_1d_rotary_pos_embed(cfg.head_dim, cfg.action_horizon, use_real=True,
                                           repeat_interleave_real=True, freqs_dtype=torch.float64)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def embed(self, actions: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> dict:
        x = self.action_in(actions)
        temb, tproj, ctx, _ = self.condition_embedder(t, context, None)
        s = x.shape[1]
        rope = (self.rope_cos[:s][None, :, None], self.rope_sin[:s][None, :, None])
        return {"x": x, "temb": temb.unsqueeze(1), "tproj": tproj.unflatten(1, (6, -1)).unsqueeze(1),
                "ctx": ctx, "rope": rope}

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Last block's tokens -> actions: one Linear, no norm or timestep modulation (Fast-WAM `post_dit`)."""
        return self.proj_out(x)


def _sdpa(q, k, v, mask):
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2)


class MoT(nn.Module):
    """Runs both experts layer by layer with one joint masked self-attention per layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.video = VideoExpert(cfg)
        self.action = ActionExpert(cfg)
        self.gradient_checkpointing = cfg.gradient_checkpointing

    def _layer(self, i, xv, xa, v_in, a_in, mask, cache, collect):
        qs, ks, vs, sizes = [], [], [], []
        if cache is not None:
            ks.append(cache[i][0])
            vs.append(cache[i][1])
        pre = {}
        for name, x, e in (("v", xv, v_in), ("a", xa, a_in)):
            if x is None:
                continue
            blk = (self.video if name == "v" else self.action).blocks[i]
            q, k, v, mods = blk.pre(x, e["tproj"], e["rope"])
            pre[name] = (blk, mods)
            qs.append(q)
            ks.append(k)
            vs.append(v)
            sizes.append((name, x.shape[1]))
        out = _sdpa(torch.cat(qs, 1), torch.cat(ks, 1), torch.cat(vs, 1), mask)
        kv = (ks[-1 if xa is None else 0], vs[-1 if xa is None else 0]) if collect else None
        res, start = {"v": xv, "a": xa}, 0
        for name, n in sizes:
            blk, mods = pre[name]
            ctx = (v_in if name == "v" else a_in)["ctx"]
            res[name] = blk.post(res[name], out[:, start:start + n], mods, ctx)
            start += n
        return res["v"], res["a"], kv

    def forward(self, v_in: dict | None, a_in: dict | None, mask: torch.Tensor | None,
                cache: list | None = None, collect_kv: bool = False):
        """Sequence = [video tokens | action tokens]; with `cache`, cached video K/V replace the video stream.

        Returns (video tokens, action tokens, per-layer video (k, v) if `collect_kv`)."""
        xv = None if v_in is None else v_in["x"]
        xa = None if a_in is None else a_in["x"]
        kvs = []
        for i in range(len(self.video.blocks)):
            args = (i, xv, xa, v_in, a_in, mask, cache, collect_kv)
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                xv, xa, kv = checkpoint(self._layer, *args, use_reentrant=False)
            else:
                xv, xa, kv = self._layer(*args)
            kvs.append(kv)
        return xv, xa, (kvs if collect_kv else None)


# -- weights ------------------------------------------------------------------------------------------
def load_wan_weights(video: VideoExpert, wan_dir: str | Path) -> None:
    """Copy a local Wan2.2 DiT dir into the video expert: diffusers `WanTransformer3DModel` layout or the
    original Wan release layout (config.json + diffusion_pytorch_model*.safetensors, renamed by
    cache_jobs.weights.dit); strict 1:1 names and shapes, read tensor by tensor (no second model)."""
    from safetensors import safe_open

    from cache_jobs.weights.dit import is_original_config, original_to_diffusers, read_config

    wan_dir = Path(wan_dir)
    cfg = read_config(wan_dir)  # raises on a dir without a Wan config.json
    rename = original_to_diffusers if is_original_config(cfg) else (lambda n: n)
    files = sorted(wan_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{wan_dir}: no *.safetensors weights")
    own = video.state_dict()
    seen = set()
    with torch.no_grad():
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for src in st.keys():
                    name = rename(src)
                    if name not in own:
                        raise ValueError(f"{f}: tensor {src!r} has no place in the video expert")
                    t = st.get_tensor(src)
                    if t.shape != own[name].shape:
                        raise ValueError(f"{f}: tensor {src!r} has shape {tuple(t.shape)}, the video "
                                         f"expert config expects {tuple(own[name].shape)}")
                    own[name].copy_(t.to(own[name].dtype))
                    seen.add(name)
    missing = sorted(set(own) - seen)
    if missing:
        raise ValueError(f"{wan_dir}: checkpoint lacks {len(missing)} video expert tensors, e.g. {missing[:3]}")


def _resize(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    for axis, n in enumerate(shape):
        if t.shape[axis] != n:
            moved = t.movedim(axis, -1)
            flat = moved.reshape(-1, 1, moved.shape[-1]).float()
            res = F.interpolate(flat, size=n, mode="linear", align_corners=True)
            t = res.reshape(*moved.shape[:-1], n).movedim(-1, axis)
    return t


ACTION_OWN_PREFIXES = ("action_in.", "proj_out.")   # Fast-WAM's skipped `action_encoder.`, `head.`


@torch.no_grad()
def init_action_from_video(action: ActionExpert, video: VideoExpert, alpha: bool = True) -> dict[str, float]:
    """Fast-WAM's `preprocess_action_dit_backbone.py`: every action-expert tensor except `action_in` /
    `proj_out` is the same-named video tensor, linearly interpolated (align_corners=True, fp32) along each
    axis whose size differs, axis 0 first; a tensor of >= 2 dims whose LAST (input) axis shrinks is then
    multiplied by alpha = sqrt(video last dim / action last dim). Returns {name: alpha applied (1.0: none)}."""
    vsd, done = video.state_dict(), {}
    for name, p in action.state_dict().items():
        if name.startswith(ACTION_OWN_PREFIXES):
            continue
        if name not in vsd or vsd[name].ndim != p.ndim:
            raise ValueError(f"action expert tensor {name!r} has no same-rank video tensor to start from")
        src = vsd[name]
        if src.shape == p.shape:
            p.copy_(src)
            done[name] = 1.0
            continue
        value, a = _resize(src, p.shape), 1.0
        if alpha and src.ndim >= 2 and src.shape[-1] != p.shape[-1]:
            a = (float(src.shape[-1]) / float(p.shape[-1])) ** 0.5
            value = value.float() * a
        p.copy_(value.to(p.dtype))
        done[name] = a
    return done
