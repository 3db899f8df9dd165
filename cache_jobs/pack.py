"""`wamdata pack`: latent caches -> webdataset tar shards for the trainer (train split + `val/`).

    CACHE [CACHE ...] (zarr, same dims/fps)  --split--> train / val episodes per cache (Fast-WAM's
        val_set_proportion split, cache_jobs.stats.split_episodes)
      --stats over the train episodes of all caches (Fast-WAM's get_dataset_stats by default, per-frame or a
        dataset_stats.json file; cache_jobs.stats)--> normalization (schemas.pack.normalize)
      --shuffle(seed) across episodes and caches-->
    SHARDS/shard-000000.tar ...
      sample  __key__ = "EEEEEE/TTTTTT" (one cache) | "CC_EEEEEE/TTTTTT" (cache CC of several)
              latents.npy        uint16 bf16 bits [48, F_lat, h, w]; [:, 0] = first frame, [:, 1:] future
              actions.npy        float32 [32, A]  delta dims zeroed at padded steps, normalized, clamped
              state.npy          float32 [S]      normalized, clamped to +-clamp
              action_is_pad.npy  bool [32];  frame_is_pad.npy  bool [9]
              prompt.txt         sha256 of the prompt -> text embeddings beside the shards
              sha256             checksum of the sample's members (schemas/checksums.py), checked by the trainer
    SHARDS/text_embeddings.safetensors   {sha256: bf16 [128, D], sha256 + ".mask": bool [128]}  (once)
    SHARDS/pack_meta.json                schemas.pack.PackMeta + {clamp, seed, shards, shard_samples, caches,
                                         split, stats, ...}
    SHARDS/dataset_stats.json            the stats used, in Fast-WAM's format (cache_jobs.stats)
    SHARDS/val/                          the val episodes, a complete pack dir with the same stats (only when
                                         the val proportion is > 0)

Output is written to a temp dir and renamed into place. Tar members carry mtime 0, so the same caches + config
give byte-identical shards.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cache_jobs import stats as ST
from cache_jobs import store as S
from cache_jobs.pack_input import PackInput
from schemas import cache as C
from schemas.checksums import SAMPLE_CHECKSUM, seal_sample
from schemas.errors import SchemaError, WamdataError
from schemas.pack import NORM_MODES, NORM_STATS, PackMeta, normalize

VAL_DIR = C.PACK_VAL_DIR
# Fast-WAM configs/data/libero_2cam.yaml: eef pose deltas (dims 0-5) are zeroed at padded steps, gripper is not
LIBERO_DELTA_MASK = (True, True, True, True, True, True, False)


@dataclass(frozen=True)
class SplitConfig:
    val_proportion: float = 0.0   # Fast-WAM val_set_proportion (its LIBERO config 0.0, RoboTwin 0.01)
    seed: int = 42                # Fast-WAM BaseLerobotDataset's seed (RobotVideoDataset never changes it)

    def __post_init__(self):
        if not 0.0 <= self.val_proportion < 1.0:
            raise SchemaError(f"val_proportion must be in [0, 1), got {self.val_proportion}")


@dataclass(frozen=True)
class StatsConfig:
    mode: str = "fastwam"         # cache_jobs.stats.STATS_MODES; ignored when `file` is given
    file: str | None = None       # a Fast-WAM dataset_stats.json to normalize with (e.g. pretrained_norm_stats)
    key: str = ST.FASTWAM_KEY     # the action/state key inside such a file

    def __post_init__(self):
        if self.mode not in ST.STATS_MODES:
            raise SchemaError(f"stats mode must be one of {ST.STATS_MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class PackConfig:
    seed: int = 0
    normalization: str = "min_max"     # schemas.pack.NORM_MODES; Fast-WAM: LIBERO min/max, RoboTwin mean_std
    clamp: float = 5.0
    maxcount: int = 10_000             # samples per shard
    maxsize: int = 1 << 30             # bytes per shard
    read_block: int = 2048             # rows read from zarr at once
    stats: StatsConfig = field(default_factory=StatsConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    # "auto": LIBERO's mask for a libero-layout 7-D action, else none | "none" | action dims, e.g. "0,1,2,3,4,5"
    delta_action_mask: str = "auto"
    verify_cache: bool = True          # check every cache shard's sha256 (as `wamdata verify`) before reading

    def __post_init__(self):
        if self.normalization not in NORM_MODES:
            raise SchemaError(f"normalization must be one of {NORM_MODES}, got {self.normalization!r}")
        if self.clamp <= 0 or self.maxcount <= 0 or self.maxsize <= 0 or self.read_block <= 0:
            raise SchemaError("clamp, maxcount, maxsize and read_block must be positive")
        if self.delta_action_mask not in ("auto", "none"):
            parts = self.delta_action_mask.split(",")
            if not all(p.strip().isdigit() for p in parts):
                raise SchemaError(f"delta_action_mask must be 'auto', 'none' or action dims like '0,1,2', got "
                                  f"{self.delta_action_mask!r}")


def resolve_delta_mask(spec: str, action_dim: int, layouts: list[str]) -> np.ndarray | None:
    if spec == "none" or (spec == "auto" and (action_dim != 7 or any(n != "libero" for n in layouts))):
        return None
    if spec == "auto":
        return np.asarray(LIBERO_DELTA_MASK)
    dims = sorted({int(p) for p in spec.split(",")})
    if dims[-1] >= action_dim:
        raise SchemaError(f"delta_action_mask dim {dims[-1]} out of range for a {action_dim}-D action")
    mask = np.zeros(action_dim, bool)
    mask[dims] = True
    return mask


def _pick(stats: dict, mode: str, dim: int, which: str, source: str) -> dict[str, list[float]]:
    out = {}
    for name in NORM_STATS[mode]:
        if name not in stats:
            raise SchemaError(f"{source}: {which} stats lack {name!r} needed by {mode!r}")
        if len(stats[name]) != dim:
            raise SchemaError(f"{source}: {which} stats {name!r} have {len(stats[name])} entries, expected {dim}")
        out[name] = [float(v) for v in stats[name]]
    return out


def normalize_clamped(x: np.ndarray, mode: str, stats: dict, clamp: float) -> np.ndarray:
    return np.clip(normalize(x, mode, stats), -clamp, clamp).astype(np.float32)


def zero_padded_deltas(actions: np.ndarray, is_pad: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Fast-WAM FastWAMProcessor.preprocess: masked (delta) dims of padded steps -> 0.0, before normalizing."""
    if mask is None:
        return actions
    out = np.array(actions, np.float32, copy=True)
    out[is_pad[..., :, None] & mask[None, :]] = 0.0
    return out


def _check_compatible(ins: list[PackInput]) -> None:
    a = ins[0]
    for b in ins[1:]:
        for what, x, y in (("action_dim", a.action_dim, b.action_dim), ("state_dim", a.state_dim, b.state_dim),
                           ("latent_shape", a.man["latent_shape"], b.man["latent_shape"]), ("fps", a.fps, b.fps),
                           ("actions", a.g[C.ARR_ACTIONS].shape[1:], b.g[C.ARR_ACTIONS].shape[1:]),
                           ("text", a.g[C.ARR_TEXT_EMB].shape[1:], b.g[C.ARR_TEXT_EMB].shape[1:])):
            if x != y:
                raise WamdataError(f"{b.root}: {what} {y} differs from {a.root}'s {x}; pack caches of the same dims")


def _compute_stats(ins: list[PackInput], train: list[list[int]], cfg: StatsConfig) -> tuple[dict, str]:
    if cfg.file:
        return ST.read_fastwam_json(cfg.file), str(cfg.file)
    if cfg.mode == "dataset":
        if len(ins) > 1 or sorted(train[0]) != ins[0].episodes:
            raise SchemaError("--stats dataset takes one cache without a val split (the dataset's meta/stats.json "
                              "covers all its episodes); use --stats fastwam or frames")
        return ST.from_dataset_stats(ins[0].man["stats"], cfg.key), f"{ins[0].root / C.CACHE_MANIFEST} dataset stats"
    eps = []
    for i, t in zip(ins, train, strict=True):
        for e, a, s in i.episode_arrays(t):
            if cfg.mode == "fastwam" and len(a) < 2:
                raise SchemaError(f"{i.root}: episode {e} has 1 frame: Fast-WAM's unbiased per-episode variance is "
                                  "undefined (NaN stats); use --stats frames or --stats-file")
            eps.append((a, s))
    if cfg.mode == "fastwam":
        return ST.fastwam_stats(eps, int(ins[0].g[C.ARR_ACTIONS].shape[1]), cfg.key), "fastwam stats"
    return ST.frame_stats(eps, cfg.key), "per-frame stats"


def pack(caches: str | Path | list[str | Path], out: str | Path, cfg: PackConfig = PackConfig()) -> dict:
    roots = [caches] if isinstance(caches, (str, Path)) else list(caches)
    if not roots:
        raise WamdataError("pack needs at least one cache")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(f".{out.name}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise WamdataError(f"{out}: another `wamdata pack` is writing it") from e
        if out.exists() and any(out.iterdir()):
            raise WamdataError(f"{out}: exists and is not empty; pack into a new directory")
        return _pack(roots, out, cfg)


def _pack(roots: list[str | Path], out: Path, cfg: PackConfig) -> dict:
    ins = [PackInput(r) for r in roots]
    _check_compatible(ins)
    if cfg.verify_cache:
        for i in ins:
            if not (res := S.verify(i.root))["ok"]:
                raise WamdataError(f"{i.root}: cache failed its checksums ({len(res['errors'])} problem(s), first: "
                                   f"{res['errors'][0]}); rebuild it with `wamdata cache` (`wamdata verify` lists all)")
    splits = [ST.split_episodes(i.episodes, cfg.split.val_proportion, cfg.split.seed) for i in ins]
    ds_stats, source = _compute_stats(ins, [s[0] for s in splits], cfg.stats)
    norm = ST.norm_stats(ds_stats, cfg.stats.key, source)
    A, Sd = ins[0].action_dim, ins[0].state_dim
    a_stats = _pick(norm["action"], cfg.normalization, A, "action", source)
    s_stats = _pick(norm["state"], cfg.normalization, Sd, "state", source)
    mask = resolve_delta_mask(cfg.delta_action_mask, A, [i.layout_name for i in ins])
    hashes = [i.man["config_hash"] for i in ins]
    common = {
        "clamp": cfg.clamp, "seed": cfg.seed, "cache": str(roots[0]) if len(roots) == 1 else [str(r) for r in roots],
        "caches": [{"path": str(i.root), "config_hash": i.man["config_hash"], "train_episodes": s[0],
                    "val_episodes": s[1], "failed_episodes": i.failed} for i, s in zip(ins, splits, strict=True)],
        "val_proportion": cfg.split.val_proportion, "split_seed": cfg.split.seed,
        "stats": {"source": source, "mode": None if cfg.stats.file else cfg.stats.mode, **norm},
        "delta_action_mask": None if mask is None else mask.tolist(), "config": asdict(cfg),
        "sample_keys": {"latents": C.SAMPLE_LATENTS, "actions": C.SAMPLE_ACTIONS, "state": C.SAMPLE_STATE,
                        "action_is_pad": C.SAMPLE_ACTION_IS_PAD, "frame_is_pad": C.SAMPLE_FRAME_IS_PAD,
                        "prompt": C.SAMPLE_PROMPT, "checksum": SAMPLE_CHECKSUM},
        "sample_checksum": "sha256"}
    meta_kw = {"normalization": cfg.normalization, "action_dim": A, "state_dim": Sd,
               "latent_shape": tuple(ins[0].man["latent_shape"]), "text_dim": int(ins[0].g[C.ARR_TEXT_EMB].shape[-1]),
               "config_hash": hashes[0] if len(hashes) == 1 else
               hashlib.sha256(json.dumps(hashes).encode()).hexdigest(),
               "action_stats": a_stats, "state_stats": s_stats,
               "action_horizon": int(ins[0].g[C.ARR_ACTIONS].shape[1]),
               "text_len": int(ins[0].g[C.ARR_TEXT_EMB].shape[1])}
    text = _text_table(ins)

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        parts = [("train", tmp, [s[0] for s in splits])]
        if cfg.split.val_proportion >= 1e-6:
            parts.append(("val", tmp / VAL_DIR, [s[1] for s in splits]))
        res = {}
        for name, d, eps in parts:
            d.mkdir(exist_ok=True)
            shards, n, counts = _write_samples(ins, eps, d, cfg, a_stats, s_stats, mask)
            _write_text(text, d / C.PACK_TEXT)
            ST.write_fastwam_json(ds_stats, d / ST.FASTWAM_STATS_FILE)
            meta = PackMeta(num_samples=n, **meta_kw)
            (d / C.PACK_META).write_text(json.dumps({**meta.to_dict(), **common, "split": name, "shards": shards,
                                                     "shard_samples": counts},
                                                    indent=1))
            res[name] = {"shards": shards, "num_samples": n}
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**res["train"], "out": str(out), **({"val": res["val"]} if "val" in res else {})}


def _write_samples(ins: list[PackInput], episodes: list[list[int]], d: Path, cfg: PackConfig, a_stats: dict,
                   s_stats: dict, mask: np.ndarray | None) -> tuple[list[str], int, dict[str, int]]:
    import webdataset as wds

    per_cache = [i.rows(e) for i, e in zip(ins, episodes, strict=True)]
    src = np.concatenate([np.full(len(r), ci, np.int64) for ci, r in enumerate(per_cache)] or [np.zeros(0, np.int64)])
    rows = np.concatenate(per_cache or [np.zeros(0, np.int64)])
    perm = np.random.default_rng(cfg.seed).permutation(len(rows))
    src, rows = src[perm], rows[perm]
    keys = [list(i.g[C.ARR_TEXT_KEYS][:]) for i in ins]
    names = (C.ARR_LATENTS, C.ARR_ACTIONS, C.ARR_STATE, C.ARR_ACTION_IS_PAD, C.ARR_FRAME_IS_PAD, C.ARR_EPISODE,
             C.ARR_T, C.ARR_PROMPT)
    counts: dict[str, int] = {}
    with wds.ShardWriter(str(d / C.SHARD_PATTERN), maxcount=cfg.maxcount, maxsize=cfg.maxsize, verbose=0,
                         mtime=0.0) as w:
        for b0 in range(0, len(rows), cfg.read_block):
            bsrc, brow = src[b0:b0 + cfg.read_block], rows[b0:b0 + cfg.read_block]
            data = {}
            for ci in np.unique(bsrc):
                srt = np.sort(brow[bsrc == ci])
                arr = {n: ins[ci].g[n].get_orthogonal_selection((srt,)) for n in names}
                acts = zero_padded_deltas(arr[C.ARR_ACTIONS], arr[C.ARR_ACTION_IS_PAD], mask)
                arr[C.ARR_ACTIONS] = normalize_clamped(acts, cfg.normalization, a_stats, cfg.clamp)
                arr[C.ARR_STATE] = normalize_clamped(arr[C.ARR_STATE], cfg.normalization, s_stats, cfg.clamp)
                data[int(ci)] = (srt, arr)
            for ci, r in zip(bsrc.tolist(), brow.tolist(), strict=True):
                srt, arr = data[ci]
                p = int(np.searchsorted(srt, r))
                e, t = int(arr[C.ARR_EPISODE][p]), int(arr[C.ARR_T][p])
                w.write(seal_sample({
                    "__key__": C.sample_key(e, t) if len(ins) == 1 else f"{ci:02d}_{C.sample_key(e, t)}",
                    C.SAMPLE_LATENTS: arr[C.ARR_LATENTS][p],
                    C.SAMPLE_ACTIONS: arr[C.ARR_ACTIONS][p],
                    C.SAMPLE_STATE: arr[C.ARR_STATE][p],
                    C.SAMPLE_ACTION_IS_PAD: arr[C.ARR_ACTION_IS_PAD][p],
                    C.SAMPLE_FRAME_IS_PAD: arr[C.ARR_FRAME_IS_PAD][p],
                    C.SAMPLE_PROMPT: keys[ci][int(arr[C.ARR_PROMPT][p])],
                }))
                counts[Path(w.fname).name] = w.count
    return sorted(p.name for p in d.glob("*.tar")), len(rows), counts


def _text_table(ins: list[PackInput]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """sha256 key -> (bf16 bits [L, D], mask [L]) over all caches; a prompt cached twice must agree."""
    table: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i in ins:
        emb, mask = i.g[C.ARR_TEXT_EMB][:], i.g[C.ARR_TEXT_MASK][:]
        for j, k in enumerate(i.g[C.ARR_TEXT_KEYS][:]):
            if k in table and not (np.array_equal(table[k][0], emb[j]) and np.array_equal(table[k][1], mask[j])):
                raise WamdataError(f"{i.root}: prompt {k[:12]}… has other text embeddings than in an earlier cache "
                                   "(different text encoder?)")
            table.setdefault(str(k), (emb[j], mask[j]))
    return table


def _write_text(table: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from cache_jobs.models import from_bf16_bits

    tensors = {}
    for k, (emb, mask) in table.items():
        tensors[k] = from_bf16_bits(emb).clone()
        tensors[k + ".mask"] = torch.from_numpy(np.ascontiguousarray(mask))
    save_file(tensors, str(path))
