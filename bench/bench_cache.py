"""Benchmark of the latent cache, all anchors measured in the same run (CPU; prints + JSON).

    (a) cache overhead: `run_cache` (LeRobot dataset -> decode -> tile -> VAE -> zarr, in-process and on a
        1-worker LocalCluster) vs a bare `vae.encode` loop over the same pre-tiled chunks; full-size
        Wan2.2-TI2V-5B VAE config, random init, bf16 on CPU; both sides include `from_pretrained`.
        target <= 1.15x. The cluster runs are reported cold (LocalCluster started by the job: process spawn +
        torch/diffusers/transformers imports + model loads, a fixed cost per job) and on an already running
        cluster, first job and a second (warm) job: the warm ratio is the per-chunk overhead.
    (b) training-sample throughput: our packed webdataset shards vs a Fast-WAM-style online path without
        the VAE (seek + decode 33 mp4 frames per camera, resize, tile, [-1, 1]); DataLoader, 2 workers.
        target >= 50x and >= 2,000 samples/s. The shards hold real packed samples of the libero geometry;
        their latent values are random (throughput does not depend on them).
    (c) bytes per sample: packed shard bytes / sample, zarr cache bytes / chunk, raw latent bytes.

    .venv/bin/python bench/bench_cache.py [--chunks-per-episode 3] [--out bench/results_cache.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cache_jobs import store as S
from cache_jobs.chunking import chunk_indices
from cache_jobs.config import CacheJobConfig, ClusterConfig, DatasetConfig
from cache_jobs.job import run_cache, worker_environ
from cache_jobs.models import TextConfig, VaeConfig
from cache_jobs.pack import PackConfig, StatsConfig, pack
from cache_jobs.tiling import Tiler, TilingConfig, load_layout
from cache_jobs.tiny_models import make_full_vae, make_tiny_umt5
from schemas import cache as C
from schemas.chunks import ChunkSpec


def make_dataset(tmp: Path, n_demos: int, T: int, size: int) -> Path:
    from pipelines.ingest import IngestConfig, ingest
    from pipelines.synth.libero import write_libero_file

    write_libero_file(tmp / "raw", n_demos=n_demos, T=T, size=size, instruction="put the bowl on the plate")
    ingest([tmp / "raw"], tmp / "ds", IngestConfig(workers=1), progress=False)
    return tmp / "ds"


def bench_overhead(tmp: Path, ds: Path, stride: int) -> dict:
    from diffusers import AutoencoderKLWan

    from pipelines.lerobot_io.reader import LeRobotReader

    vae_dir = make_full_vae(tmp / "vae_full", dtype=torch.bfloat16)
    text_dir = make_tiny_umt5(tmp / "umt5")
    spec = ChunkSpec(start_stride=stride)
    reader, tiler = LeRobotReader(ds), Tiler(load_layout("libero"))
    chunks = []
    for e in reader.episodes:
        ep, T = int(e["episode_index"]), int(e["length"])
        frames = {c: reader.episode_frames(ep, c) for c in tiler.layout.cameras}
        for t in range(0, T, stride):
            fi = chunk_indices(t, T, spec)[0]
            chunks.append(tiler({c: f[fi] for c, f in frames.items()}).transpose(1, 0, 2, 3)[None])
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    vae = AutoencoderKLWan.from_pretrained(vae_dir, torch_dtype=torch.bfloat16).eval()
    t_load = time.perf_counter() - t0
    with torch.no_grad():
        for x in chunks:
            vae.encode(torch.from_numpy(x).to(torch.bfloat16)).latent_dist.mean.float()
    bare = time.perf_counter() - t0
    del vae
    res = {"chunks": len(chunks), "bare_s": bare, "bare_load_s": t_load,
           "bare_s_per_chunk": (bare - t_load) / len(chunks), "params": 0}
    from dask.distributed import LocalCluster

    cluster = None
    for name, workers in (("in_process", 0), ("local_cluster_cold", 1), ("existing_cluster_first_job", None),
                          ("existing_cluster_warm", None)):
        if workers is None and cluster is None:   # `--scheduler tcp://...`: a cluster that is already running
            with worker_environ(1):
                cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
        cfg = CacheJobConfig(DatasetConfig(str(ds)), str(tmp / f"cache_{name}"),
                             VaeConfig(str(vae_dir), dtype="bfloat16", batch_size=1),
                             TextConfig(str(text_dir)), TilingConfig("libero"), spec,
                             cluster=ClusterConfig(workers=workers,
                                                   scheduler=cluster.scheduler_address if cluster else None))
        t0 = time.perf_counter()
        out = run_cache(cfg, progress=False)
        res[f"cache_{name}_s"] = time.perf_counter() - t0
        res[f"ratio_{name}"] = res[f"cache_{name}_s"] / bare
        assert out["num_chunks"] == len(chunks), out
    cluster.close()
    cache = tmp / "cache_in_process"
    lat_bytes = sum(p.stat().st_size for p in (cache / C.ARR_LATENTS).rglob("*") if p.is_file())
    all_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file() and S.UNITS_DIR not in p.parts)
    res.update(cache_latent_bytes_per_chunk=lat_bytes / len(chunks), cache_bytes_per_chunk=all_bytes / len(chunks))
    from diffusers import AutoencoderKLWan as A

    res["params"] = sum(p.numel() for p in A.from_pretrained(vae_dir).parameters())
    return res


def synthetic_cache(root: Path, n: int, latent_shape=(48, 3, 14, 28), A: int = 7, Sd: int = 8) -> Path:
    """A complete cache (real store layout and manifest) with random latents, for the throughput anchor."""
    rng = np.random.default_rng(0)
    spec, R = ChunkSpec(), 256
    n = -(-n // R) * R
    root.mkdir(parents=True)
    g = S.create_arrays(root, n, R, latent_shape, spec, A, Sd)
    eps = np.arange(n) // 200
    g[C.ARR_LATENTS][:] = rng.integers(15000, 17000, (n, *latent_shape), dtype=np.uint16)
    g[C.ARR_ACTIONS][:] = rng.normal(size=(n, 32, A)).astype(np.float32)
    g[C.ARR_STATE][:] = rng.normal(size=(n, Sd)).astype(np.float32)
    g[C.ARR_EPISODE][:], g[C.ARR_T][:], g[C.ARR_PROMPT][:] = eps, np.arange(n) % 200, 0
    g[S.ARR_VALID][:] = True
    key = C.prompt_key(C.prompt_for("put the bowl on the plate"))
    S.write_text(root, [key], np.zeros((1, 128, 32), np.uint16), np.ones((1, 128), bool))
    st = {"min": [-4.0] * A, "max": [4.0] * A, "mean": [0.0] * A, "std": [1.0] * A}
    (root / C.CACHE_MANIFEST).write_text(json.dumps({
        "status": "complete", "config_hash": "synthetic", "latent_shape": list(latent_shape), "action_dim": A,
        "state_dim": Sd, "stats": {"action": st, "state": {k: v[:1] * Sd for k, v in st.items()}},
        "hash_inputs": {"layout": {"name": "synthetic"}, "chunks": {"start_stride": 1}},
        "units": [{"episodes": [{"episode": int(e), "length": 200} for e in np.unique(eps)]}]}))
    return root


class OnlineSamples(torch.utils.data.IterableDataset):
    """Fast-WAM-style sample path without the VAE: per sample seek + decode 33 frames per camera, tile."""

    def __init__(self, ds: Path, n: int):
        self.ds, self.n = ds, n

    def __iter__(self):
        import av

        from pipelines.lerobot_io.reader import LeRobotReader

        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        reader, tiler = LeRobotReader(self.ds), Tiler(load_layout("libero"))
        rng = np.random.default_rng(wid)
        eps = reader.episodes
        for _ in range(wid, self.n, nw):
            e = eps[int(rng.integers(len(eps)))]
            ep, T = int(e["episode_index"]), int(e["length"])
            t = int(rng.integers(T))
            frames = {}
            for cam in tiler.layout.cameras:
                path, t0 = reader.video_file(ep, cam)
                want = [min(t + k, T - 1) for k in range(33)]
                with av.open(str(path)) as f:
                    st = f.streams.video[0]
                    f.seek(int((t0 + t / reader.fps) / st.time_base), stream=st, backward=True)
                    got = {}
                    for fr in f.decode(st):
                        i = round(float(fr.pts * st.time_base - t0) * reader.fps)
                        if i >= want[0]:
                            got[i] = fr.to_ndarray(format="rgb24")
                        if i >= want[-1]:
                            break
                frames[cam] = np.stack([got[i] for i in want])[::4]
            yield {"video": torch.from_numpy(tiler(frames))}


BATCH = 64
SAMPLE_ARRAYS = (C.SAMPLE_LATENTS, C.SAMPLE_ACTIONS, C.SAMPLE_STATE, C.SAMPLE_ACTION_IS_PAD, C.SAMPLE_FRAME_IS_PAD)


def decode_sample(s: dict) -> dict:
    import io

    return {k.split(".")[0]: np.load(io.BytesIO(s[k])) for k in SAMPLE_ARRAYS} | {
        "prompt": s[C.SAMPLE_PROMPT].decode()}


def collate(samples: list[dict]) -> dict:
    """Batch in the loader worker (one IPC transfer per batch); latents as bf16."""
    out = {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]
           if k not in ("prompt", "latents") and not k.startswith("__")}
    out["latents"] = torch.from_numpy(np.stack([s["latents"] for s in samples]).view(np.int16)).view(torch.bfloat16)
    out["prompt"] = [s["prompt"] for s in samples]
    return out


def bench_throughput(tmp: Path, ds: Path, n_samples: int, n_online: int) -> dict:
    import webdataset as wds

    cache = synthetic_cache(tmp / "syn_cache", n_samples)
    shards = tmp / "shards"
    # the synthetic manifest carries dataset stats and no shard checksums: pack with those, unverified
    pack(cache, shards, PackConfig(maxcount=max(1, n_samples // 8), stats=StatsConfig("dataset"), verify_cache=False))
    urls = sorted(str(p) for p in shards.glob("*.tar"))

    ours = (wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(decode_sample)
            .batched(BATCH, collation_fn=collate))
    res = {}
    for name, dset, bs in (("packed_shards", ours, None), ("online_fastwam", OnlineSamples(ds, n_online), 16)):
        dl = torch.utils.data.DataLoader(dset, batch_size=bs, num_workers=2, persistent_workers=False)
        t0 = time.perf_counter()
        count = sum(len(b["video" if "video" in b else "latents"]) for b in dl)
        dt = time.perf_counter() - t0
        res[f"{name}_samples"] = count
        res[f"{name}_samples_per_s"] = count / dt
    res["speedup"] = res["packed_shards_samples_per_s"] / res["online_fastwam_samples_per_s"]
    res["packed_bytes_per_sample"] = sum(Path(u).stat().st_size for u in urls) / n_samples
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demos", type=int, default=2)
    ap.add_argument("--T", type=int, default=9, help="frames per demo (libero synth, 128x128)")
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--online", type=int, default=48)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_cache.json")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ds = make_dataset(tmp / "a", args.demos, args.T, 128)
        a = bench_overhead(tmp / "a", ds, args.stride)
        print("(a)", json.dumps(a), flush=True)
        ds_b = make_dataset(tmp / "b", 4, 120, 128)
        b = bench_throughput(tmp / "b", ds_b, args.samples, args.online)
    raw_latent = 48 * 3 * 14 * 28 * 2
    res = {"a_overhead": a, "b_throughput": b, "c_bytes": {
        "raw_latent_bytes": raw_latent, "packed_bytes_per_sample": b["packed_bytes_per_sample"],
        "cache_bytes_per_chunk": a["cache_bytes_per_chunk"]}, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "loadavg_end": os.getloadavg()}
    print(f"(a) full Wan2.2 VAE ({a['params'] / 1e6:.0f} M params, bf16, CPU), {a['chunks']} chunks 224x448: "
          f"bare encode loop {a['bare_s']:.1f} s (load {a['bare_load_s']:.1f} s, "
          f"{a['bare_s_per_chunk']:.2f} s/chunk)")
    for k in ("in_process", "existing_cluster_warm", "existing_cluster_first_job", "local_cluster_cold"):
        print(f"    cache {k:<26} {a[f'cache_{k}_s']:6.1f} s = {a[f'ratio_{k}']:.3f}x of bare   (target <= 1.15x)")
    print(f"(b) packed shards {b['packed_shards_samples_per_s']:.0f} samples/s vs online Fast-WAM path "
          f"{b['online_fastwam_samples_per_s']:.1f} samples/s = {b['speedup']:.0f}x   "
          f"(targets >= 50x, >= 2000 samples/s)")
    print(f"(c) bytes/sample: packed {b['packed_bytes_per_sample']:.0f}, zarr cache {a['cache_bytes_per_chunk']:.0f}"
          f" per chunk, raw bf16 latents {raw_latent}")
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
