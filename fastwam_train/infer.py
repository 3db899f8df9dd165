"""Inference from a run, and the latency harness of the four variants.

    RUN (config.json, checkpoint.pt, pack_meta.json) + observation batch
      (first latent frame [B,48,1,h,w], context [B,L,D], state [B,S] normalized)
      --WAM.sample_actions (10 Euler steps, CFG 1.0)--> [B,32,A] normalized --unnormalize--> raw units
    latency: ms per chunk for fastwam / joint / idm / novideo at one config, ratios to fastwam
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fastwam_train.config import VARIANTS, DataConfig, TrainConfig
from fastwam_train.data import PackedShards
from fastwam_train.loop import CONFIG_FILE
from fastwam_train.parallel import find_checkpoint, load_checkpoint
from fastwam_train.wam import WAM
from schemas.cache import PACK_META
from schemas.errors import WamdataError
from schemas.pack import PackMeta, unnormalize


def pick_device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def load_run(run: str | Path, device: torch.device | str = "cpu") -> tuple[WAM, TrainConfig, PackMeta]:
    """A run's model (plain, unsharded, from its sharded checkpoint: checksums checked first)."""
    run = Path(run)
    for f in (CONFIG_FILE, PACK_META):
        if not (run / f).is_file():
            raise WamdataError(f"{run}: not a training run (missing {f})")
    ck = find_checkpoint(run)
    if ck is None:
        raise WamdataError(f"{run}: not a training run (no checkpoint)")
    cfg = TrainConfig.load(run / CONFIG_FILE)
    meta = PackMeta.load(run / PACK_META)
    model = WAM(cfg.model, cfg.objective)
    load_checkpoint(ck, model)
    return model.to(device).eval(), cfg, meta


def import_official_run(checkpoint: str | Path, shards: str | Path, run: str | Path, cfg: TrainConfig) -> int:
    """A new run at step 0 holding a Fast-WAM weights checkpoint; returns the checkpoint's own step."""
    import shutil

    from fastwam_train.loop import build_optim, resolve_config
    from fastwam_train.official import load_official
    from fastwam_train.parallel import save_checkpoint

    run, shards = Path(run), Path(shards)
    if find_checkpoint(run) is not None:
        raise WamdataError(f"{run} already holds a checkpoint; choose a new RUN")
    cfg = resolve_config(replace(cfg, model=replace(cfg.model, wan_dir=None, action_backbone=None,
                                                    init_checkpoint=None)), PackMeta.load(shards / PACK_META))
    model = WAM(cfg.model, cfg.objective)
    step = load_official(model, checkpoint)
    opt, sched = build_optim(model, cfg)
    run.mkdir(parents=True, exist_ok=True)
    cfg.save(run / CONFIG_FILE)
    shutil.copyfile(shards / PACK_META, run / PACK_META)
    state = {"step": 0, "position": [0, 0], "generator": torch.Generator().manual_seed(cfg.loop.seed * 1000)
             .get_state(), "torch_rng": torch.get_rng_state(), "scheduler": sched.state_dict(), "world": 1}
    save_checkpoint(run, model, opt, state, 0, 1)
    return step


def predict_raw(model: WAM, meta: PackMeta, batch: dict, seed: int = 0) -> np.ndarray:
    """Action chunk in raw action units, [B, 32, A]."""
    dev = next(model.parameters()).device
    batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}
    use_bf16 = dev.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
        act = model.sample_actions(batch, torch.Generator().manual_seed(seed))
    return unnormalize(act.float().cpu().numpy(), meta.normalization, meta.action_stats)


def predict_shards(run: str | Path, shards: str | Path, n: int = 4, seed: int = 0,
                   device: str = "auto") -> dict:
    """Predict the first `n` samples of SHARDS (file order); raw-unit predictions and ground truth."""
    model, cfg, meta = load_run(run, pick_device(device))
    data = PackedShards(shards, DataConfig(batch_size=1, shuffle_buffer=0, prefetch=0))
    if data.meta.action_dim != meta.action_dim or data.meta.normalization != meta.normalization:
        raise WamdataError(f"{shards}: pack_meta does not match the run's (action_dim/normalization)")
    keys, preds, gts, pads = [], [], [], []
    for raw, _ in zip(data.raw_epoch(0), range(n), strict=False):
        s = data.decode(raw)
        batch = PackedShards.collate([s])
        preds.append(predict_raw(model, meta, batch, seed)[0])
        keys.append(s["key"])
        gts.append(unnormalize(s["actions"].numpy(), meta.normalization, meta.action_stats))
        pads.append(s["action_is_pad"].numpy())
    pred, gt, pad = np.stack(preds), np.stack(gts), np.stack(pads)
    valid = ~pad[..., None].repeat(pred.shape[-1], -1)
    mse = float(((pred - gt) ** 2)[valid].mean()) if valid.any() else float("nan")
    return {"keys": keys, "pred": pred, "gt": gt, "mse_raw": mse, "variant": cfg.model.variant}


def _dummy_batch(cfg: TrainConfig, latent: tuple[int, int, int], b: int, device) -> dict:
    m = cfg.model
    f, h, w = latent
    g = torch.Generator().manual_seed(0)
    return {"latents": torch.randn(b, m.in_channels, f, h, w, generator=g).to(device),
            "context": torch.randn(b, 128, m.text_dim, generator=g).to(device),
            "state": torch.randn(b, max(m.state_dim, 1), generator=g).to(device)}


def latency(cfg: TrainConfig, latent: tuple[int, int, int] = (3, 14, 28), batch: int = 1, repeats: int = 3,
            warmup: int = 1, device: str = "auto", variants=VARIANTS) -> dict[str, float]:
    """Milliseconds per action chunk for each variant (same widths, depths, inputs; random weights;
    bf16 autocast on CUDA, fp32 on CPU); the median of `repeats` after `warmup` runs."""
    dev = pick_device(device)
    m = cfg.model
    m = replace(m, action_dim=m.action_dim or 14, state_dim=m.state_dim or 14, wan_dir=None, action_init="random")
    out = {}
    for v in variants:
        torch.manual_seed(0)
        model = WAM(replace(m, variant=v), cfg.objective).to(dev).eval()
        b = _dummy_batch(replace(cfg, model=m), latent, batch, dev)
        times = []
        for i in range(warmup + repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                model.sample_actions(b, torch.Generator().manual_seed(i))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out[v] = 1000 * float(np.median(times))
        del model
    return out


def format_latency(ms: dict[str, float]) -> str:
    base = ms.get("fastwam")
    lines = [f"{'variant':<9} {'ms/chunk':>10} {'x fastwam':>10}"]
    for v, t in ms.items():
        lines.append(f"{v:<9} {t:>10.2f} {t / base if base else float('nan'):>10.2f}")
    return "\n".join(lines)
