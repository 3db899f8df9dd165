"""Factories for the cache/pack tests: a synthetic numpy "dataset" with the LeRobotReader API, tiny models.

    write_npz_dataset(root, lengths, ...)  -> root/meta/{info,stats,episodes}.json + root/ep_XXXXXX.npz
    NpzReader(root)                        -> .info.features, .fps, .video_keys, .stats, .tasks, .episodes,
                                              .episode_task(ep), .episode_columns(ep), .episode_frames(ep, key)
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cache_jobs.config import CacheJobConfig, ClusterConfig, DatasetConfig, StoreConfig
from cache_jobs.models import TextConfig, VaeConfig
from cache_jobs.tiling import TilingConfig
from cache_jobs.tiny_models import make_tiny_umt5, make_tiny_vae
from schemas.chunks import ChunkSpec
from schemas.errors import EpisodeError
from schemas.features import Feature

READER = "_factories_cache:NpzReader"
SMALL_LAYOUT = {"name": "small", "height": 32, "width": 64, "cells": [
    {"camera": "observation.images.image", "top": 0, "left": 0, "height": 32, "width": 32},
    {"camera": "observation.images.wrist_image", "top": 0, "left": 32, "height": 32, "width": 32}]}
TASKS = ["pick up the black bowl", "open the drawer", "stack the blocks"]


def smooth_frames(rng: np.random.Generator, T: int, H: int, W: int) -> np.ndarray:
    base = rng.integers(0, 256, (T, H // 4 + 1, W // 4 + 1, 3)).astype(np.float32)
    up = base.repeat(4, 1).repeat(4, 2)[:, :H, :W]
    return np.clip(up + rng.normal(0, 8, up.shape), 0, 255).astype(np.uint8)


def write_npz_dataset(root: Path, lengths: list[int], cam_hw: tuple[int, int] = (48, 40), action_dim: int = 7,
                      state_dim: int = 8, seed: int = 0, bad_episode: int | None = None) -> Path:
    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    cams = [c["camera"] for c in SMALL_LAYOUT["cells"]]
    acts, states = [], []
    for ep, T in enumerate(lengths):
        rng = np.random.default_rng([seed, ep])        # episodes independent of each other
        a = rng.normal(0, 1, (T, action_dim)).astype(np.float32)
        s = rng.normal(0, 2, (T, state_dim)).astype(np.float32)
        acts.append(a)
        states.append(s)
        frames = {c: smooth_frames(rng, T if ep != bad_episode else T - 3, *cam_hw) for c in cams}
        np.savez(root / f"ep_{ep:06d}.npz", action=a, state=s, **{f"cam{i}": frames[c] for i, c in enumerate(cams)})
    A, St = np.concatenate(acts), np.concatenate(states)

    def st(x):
        return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
                "std": x.std(0).tolist(), "q01": np.quantile(x, 0.01, 0).tolist(),
                "q99": np.quantile(x, 0.99, 0).tolist(), "count": [len(x)]}

    (root / "meta" / "stats.json").write_text(json.dumps({"action": st(A), "observation.state": st(St)}))
    eps = [{"episode_index": i, "length": T, "tasks": [TASKS[i % len(TASKS)]]} for i, T in enumerate(lengths)]
    (root / "meta" / "episodes.json").write_text(json.dumps(eps))
    info = {"fps": 10, "cameras": cams, "cam_hw": list(cam_hw), "action_dim": action_dim, "state_dim": state_dim}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


class NpzReader:
    """The subset of pipelines.lerobot_io.reader.LeRobotReader the cache job uses."""

    def __init__(self, root):
        self.root = Path(root)
        meta = json.loads((self.root / "meta" / "info.json").read_text())
        H, W = meta["cam_hw"]
        feats = {c: Feature("video", (H, W, 3)) for c in meta["cameras"]}
        feats["action"] = Feature("float32", (meta["action_dim"],))
        feats["observation.state"] = Feature("float32", (meta["state_dim"],))
        self.info = SimpleNamespace(features=feats, fps=meta["fps"])
        self.fps = meta["fps"]
        self.video_keys = list(meta["cameras"])
        self.stats = {k: {s: np.asarray(v) for s, v in d.items()}
                      for k, d in json.loads((self.root / "meta" / "stats.json").read_text()).items()}
        self.episodes = json.loads((self.root / "meta" / "episodes.json").read_text())
        self.tasks = sorted({t for e in self.episodes for t in e["tasks"]})
        self.num_episodes = len(self.episodes)

    def _npz(self, ep: int):
        return np.load(self.root / f"ep_{ep:06d}.npz")

    def episode_task(self, ep: int) -> str:
        return self.episodes[ep]["tasks"][0]

    def episode_columns(self, ep: int) -> dict[str, np.ndarray]:
        z = self._npz(ep)
        return {"action": z["action"], "observation.state": z["state"]}

    def episode_frames(self, ep: int, key: str) -> np.ndarray:
        if key not in self.video_keys:
            raise EpisodeError(self.root, ep, key, "no such camera")
        return self._npz(ep)[f"cam{self.video_keys.index(key)}"]


def tiny_models(tmp: Path) -> tuple[Path, Path]:
    vae, text = Path(tmp) / "vae", Path(tmp) / "umt5"
    if not vae.exists():
        make_tiny_vae(vae)
    if not text.exists():
        make_tiny_umt5(text)
    return vae, text


def layout_file(tmp: Path, layout: dict | None = None) -> Path:
    p = Path(tmp) / "layout.json"
    p.write_text(json.dumps(layout or SMALL_LAYOUT))
    return p


def job_config(data: Path, out: Path, vae: Path, text: Path, layout: Path | str, *, workers: int = 0,
               start_stride: int = 1, rows_per_shard: int = 4, unit_rows: int = 8, batch_size: int = 4,
               reader: str = READER, scheduler: str | None = None) -> CacheJobConfig:
    return CacheJobConfig(
        dataset=DatasetConfig(str(data), reader=reader), out=str(out),
        vae=VaeConfig(str(vae), batch_size=batch_size), text=TextConfig(str(text)),
        tiling=TilingConfig(str(layout)), chunks=ChunkSpec(start_stride=start_stride),
        store=StoreConfig(rows_per_shard=rows_per_shard, unit_rows=unit_rows),
        cluster=ClusterConfig(workers=workers, scheduler=scheduler))


class KillOnceReader(NpzReader):
    """NpzReader whose process dies (SIGKILL, as from the OOM killer) the first time any process decodes an episode
    E for which `root/kill_E` exists; the file is claimed by an atomic rename to `root/killed_E`, so exactly one
    process dies per such episode; `root/kill_always_E` kills every process that decodes E, `root/hang_E` makes it
    sleep for an hour."""

    def episode_frames(self, ep: int, key: str) -> np.ndarray:
        import os
        import signal

        if (self.root / f"kill_always_{ep}").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        if (self.root / f"hang_{ep}").exists():         # a stalled worker: alive, never finishing
            import time

            time.sleep(3600)
        try:
            (self.root / f"kill_{ep}").rename(self.root / f"killed_{ep}")
        except FileNotFoundError:   # not marked, or another process claimed it
            return super().episode_frames(ep, key)
        os.kill(os.getpid(), signal.SIGKILL)
