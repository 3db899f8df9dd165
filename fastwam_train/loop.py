"""`wamdata train`: the co-training loop on packed latents (one process, or torchrun: FSDP2 / DDP).

    SHARDS (wamdata pack) --PackedShards--> batches --WAM.loss--> AdamW / cosine+warmup / clip
    SHARDS/val (optional)  --Validator--> flow losses + open-loop action MSE (raw units) every val_every
    RUN/config.json        resolved TrainConfig (action/state dims filled from pack_meta)
    RUN/pack_meta.json     copy of the shards' meta (predict un-normalizes with it)
    RUN/checkpoint/        sharded DCP model + optimizer, trainer_state.pt (step, global data position,
                           generator, scheduler), SHA256SUMS checked before loading (parallel.py)
    RUN/train_log.jsonl    per step: loss terms, lr, grad norm, samples/s, data-wait fraction;
                           {"split": "val", ...} records beside them
The global batch is batch_size x world; its samples and noise do not depend on the number of processes,
so a checkpoint resumes on another world size (batch_size x world kept) and continues the same run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from fastwam_train.config import TrainConfig
from fastwam_train.data import PackedShards
from fastwam_train.parallel import (
    CKPT_DIR,
    barrier,
    find_checkpoint,
    grad_norm_value,
    init_dist,
    load_checkpoint,
    save_checkpoint,
    wrap,
)
from fastwam_train.validate import Validator, val_dir
from fastwam_train.wam import WAM
from schemas.cache import PACK_META
from schemas.errors import WamdataError
from schemas.pack import PackMeta

CONFIG_FILE, LOG_FILE = "config.json", "train_log.jsonl"


def resolve_config(cfg: TrainConfig, meta: PackMeta) -> TrainConfig:
    """Fill action/state dims from pack_meta; refuse a config that contradicts the shards."""
    m = cfg.model
    for name, have in (("action_dim", meta.action_dim), ("state_dim", meta.state_dim),
                       ("action_horizon", meta.action_horizon), ("in_channels", meta.latent_shape[0]),
                       ("text_dim", meta.text_dim)):
        want = getattr(m, name)
        if name in ("action_dim", "state_dim", "text_dim") and want == 0:
            m = replace(m, **{name: have})
        elif want != have:
            raise WamdataError(f"config model.{name}={want} but pack_meta.json says {have}")
    return replace(cfg, model=m)


def lr_factor(step: int, total: int, warmup_frac: float, min_ratio: float) -> float:
    warm = int(round(warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    prog = (step - warm) / max(1, total - warm)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0)))


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    want = cfg.loop.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_optim(model: torch.nn.Module, cfg: TrainConfig):
    o = cfg.optim
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.loop.steps, o.warmup_frac, o.min_lr_ratio))
    return opt, sched


def _check_resume(run: Path, cfg: TrainConfig, resume: bool) -> Path | None:
    ck = find_checkpoint(run)
    if resume and ck is None:
        raise WamdataError(f"{run}: --resume given but there is no checkpoint")
    if not resume and (ck is not None or (run / (CKPT_DIR + ".tmp")).exists()):
        raise WamdataError(f"{run} already holds a checkpoint; pass --resume or choose a new RUN")
    if resume:
        old = TrainConfig.load(run / CONFIG_FILE)
        if old.model != cfg.model or old.objective != cfg.objective:
            raise WamdataError(f"{run}: model/objective config differs from the run being resumed")
    return ck


def train(shards: str | Path, run: str | Path, cfg: TrainConfig, resume: bool = False,
          stop_at: int | None = None) -> list[dict]:
    """Train to `cfg.loop.steps` (the schedule length), or stop early after step `stop_at` with a
    checkpoint (an interrupted run); returns the log records written by this call (rank 0)."""
    rank, world, local_rank = init_dist()
    run, shards = Path(run), Path(shards)
    data = PackedShards(shards, cfg.data, rank, world)
    cfg = resolve_config(cfg, data.meta)
    ck_dir = _check_resume(run, cfg, resume)
    device = _device(cfg, local_rank)
    torch.manual_seed(cfg.loop.seed)
    stored = getattr(torch, cfg.loop.param_dtype)
    model = WAM.build(cfg.model, cfg.objective).to(device, stored)
    use_bf16 = cfg.loop.bf16 and device.type == "cuda" and stored == torch.float32
    fsdp = world > 1 and cfg.loop.parallel == "fsdp"
    net = wrap(model, cfg.loop.parallel, world, device, bf16=use_bf16)
    opt, sched = build_optim(model, cfg)
    gen = torch.Generator().manual_seed(cfg.loop.seed * 1000)
    step, position = 0, (0, 0)
    if resume:
        st = load_checkpoint(ck_dir, model, opt, rank, world)
        sched.load_state_dict(st["scheduler"])
        step, position = st["step"], tuple(st["position"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        cfg.save(run / CONFIG_FILE)
        shutil.copyfile(shards / PACK_META, run / PACK_META)
        _trim_log(run / LOG_FILE, step)
    vdir = val_dir(shards) if cfg.loop.val_every else None
    validator = Validator(vdir, cfg.loop.val_max_samples, rank, world) if vdir else None
    autocast = use_bf16 and not fsdp  # FSDP2 computes in bf16 through its MixedPrecisionPolicy
    records, it = [], data.batches(position)
    win_t, win_wait, win_n = 0.0, 0.0, 0
    model.train()
    end = cfg.loop.steps if stop_at is None else min(stop_at, cfg.loop.steps)
    while step < end:
        t0 = time.perf_counter()
        batch, position = next(it)
        t1 = time.perf_counter()
        batch = {k: (v.to(device, stored, non_blocking=True) if v.is_floating_point() else v.to(device))
                 if torch.is_tensor(v) else v for k, v in batch.items()}
        rnd = model.draw(batch, gen, rank, world)
        with torch.autocast("cuda", dtype=torch.bfloat16) if autocast else nullcontext():
            loss, terms = net(batch, rnd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        win_t, win_wait, win_n = win_t + t2 - t0, win_wait + t1 - t0, win_n + 1
        if step % cfg.loop.log_every == 0 or step == end:
            rec = {"step": step, **{k: _mean_across(v.detach(), world) for k, v in terms.items()}, "lr": lr,
                   "grad_norm": grad_norm_value(gnorm),
                   "samples_per_s": win_n * cfg.data.batch_size * world / win_t, "data_wait_frac": win_wait / win_t}
            win_t, win_wait, win_n = 0.0, 0.0, 0
            _log(run, rec, rank, records)
        if validator is not None and (step % cfg.loop.val_every == 0 or step == end):
            _log(run, validator.run(model, step, device, autocast), rank, records)
        if step % cfg.loop.ckpt_every == 0 or step == end:
            state = {"step": step, "position": list(position), "generator": gen.get_state(),
                     "torch_rng": torch.get_rng_state(), "scheduler": sched.state_dict(), "world": world}
            save_checkpoint(run, model, opt, state, rank, world)
    barrier(world)
    return records


def _log(run: Path, rec: dict, rank: int, records: list) -> None:
    if rank == 0:
        records.append(rec)
        with open(run / LOG_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")


def _mean_across(v: torch.Tensor, world: int) -> float:
    if world > 1:
        v = v.clone()
        dist.all_reduce(v)
        v = v / world
    return float(v)


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint being resumed (a crash after it left them behind)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)
