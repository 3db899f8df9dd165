"""Validation on SHARDS/val (a complete `wamdata pack` dir: shards, pack_meta.json, text_embeddings).

    first `val_max_samples` samples of the val split (file order), split over ranks by index mod world
      flow losses   WAM.loss with noise/sigmas drawn per sample from seed (VAL_SEED + sample index)
      action MSE    WAM.sample_actions (num_inference_steps Euler steps, open loop), un-normalized with the
                    val pack_meta stats, squared error over non-pad steps, in raw action units
    -> {"split": "val", "step", "val_loss", "val_loss_action", "val_loss_video", "val_action_mse_raw",
        "val_samples"}   (one record, the same on any number of processes)
Every rank runs the same number of forwards (short ranks repeat sample 0 with weight 0): FSDP needs it.
"""

from __future__ import annotations

from contextlib import nullcontext
from itertools import islice
from pathlib import Path

import torch
import torch.distributed as dist

from fastwam_train.config import DataConfig
from fastwam_train.data import PackedShards
from schemas.cache import PACK_META, PACK_VAL_DIR
from schemas.errors import WamdataError
from schemas.pack import unnormalize

VAL_DIR, VAL_SEED = PACK_VAL_DIR, 2_000_003


def val_dir(shards: Path) -> Path | None:
    d = Path(shards) / VAL_DIR
    return d if (d / PACK_META).is_file() else None


class Validator:
    def __init__(self, root: Path, max_samples: int, rank: int, world: int):
        self.data = PackedShards(root, DataConfig(batch_size=1, shuffle_buffer=0, prefetch=0))
        self.raw = list(islice(self.data.raw_epoch(0), max_samples))
        if not self.raw:     # e.g. every val episode failed at cache time: refuse now, not at the first val step
            raise WamdataError(f"{root}: the val split holds no samples; re-pack with other --val-proportion / "
                               "--split-seed, or set loop.val_every to 0")
        self.rank, self.world = rank, world
        self.mine = list(range(rank, len(self.raw), world))
        self.rounds = -(-len(self.raw) // world)

    @torch.no_grad()
    def run(self, model, step: int, device: torch.device, bf16: bool) -> dict:
        meta = self.data.meta
        was_training, dtype = model.training, next(model.parameters()).dtype
        model.eval()
        sums = torch.zeros(5, dtype=torch.float64)  # loss, loss_action, loss_video, sq err sum, n valid
        for r in range(self.rounds):
            idx, w = (self.mine[r], 1.0) if r < len(self.mine) else (0, 0.0)
            s = self.data.decode(self.raw[idx])
            batch = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if torch.is_tensor(v) else v
                     for k, v in PackedShards.collate([s]).items()}
            rnd = model.draw(batch, torch.Generator().manual_seed(VAL_SEED + idx))
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
            with ctx:
                _, terms = model(batch, rnd)
                pred = model.sample_actions(batch, torch.Generator().manual_seed(VAL_SEED + idx))
            pred = unnormalize(pred.float().cpu().numpy()[0], meta.normalization, meta.action_stats)
            gt = unnormalize(s["actions"].numpy(), meta.normalization, meta.action_stats)
            valid = ~s["action_is_pad"].numpy()
            err = float(((pred - gt) ** 2)[valid].sum())
            sums += w * torch.tensor([float(terms["loss"]), float(terms["loss_action"]),
                                      float(terms.get("loss_video", torch.tensor(0.0))), err,
                                      float(valid.sum() * pred.shape[-1])], dtype=torch.float64)
        if self.world > 1:
            red = sums.to(device)
            dist.all_reduce(red)
            sums = red.cpu()
        model.train(was_training)
        n = len(self.raw)
        rec = {"split": "val", "step": step, "val_loss": float(sums[0]) / n, "val_loss_action": float(sums[1]) / n}
        if model.variant != "novideo":
            rec["val_loss_video"] = float(sums[2]) / n
        rec["val_action_mse_raw"] = float(sums[3] / sums[4]) if sums[4] > 0 else float("nan")
        rec["val_samples"] = n
        return rec

