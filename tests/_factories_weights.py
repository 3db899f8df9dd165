"""Tiny random-init Wan2.2 components saved in every layout users download (no downloads, no conversion code).

    write_layouts(root) -> root/
      diffusers/   model_index.json, vae/ (AutoencoderKLWan), text_encoder/ (UMT5EncoderModel, bf16),
                   tokenizer/, transformer/ (WanTransformer3DModel)               = Wan2.2-TI2V-5B-Diffusers
      release/     Wan2.2_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/ (tokenizer),
                   diffusion_pytorch_model-00001-of-00001.safetensors + config.json (WanModel)  = Wan2.2-TI2V-5B
      diffsynth/   Wan2.2_VAE.safetensors, models_t5_umt5-xxl-enc-bf16.safetensors   (tokenizer: --tokenizer)
      tokenizer/   the tokenizer alone

The release names are written here from the names of the official modules (Wan2.2 vae2_2.py `WanVAE_`, t5.py
`T5Encoder`, model.py `WanModel`), by rules written independently of cache_jobs/weights; `tests/data/
wan22_release_keys.json` (names + shapes of the official modules at full size) pins them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

from cache_jobs.tiny_models import make_tiny_vae, train_tiny_tokenizer

DATA = Path(__file__).parent / "data" / "wan22_release_keys.json"
TEXT_DIM = 24                     # = _factories_train.TEXT_DIM (the trainer test loads this DiT)
ORIGINAL_DIT_CONFIG = {"_class_name": "WanModel", "_diffusers_version": "0.33.0", "dim": 32, "eps": 1e-06,
                       "ffn_dim": 64, "freq_dim": 16, "in_dim": 48, "model_type": "ti2v", "num_heads": 2,
                       "num_layers": 2, "out_dim": 48, "text_len": 512}


def release_keys() -> dict:
    """Official full-size names -> shapes, blocks expanded: {"vae": {...}, "t5": {...}, "dit": {...}}."""
    raw = json.loads(DATA.read_text())
    out = {"vae": {k: tuple(v) for k, v in raw["vae"].items()}}
    for kind in ("t5", "dit"):
        d = {}
        for k, v in raw[kind]["tensors"].items():
            if k.startswith("blocks.0."):
                for i in range(raw[kind]["num_layers"]):
                    d[f"blocks.{i}." + k[len("blocks.0."):]] = tuple(v)
            else:
                d[k] = tuple(v)
        out[kind] = d
    return out


# -- diffusers/transformers name -> official release name (test-side rules) ------------------------------
def vae_release_name(n: str) -> str:
    res = {"norm1.gamma": "residual.0.gamma", "conv1.weight": "residual.2.weight", "conv1.bias": "residual.2.bias",
           "norm2.gamma": "residual.3.gamma", "conv2.weight": "residual.6.weight", "conv2.bias": "residual.6.bias",
           "conv_shortcut.weight": "shortcut.weight", "conv_shortcut.bias": "shortcut.bias"}
    top = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
    head, _, leaf = n.partition(".")
    if head in top:
        return f"{top[head]}.{leaf}"
    part, rest = n.split(".", 1)              # encoder | decoder
    for a, b in (("conv_in.", "conv1."), ("norm_out.", "head.0."), ("conv_out.", "head.2.")):
        if rest.startswith(a):
            return f"{part}.{b}{rest[len(a):]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d)\.(.*)", rest)
    if m:
        idx = {"resnets0": 0, "attentions0": 1, "resnets1": 2}[m.group(1) + m.group(2)]
        tail = res[m.group(3)] if m.group(1) == "resnets" else m.group(3)
        return f"{part}.middle.{idx}.{tail}"
    m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler)\.(.*)", rest)
    assert m, n
    seq = "downsamples" if m.group(1) == "down" else "upsamples"
    if m.group(4) is not None:
        return f"{part}.{seq}.{m.group(2)}.{seq}.{m.group(4)}.{res[m.group(5)]}"
    nres = 2 if m.group(1) == "down" else 3       # Wan2.2: num_res_blocks (+1 in the decoder), then the resample
    return f"{part}.{seq}.{m.group(2)}.{seq}.{nres}.{m.group(5)}"


def t5_release_name(n: str) -> str | None:
    if n == "encoder.embed_tokens.weight":
        return None                                # tied to shared.weight
    fixed = {"shared.weight": "token_embedding.weight", "encoder.final_layer_norm.weight": "norm.weight"}
    if n in fixed:
        return fixed[n]
    i, rest = re.match(r"encoder\.block\.(\d+)\.layer\.(.*)", n).groups()
    table = {"0.layer_norm.weight": "norm1.weight", "0.SelfAttention.q.weight": "attn.q.weight",
             "0.SelfAttention.k.weight": "attn.k.weight", "0.SelfAttention.v.weight": "attn.v.weight",
             "0.SelfAttention.o.weight": "attn.o.weight",
             "0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
             "1.layer_norm.weight": "norm2.weight", "1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
             "1.DenseReluDense.wi_1.weight": "ffn.fc1.weight", "1.DenseReluDense.wo.weight": "ffn.fc2.weight"}
    return f"blocks.{i}.{table[rest]}"


def dit_release_name(n: str) -> str:
    fixed = {"scale_shift_table": "head.modulation"}
    if n in fixed:
        return fixed[n]
    for a, b in (("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
                 ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
                 ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
                 ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
                 ("condition_embedder.time_proj.", "time_projection.1."), ("proj_out.", "head.head."),
                 ("patch_embedding.", "patch_embedding.")):
        if n.startswith(a):
            return b + n[len(a):]
    i, rest = re.match(r"blocks\.(\d+)\.(.*)", n).groups()
    if rest == "scale_shift_table":
        return f"blocks.{i}.modulation"
    for a, b in (("attn1.to_out.0.", "self_attn.o."), ("attn2.to_out.0.", "cross_attn.o."), ("norm2.", "norm3."),
                 ("ffn.net.0.proj.", "ffn.0."), ("ffn.net.2.", "ffn.2.")):
        if rest.startswith(a):
            return f"blocks.{i}.{b}{rest[len(a):]}"
    m = re.match(r"attn([12])\.(to_q|to_k|to_v|norm_q|norm_k)\.(.*)", rest)
    attn = "self_attn" if m.group(1) == "1" else "cross_attn"
    return f"blocks.{i}.{attn}.{m.group(2).replace('to_', '')}.{m.group(3)}"


def renamed(sd: dict, rule) -> dict:
    out = {}
    for k, v in sd.items():
        r = rule(k)
        if r is not None:
            out[r] = v.detach().clone().contiguous()
    return out


# -- tiny models ---------------------------------------------------------------------------------------
def tiny_umt5(vocab: int):
    """UMT5EncoderModel with Wan's umT5 conventions (bucket max distance 128), weights exactly bf16."""
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(3)
    cfg = UMT5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    m = UMT5EncoderModel(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m.to(torch.bfloat16).eval()


def tiny_dit():
    from diffusers import WanTransformer3DModel

    torch.manual_seed(4)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=48,
                                 out_channels=48, text_dim=TEXT_DIM, freq_dim=16, ffn_dim=64, num_layers=2,
                                 cross_attn_norm=True, eps=1e-6).eval()


def write_layouts(root: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    root = Path(root)
    tok = train_tiny_tokenizer()
    (root / "tokenizer").mkdir(parents=True)
    tok.save_pretrained(root / "tokenizer")

    hf = root / "diffusers"
    make_tiny_vae(hf / "vae")
    from diffusers import AutoencoderKLWan

    vae_sd = AutoencoderKLWan.from_pretrained(hf / "vae").state_dict()
    t5 = tiny_umt5(len(tok))
    t5.save_pretrained(hf / "text_encoder")
    shutil.copytree(root / "tokenizer", hf / "tokenizer")
    dit = tiny_dit()
    dit.save_pretrained(hf / "transformer")
    (hf / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline",
                                                     "vae": ["diffusers", "AutoencoderKLWan"]}))

    rel = root / "release"
    rel.mkdir()
    torch.save(renamed(vae_sd, vae_release_name), rel / "Wan2.2_VAE.pth")
    torch.save(renamed(t5.state_dict(), t5_release_name), rel / "models_t5_umt5-xxl-enc-bf16.pth")
    shutil.copytree(root / "tokenizer", rel / "google" / "umt5-xxl")
    save_file(renamed(dit.state_dict(), dit_release_name),
              str(rel / "diffusion_pytorch_model-00001-of-00001.safetensors"))
    (rel / "config.json").write_text(json.dumps(ORIGINAL_DIT_CONFIG))

    ds = root / "diffsynth"
    ds.mkdir()
    save_file(renamed(vae_sd, vae_release_name), str(ds / "Wan2.2_VAE.safetensors"))
    save_file(renamed(t5.state_dict(), t5_release_name), str(ds / "models_t5_umt5-xxl-enc-bf16.safetensors"))
    return {"diffusers": hf, "release": rel, "diffsynth": ds, "tokenizer": root / "tokenizer"}


# -- oracle fixtures: tiny weights in the release names, the official modules' outputs stored once -------
ORACLE = Path(__file__).parent / "data" / "wan22_official_outputs.pt"
ORACLE_T5 = {"vocab": 64, "dim": 32, "dim_attn": 32, "dim_ffn": 48, "num_heads": 4, "num_layers": 2, "num_buckets": 8}


def oracle_release_weights() -> dict[str, dict]:
    """Seeded tiny weights under the official release names: {"vae": {...}, "t5": {...}} (fp32)."""
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    from cache_jobs.tiny_models import make_tiny_vae_config

    c = ORACLE_T5
    with torch.device("meta"):
        vae = AutoencoderKLWan(**make_tiny_vae_config()).state_dict()
        t5 = UMT5EncoderModel(UMT5Config(vocab_size=c["vocab"], d_model=c["dim"], d_kv=c["dim_attn"] // c["num_heads"],
                                         d_ff=c["dim_ffn"], num_layers=c["num_layers"], num_heads=c["num_heads"],
                                         relative_attention_num_buckets=c["num_buckets"])).state_dict()
    out = {}
    for kind, sd, rule, std in (("vae", vae, vae_release_name, 0.05), ("t5", t5, t5_release_name, 0.3)):
        g = torch.Generator().manual_seed(11)
        shapes = {rule(k): v.shape for k, v in sd.items() if rule(k) is not None}
        out[kind] = {k: torch.randn(shapes[k], generator=g) * std for k in sorted(shapes)}
    return out


def oracle_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(12)
    video = torch.rand(1, 3, 9, 32, 32, generator=g) * 2 - 1
    ids = torch.randint(3, ORACLE_T5["vocab"], (2, 140), generator=g)
    mask = torch.zeros(2, 140, dtype=torch.long)
    mask[0, :17] = 1
    mask[1, :140] = 1
    return {"video": video, "ids": ids, "mask": mask}
