"""Per-GPU memory estimate of a training step for the resolved config and world size (`train --dry-run`).

    parameters counted on the meta device (no weights allocated); activations measured on the meta device
    too: the bytes autograd saves during one forward of the configured batch and latent shape (bf16 compute
    where the run computes in bf16), found with saved-tensor hooks at two depths (1 layer and all layers):
      per_layer = (A(L) - A(1)) / (L - 1),  outside = A(1) - per_layer
    gradient checkpointing keeps only each layer's inputs plus one layer being recomputed.

    FSDP2 (world > 1, loop.parallel "fsdp"): stored params, grads and AdamW's two moments (fp32, or bf16 with
    loop.param_dtype "bfloat16") are sharded 1/world; the non-block parameters and two MoT layers (video +
    action block: the running one and the prefetched one) are all-gathered in the compute dtype, with their
    unsharded grads.
    one process / DDP: everything replicated (DDP's gradient buckets not counted).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from fastwam_train.config import TrainConfig
from fastwam_train.wam import WAM

GIB = 1024**3


def _meta_model(cfg: TrainConfig, layers: int | None = None) -> WAM:
    m = replace(cfg.model, wan_dir=None, action_backbone=None, init_checkpoint=None, action_init="random",
                gradient_checkpointing=False, **({"num_layers": layers} if layers else {}))
    with torch.device("meta"):
        return WAM(m, cfg.objective)


def _saved_bytes(model: WAM, cfg: TrainConfig, latent_shape: tuple, dtype: torch.dtype) -> int:
    m, b = cfg.model, cfg.data.batch_size
    c, f, h, w = latent_shape
    batch = {"latents": torch.empty(b, c, f, h, w, device="meta", dtype=dtype),
             "actions": torch.empty(b, m.action_horizon, m.action_dim, device="meta", dtype=dtype),
             "state": torch.empty(b, m.state_dim, device="meta", dtype=dtype),
             "action_is_pad": torch.zeros(b, m.action_horizon, dtype=torch.bool, device="meta"),
             "frame_is_pad": torch.zeros(b, 9, dtype=torch.bool, device="meta"),
             "context": torch.empty(b, 128, m.text_dim, device="meta", dtype=dtype)}
    model = model.to(dtype).train()
    rnd = model.draw({"latents": torch.empty(b, c, f, h, w), "actions": torch.empty(b, m.action_horizon,
                                                                                     m.action_dim)})
    seen: dict[int, int] = {}
    keep = []

    def pack(t):
        base = t._base if t._base is not None else t
        if id(base) not in seen:
            seen[id(base)] = base.numel() * base.element_size()
            keep.append(base)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.loss(batch, rnd)
    return sum(seen.values())


def estimate(cfg: TrainConfig, latent_shape: tuple[int, int, int, int], world: int) -> dict:
    """Bytes per GPU by component, plus counts; see the module docstring for the model of each term."""
    cuda_bf16 = cfg.loop.bf16 or cfg.loop.param_dtype == "bfloat16"
    compute = torch.bfloat16 if cuda_bf16 else torch.float32
    cb = 2 if cuda_bf16 else 4
    model = _meta_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    n_video = sum(p.numel() for p in model.mot.video.parameters())
    n_action = sum(p.numel() for p in model.mot.action.parameters())
    layer = sum(p.numel() for p in model.mot.video.blocks[0].parameters()) + \
        sum(p.numel() for p in model.mot.action.blocks[0].parameters())
    n_root = n - layer * cfg.model.num_layers
    fsdp = world > 1 and cfg.loop.parallel == "fsdp"
    shard = world if fsdp else 1
    pb = 2 if cfg.loop.param_dtype == "bfloat16" else 4
    out = {"world": world, "mode": "fsdp2" if fsdp else ("ddp" if world > 1 else "single"),
           "params_total": n, "params_video": n_video, "params_action": n_action, "param_dtype": cfg.loop.param_dtype,
           "params": pb * n / shard, "grads": pb * n / shard, "optimizer": 2 * pb * n / shard}
    out["gathered"] = (n_root + 2 * layer) * cb * 2 if fsdp else 0  # unsharded params + their grads
    lay = cfg.model.num_layers
    a_all = _saved_bytes(model, cfg, latent_shape, compute)
    a_one = _saved_bytes(_meta_model(cfg, 1), cfg, latent_shape, compute) if lay > 1 else a_all
    per_layer = (a_all - a_one) / (lay - 1) if lay > 1 else a_all
    outside = a_one - per_layer
    if cfg.model.gradient_checkpointing:
        b = cfg.data.batch_size
        c, f, h, w = latent_shape
        tokens_v = f * (h // cfg.model.patch_size[1]) * (w // cfg.model.patch_size[2])
        if cfg.model.variant == "idm":
            tokens_v += tokens_v - (h // cfg.model.patch_size[1]) * (w // cfg.model.patch_size[2])
        inputs = b * (tokens_v * cfg.model.video_width + cfg.model.action_horizon * cfg.model.action_width) * cb
        act = outside + lay * inputs + per_layer
    else:
        act = outside + lay * per_layer
    out["activations"] = act
    out["total"] = out["params"] + out["grads"] + out["optimizer"] + out["gathered"] + act
    out["batch_size"], out["latent_shape"] = cfg.data.batch_size, list(latent_shape)
    out["gradient_checkpointing"] = cfg.model.gradient_checkpointing
    return out


def format_estimate(e: dict) -> str:
    lines = [f"per-GPU memory estimate ({e['mode']}, world {e['world']}, batch {e['batch_size']}/GPU, latent "
             f"{'x'.join(map(str, e['latent_shape']))}, gradient checkpointing {e['gradient_checkpointing']})",
             f"  parameters  {e['params_total'] / 1e9:.3f} B (video {e['params_video'] / 1e9:.3f} B, "
             f"action {e['params_action'] / 1e9:.3f} B)"]
    dt = "bf16" if e["param_dtype"] == "bfloat16" else "fp32"
    for k, label in (("params", f"{dt} params"), ("grads", f"{dt} grads"), ("optimizer", "AdamW states"),
                     ("gathered", "gathered params+grads"), ("activations", "activations"), ("total", "total")):
        lines.append(f"  {label:<22} {e[k] / GIB:8.2f} GiB")
    return "\n".join(lines)
