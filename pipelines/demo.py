"""`wamdata demo -o DIR`: the whole pipeline on an embedded default, no downloads.

    DIR/raw/libero_spatial/*.hdf5       generated like LIBERO's writer (upside-down images, demo gaps)
    DIR/dataset       (LeRobot v3.0)    wamdata ingest            -> validate, inspect_episode0.png
    DIR/dataset_v21   (LeRobot v2.1)    wamdata ingest --format v2.1 (what Fast-WAM's reader consumes)
    DIR/models/{vae,umt5}               tiny random-init AutoencoderKLWan / UMT5EncoderModel (save_pretrained),
                                        standing in for the real Wan2.2 VAE and umT5-xxl (same classes)
    DIR/cache                           wamdata cache --layout libero --stride 8 (224x448 tiles -> [48,3,14,28])
                                        -> verify, inspect_cache.png
    DIR/shards                          wamdata pack (webdataset, min/max-normalized actions/state)
    DIR/run                             wamdata train --variant fastwam (tiny config), then predict
"""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.ingest import IngestConfig, ingest
from pipelines.inspect_png import inspect_dataset
from pipelines.synth.libero import write_libero_file
from pipelines.validate import validate
from schemas import keys
from schemas.errors import WamdataError

DEMO_TASKS = ("put the black bowl on the plate", "open the top drawer of the cabinet")
TINY_TRAIN_CONFIG = Path(__file__).resolve().parent.parent / "fastwam_train" / "configs" / "tiny.json"


def make_raw(raw: Path, n_episodes: int, T: int = 48) -> Path:
    suite = raw / "libero_spatial"
    per_task = max(1, n_episodes // len(DEMO_TASKS))
    for i, task in enumerate(DEMO_TASKS):
        ids = [2 * d for d in range(per_task)]  # gaps in demo numbers, like real LIBERO files
        write_libero_file(suite, n_demos=per_task, T=[T + 8 * d for d in range(per_task)], demo_ids=ids,
                          instruction=task, variant="original" if i == 0 else "no_noops")
    return suite


class _Clock:
    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        self.timings[name] = round(time.perf_counter() - t, 2)
        return out


def run_demo(out: str | Path, n_episodes: int = 4, train_steps: int = 40, stride: int = 8) -> dict:
    """`stride`: chunk start stride of the demo cache (Fast-WAM uses 1; 8 keeps the CPU demo to ~1 min)."""
    from cache_jobs.config import CacheJobConfig, ClusterConfig, DatasetConfig
    from cache_jobs.inspect_cache import inspect_cache
    from cache_jobs.job import run_cache
    from cache_jobs.models import TextConfig, VaeConfig
    from cache_jobs.pack import PackConfig, pack
    from cache_jobs.store import verify
    from cache_jobs.tiling import TilingConfig
    from cache_jobs.tiny_models import make_tiny_umt5, make_tiny_vae
    from fastwam_train.config import TrainConfig
    from fastwam_train.infer import predict_shards
    from fastwam_train.loop import train
    from schemas.chunks import ChunkSpec

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clock, summary = _Clock(), {}
    raw = clock("generate_raw", make_raw, out / "raw", n_episodes)
    for name, fmt in (("dataset", keys.V30), ("dataset_v21", keys.V21)):
        report = clock(f"ingest_{fmt}", ingest, [raw], out / name, IngestConfig(format=fmt, overwrite=True))
        problems = validate(out / name)
        if problems:
            raise WamdataError(f"demo dataset {out / name} is invalid: {problems}")
        summary[name] = {"episodes": report["episodes_written"], "format": fmt, "valid": True}
    summary["inspect_png"] = str(inspect_dataset(out / "dataset", out / "inspect_episode0.png", episode=0))

    vae_dir = make_tiny_vae(out / "models" / "vae")
    t5_dir = make_tiny_umt5(out / "models" / "umt5")
    cache = out / "cache"
    cfg = CacheJobConfig(dataset=DatasetConfig(str(out / "dataset")), out=str(cache),
                         vae=VaeConfig(str(vae_dir)), text=TextConfig(str(t5_dir)), tiling=TilingConfig("libero"),
                         chunks=ChunkSpec(start_stride=stride),
                         cluster=ClusterConfig(workers=0))
    summary["cache"] = clock("cache", run_cache, cfg, progress=True)
    res = verify(cache)
    if not res["ok"]:
        raise WamdataError(f"demo cache {cache} failed verification: {res}")
    summary["inspect_cache_png"] = str(out / "inspect_cache.png")
    inspect_cache(cache, out / "inspect_cache.png", n=4)
    summary["pack"] = clock("pack", pack, cache, out / "shards", PackConfig())

    tcfg = TrainConfig.load(TINY_TRAIN_CONFIG).override("loop", steps=train_steps)
    recs = clock("train", train, str(out / "shards"), str(out / "run"), tcfg)
    summary["train"] = {"steps": len(recs) and recs[-1].get("step"), "first": recs[0] if recs else None,
                        "last": recs[-1] if recs else None}
    pred = clock("predict", predict_shards, str(out / "run"), str(out / "shards"), n=4)
    summary["predict"] = {"variant": pred["variant"], "chunk_shape": list(pred["pred"].shape[1:]),
                          "mse_raw": pred["mse_raw"]}
    summary["timings_s"] = clock.timings
    return summary
