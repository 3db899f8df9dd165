"""Normalization statistics for `wamdata pack`, and Fast-WAM's `dataset_stats.json` both ways.

    episodes [(action (T, A) float32, state (T, S) float32), ...]   train episodes of every packed cache
      --fastwam_stats-->  Fast-WAM's BaseLerobotDataset.get_dataset_stats, exactly:
            per episode: action windows (T, 32, A) (window t = actions t..t+31, the last action repeated past the
            end, as its sliding_window_with_replication), state (T, 1, S); over the T windows: min, max, mean,
            unbiased var, torch.quantile 0.01 / 0.99 -> (32, A) / (1, S)
            stepwise_{min,max} = min/max over episodes; stepwise_q01/q99 = min/max over episodes of the
            per-episode quantiles; stepwise_mean = mean over episodes (each episode weighs the same);
            stepwise_std = sqrt(mean_e(var_e + (mean_e - stepwise_mean)^2)); global_* = the same over
            episodes and steps (global_q01 = min over steps of stepwise_q01, ...), all float32 torch
      --frame_stats-->    per-frame stats of the raw frames (min, max, mean, population std, exact
            quantiles q01/q99), float64: every frame counted once, long episodes weigh more
    -> {"action": {min, max, mean, std, q01, q99}, "state": {...}}  (what schemas.pack normalizes with)
    dataset_stats.json = {"state": {KEY: {stepwise_*: ..., global_*: ...}}, "action": {KEY: ...},
                          "num_episodes": E, "num_transition": N}   (Fast-WAM's save_dataset_stats_to_json)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from schemas.errors import SchemaError

STATS_MODES = ("fastwam", "frames", "dataset")   # dataset: the source dataset's meta/stats.json
NAMES = ("min", "max", "mean", "std", "q01", "q99")
FASTWAM_KEY = "default"            # Fast-WAM's shape_meta key for a single action/state field
FASTWAM_STATS_FILE = "dataset_stats.json"
FASTWAM_ORDER = ("stepwise_min", "stepwise_max", "global_min", "global_max", "stepwise_q01", "stepwise_q99",
                 "global_q01", "global_q99", "stepwise_mean", "stepwise_std", "global_mean", "global_std")


def _check(episodes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    if not episodes:
        raise SchemaError("no episodes to compute normalization statistics from")
    for i, (a, s) in enumerate(episodes):
        if a.ndim != 2 or s.ndim != 2 or len(a) != len(s) or len(a) == 0:
            raise SchemaError(f"episode {i}: action {a.shape} / state {s.shape} must be (T, A) / (T, S), T > 0")


def _field(per_episode: list[dict]) -> dict:
    """Fast-WAM's aggregation of per-episode (steps, D) stats into stepwise_* (steps, D) and global_* (D,)."""
    import torch

    st = {k: torch.stack([e[k] for e in per_episode]) for k in ("min", "max", "mean", "var", "q01", "q99")}
    out = {"stepwise_min": st["min"].amin(0), "stepwise_max": st["max"].amax(0)}
    out["global_min"], out["global_max"] = out["stepwise_min"].amin(0), out["stepwise_max"].amax(0)
    out["stepwise_q01"], out["stepwise_q99"] = st["q01"].amin(0), st["q99"].amax(0)
    out["global_q01"], out["global_q99"] = out["stepwise_q01"].amin(0), out["stepwise_q99"].amax(0)
    means, var = st["mean"], st["var"]
    out["stepwise_mean"] = means.mean(0)
    out["stepwise_std"] = (var + (means - out["stepwise_mean"]) ** 2).mean(0).sqrt()
    out["global_mean"] = means.mean((0, 1))
    out["global_std"] = (var + (means - out["global_mean"]) ** 2).mean((0, 1)).sqrt()
    return {k: out[k] for k in FASTWAM_ORDER}


def _episode(x) -> dict:
    import torch

    return {"min": x.amin(0), "max": x.amax(0), "mean": x.mean(0), "var": x.var(0),
            "q01": torch.quantile(x, 0.01, dim=0), "q99": torch.quantile(x, 0.99, dim=0)}


def fastwam_stats(episodes: list[tuple[np.ndarray, np.ndarray]], horizon: int = 32, key: str = FASTWAM_KEY
                  ) -> dict:
    """Fast-WAM's dataset_stats dict (float32 numpy arrays) of these episodes."""
    import torch

    _check(episodes)
    acts, states = [], []
    for i, (a, s) in enumerate(episodes):
        T = len(a)
        if T < 2:
            raise SchemaError(f"episode {i} has 1 frame: Fast-WAM's unbiased per-episode variance is undefined "
                              "(NaN stats); drop the episode or use --stats frames")
        a_t = torch.from_numpy(np.array(a, np.float32))            # a copy: reader arrays may be read-only
        idx = (torch.arange(T)[:, None] + torch.arange(horizon)[None, :]).clamp(0, T - 1)
        acts.append(_episode(a_t[idx]))                                     # (T, horizon, A)
        states.append(_episode(torch.from_numpy(np.array(s, np.float32))[:, None]))      # (T, 1, S)
    to_np = {k: v.numpy() for k, v in _field(states).items()}, {k: v.numpy() for k, v in _field(acts).items()}
    return {"state": {key: to_np[0]}, "action": {key: to_np[1]}, "num_episodes": len(episodes),
            "num_transition": int(sum(len(a) for a, _ in episodes))}


def frame_stats(episodes: list[tuple[np.ndarray, np.ndarray]], key: str = FASTWAM_KEY) -> dict:
    """Per-frame stats in the same dict layout (global_* only, float64)."""
    _check(episodes)
    out: dict = {"num_episodes": len(episodes), "num_transition": int(sum(len(a) for a, _ in episodes))}
    for which, col in (("state", 1), ("action", 0)):
        x = np.concatenate([ep[col] for ep in episodes]).astype(np.float64)
        q = np.quantile(x, [0.01, 0.99], axis=0)
        out[which] = {key: {"global_min": x.min(0), "global_max": x.max(0), "global_q01": q[0],
                            "global_q99": q[1], "global_mean": x.mean(0), "global_std": x.std(0)}}
    return out


def from_dataset_stats(man_stats: dict, key: str = FASTWAM_KEY) -> dict:
    """A cache manifest's copy of the source dataset's meta/stats.json (per frame, every episode) in the same
    dict layout (global_* only)."""
    return {which: {key: {f"global_{n}": np.asarray(v, np.float64) for n, v in man_stats.get(which, {}).items()
                          if n in NAMES}} for which in ("state", "action")}


def norm_stats(ds_stats: dict, key: str = FASTWAM_KEY, source: str = "dataset stats") -> dict[str, dict]:
    """Fast-WAM dataset_stats dict -> {"action"|"state": {stat: [D floats]}} from its global_* entries (what its
    LinearNormalizer uses with use_stepwise_action_norm False, both shipped configs)."""
    out = {}
    for which in ("action", "state"):
        fields = ds_stats.get(which)
        if not isinstance(fields, dict) or key not in fields:
            raise SchemaError(f"{source}: no {which!r} stats for key {key!r} (has "
                              f"{sorted(fields) if isinstance(fields, dict) else 'none'})")
        out[which] = {n: np.asarray(fields[key][f"global_{n}"], np.float64).reshape(-1).tolist()
                      for n in NAMES if f"global_{n}" in fields[key]}
    return out


def to_json(ds_stats: dict) -> dict:
    """Arrays -> lists, as Fast-WAM's save_dataset_stats_to_json writes them (float32 values stay exact)."""
    def conv(o):
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        return o
    return conv(ds_stats)


def write_fastwam_json(ds_stats: dict, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(to_json(ds_stats), f, ensure_ascii=False, indent=2)
    os.replace(tmp, path)


def read_fastwam_json(path: str | Path) -> dict:
    """Load a Fast-WAM dataset_stats.json (e.g. its shipped pretrained_norm_stats): numeric lists -> float32
    arrays, as its load_dataset_stats_from_json does."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SchemaError(f"{path}: cannot read Fast-WAM dataset stats: {e}") from e
    if not isinstance(d, dict):
        raise SchemaError(f"{path}: not a Fast-WAM dataset_stats.json (top level is not an object)")

    def conv(o):
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        if isinstance(o, list) and o and all(isinstance(v, (int, float, list)) for v in o):
            try:
                return np.asarray(o, np.float64).astype(np.float32)
            except ValueError:
                return o
        return o
    return conv(d)


def split_episodes(episodes: list[int], proportion: float, seed: int) -> tuple[list[int], list[int]]:
    """Fast-WAM's BaseLerobotDataset train/val split of one dataset: positions 0..n-1 shuffled in place by
    np.random.default_rng(seed).shuffle, the first int(n * (1 - proportion)) are train, the rest val;
    proportion < 1e-6 means everything is train. Returns (train, val) episode indices in that order."""
    if not 0.0 <= proportion < 1.0:
        raise SchemaError(f"val proportion must be in [0, 1), got {proportion}")
    eps = sorted(episodes)
    if proportion < 1e-6:
        return eps, []
    order = list(range(len(eps)))
    np.random.default_rng(seed).shuffle(order)
    cut = int(len(eps) * (1 - proportion))
    return [eps[i] for i in order[:cut]], [eps[i] for i in order[cut:]]
