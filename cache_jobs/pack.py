"""`wamdata pack`: latent cache -> webdataset tar shards for the trainer.

    CACHE (zarr, valid rows)  --shuffle(seed) across episodes-->  SHARDS/shard-000000.tar ...
      sample  __key__ = "EEEEEE/TTTTTT" (schemas.cache.sample_key)
              latents.npy        uint16 bf16 bits [48, F_lat, h, w]; [:, 0] = first frame, [:, 1:] future
              actions.npy        float32 [32, A]  normalized, clamped to +-clamp
              state.npy          float32 [S]      normalized, clamped to +-clamp
              action_is_pad.npy  bool [32];  frame_is_pad.npy  bool [9]
              prompt.txt         sha256 of the prompt -> text embeddings beside the shards
              sha256             checksum of the sample's members (schemas/checksums.py), checked by the trainer
    SHARDS/text_embeddings.safetensors   {sha256: bf16 [128, D], sha256 + ".mask": bool [128]}  (once)
    SHARDS/pack_meta.json                schemas.pack.PackMeta + {clamp, seed, shards, cache, shard_samples}

Normalization uses the dataset stats recorded in the cache manifest and `schemas.pack.normalize` (the one
definition the trainer's unnormalize mirrors). Output is written to a temp dir and renamed into place.
Tar members carry mtime 0, so the same cache + seed gives byte-identical shards.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from cache_jobs import store as S
from schemas import cache as C
from schemas.checksums import SAMPLE_CHECKSUM, seal_sample
from schemas.errors import SchemaError, WamdataError
from schemas.pack import NORM_MODES, NORM_STATS, PackMeta, normalize


@dataclass(frozen=True)
class PackConfig:
    seed: int = 0
    normalization: str = "min_max"     # schemas.pack.NORM_MODES; Fast-WAM: LIBERO min/max, RoboTwin mean_std
    clamp: float = 5.0
    maxcount: int = 10_000             # samples per shard
    maxsize: int = 1 << 30             # bytes per shard
    read_block: int = 2048             # rows read from zarr at once
    verify_cache: bool = True          # check every cache shard's sha256 (as `wamdata verify`) before reading

    def __post_init__(self):
        if self.normalization not in NORM_MODES:
            raise SchemaError(f"normalization must be one of {NORM_MODES}, got {self.normalization!r}")
        if self.clamp <= 0 or self.maxcount <= 0 or self.maxsize <= 0 or self.read_block <= 0:
            raise SchemaError("clamp, maxcount, maxsize and read_block must be positive")


def _stats_for(man: dict, which: str, mode: str, dim: int) -> dict[str, list[float]]:
    st = man["stats"].get(which, {})
    out = {}
    for name in NORM_STATS[mode]:
        if name not in st:
            raise SchemaError(f"cache manifest: dataset stats for {which!r} lack {name!r} needed by {mode!r}")
        if len(st[name]) != dim:
            raise SchemaError(f"cache manifest: stats[{which!r}][{name!r}] has {len(st[name])} entries, "
                              f"expected {dim}")
        out[name] = [float(v) for v in st[name]]
    return out


def normalize_clamped(x: np.ndarray, mode: str, stats: dict, clamp: float) -> np.ndarray:
    return np.clip(normalize(x, mode, stats), -clamp, clamp).astype(np.float32)


def pack(cache: str | Path, out: str | Path, cfg: PackConfig = PackConfig()) -> dict:
    import webdataset as wds

    cache, out = Path(cache), Path(out)
    if not (cache / C.CACHE_MANIFEST).is_file():
        raise WamdataError(f"{cache}: no {C.CACHE_MANIFEST}; not a `wamdata cache` output")
    man = json.loads((cache / C.CACHE_MANIFEST).read_text())
    if man.get("status") != "complete":
        raise WamdataError(f"{cache}: cache is not complete; finish `wamdata cache` first")
    if out.exists() and any(out.iterdir()):
        raise WamdataError(f"{out}: exists and is not empty; pack into a new directory")
    if cfg.verify_cache and not (res := S.verify(cache))["ok"]:
        raise WamdataError(f"{cache}: cache failed its checksums ({len(res['errors'])} problem(s), first: "
                           f"{res['errors'][0]}); rebuild it with `wamdata cache` (`wamdata verify` lists all)")
    g = zarr.open_group(str(cache), mode="r")
    A, Sd = int(man["action_dim"]), int(man["state_dim"])
    a_stats = _stats_for(man, "action", cfg.normalization, A)
    s_stats = _stats_for(man, "state", cfg.normalization, Sd)
    rows = np.flatnonzero(g[S.ARR_VALID][:])
    order = rows[np.random.default_rng(cfg.seed).permutation(len(rows))]
    keys = list(g[C.ARR_TEXT_KEYS][:])

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names, counts = {}, {}
    with wds.ShardWriter(str(tmp / C.SHARD_PATTERN), maxcount=cfg.maxcount, maxsize=cfg.maxsize, verbose=0,
                         mtime=0.0) as w:
        for b0 in range(0, len(order), cfg.read_block):
            block = order[b0:b0 + cfg.read_block]
            srt = np.sort(block)
            data = {name: g[name].get_orthogonal_selection((srt,)) for name in (
                C.ARR_LATENTS, C.ARR_ACTIONS, C.ARR_STATE, C.ARR_ACTION_IS_PAD, C.ARR_FRAME_IS_PAD,
                C.ARR_EPISODE, C.ARR_T, C.ARR_PROMPT)}
            pos = np.searchsorted(srt, block)
            acts = normalize_clamped(data[C.ARR_ACTIONS][pos], cfg.normalization, a_stats, cfg.clamp)
            sts = normalize_clamped(data[C.ARR_STATE][pos], cfg.normalization, s_stats, cfg.clamp)
            for j, p in enumerate(pos):
                w.write(seal_sample({
                    "__key__": C.sample_key(int(data[C.ARR_EPISODE][p]), int(data[C.ARR_T][p])),
                    C.SAMPLE_LATENTS: data[C.ARR_LATENTS][p],
                    C.SAMPLE_ACTIONS: acts[j],
                    C.SAMPLE_STATE: sts[j],
                    C.SAMPLE_ACTION_IS_PAD: data[C.ARR_ACTION_IS_PAD][p],
                    C.SAMPLE_FRAME_IS_PAD: data[C.ARR_FRAME_IS_PAD][p],
                    C.SAMPLE_PROMPT: keys[int(data[C.ARR_PROMPT][p])],
                }))
                counts[Path(w.fname).name] = w.count
        names = sorted(p.name for p in tmp.glob("*.tar"))
    _write_text(g, keys, tmp / C.PACK_TEXT)
    meta = PackMeta(normalization=cfg.normalization, action_dim=A, state_dim=Sd,
                    latent_shape=tuple(man["latent_shape"]), text_dim=int(g[C.ARR_TEXT_EMB].shape[-1]),
                    num_samples=len(order), config_hash=man["config_hash"], action_stats=a_stats,
                    state_stats=s_stats, action_horizon=int(g[C.ARR_ACTIONS].shape[1]),
                    text_len=int(g[C.ARR_TEXT_EMB].shape[1]))
    full = {**meta.to_dict(), "clamp": cfg.clamp, "seed": cfg.seed, "shards": names, "cache": str(cache),
            "sample_keys": {"latents": C.SAMPLE_LATENTS, "actions": C.SAMPLE_ACTIONS, "state": C.SAMPLE_STATE,
                            "action_is_pad": C.SAMPLE_ACTION_IS_PAD, "frame_is_pad": C.SAMPLE_FRAME_IS_PAD,
                            "prompt": C.SAMPLE_PROMPT, "checksum": SAMPLE_CHECKSUM},
            "sample_checksum": "sha256", "shard_samples": counts}
    (tmp / C.PACK_META).write_text(json.dumps(full, indent=1))
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return {"shards": names, "num_samples": len(order), "out": str(out)}


def _write_text(g: zarr.Group, keys: list[str], path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from cache_jobs.models import from_bf16_bits

    emb, mask = g[C.ARR_TEXT_EMB][:], g[C.ARR_TEXT_MASK][:]
    tensors = {}
    for i, k in enumerate(keys):
        tensors[k] = from_bf16_bits(emb[i]).clone()
        tensors[k + ".mask"] = torch.from_numpy(np.ascontiguousarray(mask[i]))
    save_file(tensors, str(path))
