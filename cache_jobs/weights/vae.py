"""Wan2.2 VAE: the official release key layout (`Wan2.2_VAE.pth`, DiffSynth's `Wan2.2_VAE.safetensors`, both
the `WanVAE_` module of Wan2.2's vae2_2.py) -> diffusers `AutoencoderKLWan` names, and the architecture
derived from tensor shapes.

    release name                                     diffusers name
    encoder.conv1 / decoder.conv1                    {enc,dec}oder.conv_in
    encoder.downsamples.i.downsamples.j.<res>        encoder.down_blocks.i.resnets.j.<res'>
    encoder.downsamples.i.downsamples.j.resample|time_conv   encoder.down_blocks.i.downsampler.*
    decoder.upsamples.i.upsamples.j.<res>            decoder.up_blocks.i.resnets.j.<res'>
    decoder.upsamples.i.upsamples.j.resample|time_conv       decoder.up_blocks.i.upsampler.*
    {enc,dec}oder.middle.0 / .1 / .2                 mid_block.resnets.0 / attentions.0 / resnets.1
    {enc,dec}oder.head.0 / .2                        norm_out / conv_out
    conv1 / conv2                                    quant_conv / post_quant_conv
    <res>: residual.0.gamma residual.2 residual.3.gamma residual.6 shortcut
    <res'>: norm1.gamma     conv1      norm2.gamma      conv2      conv_shortcut
"""

from __future__ import annotations

import re

from cache_jobs.tiny_models import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, make_full_vae_config
from schemas.errors import SchemaError

_RES = (("residual.0.gamma", "norm1.gamma"), ("residual.2.", "conv1."), ("residual.3.gamma", "norm2.gamma"),
        ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut."))
_TOP = {"conv1.weight": "quant_conv.weight", "conv1.bias": "quant_conv.bias",
        "conv2.weight": "post_quant_conv.weight", "conv2.bias": "post_quant_conv.bias"}
_SIMPLE = ((r"^(encoder|decoder)\.conv1\.", r"\1.conv_in."), (r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out."),
           (r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out."),
           (r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0."))
_BLOCK = re.compile(r"^(encoder\.downsamples|decoder\.upsamples|encoder\.middle|decoder\.middle)\.(\d+)\.(?:(?:down|up)"
                    r"samples\.(\d+)\.)?(.*)$")

# names that identify a layout (detection by content)
RELEASE_MARKERS = ("encoder.conv1.weight", "decoder.conv1.weight", "conv2.weight", "encoder.head.2.weight")
DIFFUSERS_MARKERS = ("encoder.conv_in.weight", "decoder.conv_in.weight", "post_quant_conv.weight",
                     "encoder.conv_out.weight")


def _res(rest: str) -> str | None:
    for a, b in _RES:
        if rest.startswith(a):
            return b + rest[len(a):]
    return None


def release_to_diffusers(name: str) -> str | None:
    """The diffusers name of a release VAE tensor, None when the name has no place in the Wan2.2 VAE."""
    if name in _TOP:
        return _TOP[name]
    for pat, rep in _SIMPLE:
        if re.match(pat, name):
            return re.sub(pat, rep, name)
    m = _BLOCK.match(name)
    if not m:
        return None
    where, i, j, rest = m.groups()
    if where.endswith("middle"):
        if j is not None or i not in ("0", "2"):
            return None
        r = _res(rest)
        return None if r is None else f"{where.split('.')[0]}.mid_block.resnets.{int(i) // 2}.{r}"
    if j is None:
        return None
    enc = where.startswith("encoder")
    blocks = "encoder.down_blocks" if enc else "decoder.up_blocks"
    if rest.startswith(("resample.", "time_conv.")):
        return f"{blocks}.{i}.{'downsampler' if enc else 'upsampler'}.{rest}"
    r = _res(rest)
    return None if r is None else f"{blocks}.{i}.resnets.{j}.{r}"


def _dim(shapes: dict, name: str, axis: int, src: str) -> int:
    if name not in shapes:
        raise SchemaError(f"{src}: no tensor {name!r}: not a Wan2.2 VAE")
    return int(shapes[name][axis])


def derive_config(shapes: dict[str, tuple], src: str) -> dict:
    """AutoencoderKLWan kwargs from the shapes of a diffusers-named Wan2.2 VAE state dict."""
    base = _dim(shapes, "encoder.conv_in.weight", 0, src)
    in_ch = _dim(shapes, "encoder.conv_in.weight", 1, src)
    z = _dim(shapes, "post_quant_conv.weight", 0, src)
    blocks = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down_blocks.")})
    if not blocks or blocks != list(range(len(blocks))):
        raise SchemaError(f"{src}: encoder down blocks {blocks}: not a Wan2.2 VAE")
    if any(".attentions." in k for k in shapes if k.startswith(("encoder.down_blocks.", "decoder.up_blocks."))):
        raise SchemaError(f"{src}: attention inside down/up blocks: not the Wan2.2 VAE architecture (attn_scales=[])")
    mult = []
    for i in blocks:
        out = _dim(shapes, f"encoder.down_blocks.{i}.resnets.0.conv1.weight", 0, src)
        if out % base:
            raise SchemaError(f"{src}: down block {i} width {out} is not a multiple of the base width {base}")
        mult.append(out // base)
    n_res = len({k.split(".")[4] for k in shapes if k.startswith("encoder.down_blocks.0.resnets.")})
    t_down = [f"encoder.down_blocks.{i}.downsampler.time_conv.weight" in shapes for i in blocks[:-1]]
    patch = round((in_ch / 3) ** 0.5)
    if 3 * patch * patch != in_ch:
        raise SchemaError(f"{src}: encoder input has {in_ch} channels, expected 3*p*p (Wan2.2: 12, patch 2)")
    dec_out = _dim(shapes, "decoder.conv_out.weight", 1, src)
    if dec_out % mult[0]:
        raise SchemaError(f"{src}: decoder output width {dec_out} does not fit dim_mult {mult}")
    return {
        "attn_scales": [], "base_dim": base, "decoder_base_dim": dec_out // mult[0], "dim_mult": mult,
        "dropout": 0.0, "in_channels": in_ch, "out_channels": _dim(shapes, "decoder.conv_out.weight", 0, src),
        "is_residual": True, "num_res_blocks": n_res, "patch_size": patch,
        "scale_factor_spatial": patch * 2 ** (len(mult) - 1), "scale_factor_temporal": 2 ** sum(t_down),
        "temperal_downsample": t_down, "z_dim": z,
    }


def release_config(shapes: dict[str, tuple], src: str) -> dict:
    """Derived architecture + Wan2.2's published latents_mean/std; at full size it must equal Wan2.2-TI2V-5B's."""
    cfg = derive_config(shapes, src)
    if cfg["z_dim"] != len(WAN22_LATENTS_MEAN):
        raise SchemaError(f"{src}: latent channels z_dim={cfg['z_dim']}, the Wan2.2 VAE has "
                          f"{len(WAN22_LATENTS_MEAN)} (a Wan2.1 VAE has 16: not supported)")
    cfg.update(latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD))
    check_full_size(cfg, src)
    return cfg


def check_full_size(cfg: dict, src: str) -> None:
    full = make_full_vae_config()
    if cfg["base_dim"] != full["base_dim"]:
        return                      # a reduced (test) model of the same architecture
    for k, v in full.items():
        if cfg.get(k) != v:
            raise SchemaError(f"{src}: full-size VAE but {k}={cfg.get(k)!r}, Wan2.2-TI2V-5B has {v!r}")
