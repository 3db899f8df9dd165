"""End to end on a real LeRobot dataset: LIBERO raw file -> ingest -> cache (CLI) -> verify -> pack -> inspect.

The parity check here uses an online path independent of pipelines/: pyarrow for the parquet files, PyAV for
the concatenated mp4, torch interpolate for resize + tile.
"""

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import zarr
from _factories_cache import tiny_models
from click.testing import CliRunner

from cache_jobs import store as S
from cache_jobs.cli import cache_cmd, pack_cmd, verify_cmd
from cache_jobs.inspect_cache import inspect_cache
from schemas import cache as C

CAMS = ["observation.images.image", "observation.images.wrist_image"]
LAYOUT = {"name": "libero64", "height": 64, "width": 128, "cells": [
    {"camera": CAMS[0], "top": 0, "left": 0, "height": 64, "width": 64},
    {"camera": CAMS[1], "top": 0, "left": 64, "height": 64, "width": 64}]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from pipelines.ingest import IngestConfig, ingest
    from pipelines.synth.libero import write_libero_file

    tmp = tmp_path_factory.mktemp("e2e")
    write_libero_file(tmp / "raw", n_demos=2, T=14, size=64, instruction="put the bowl on the plate")
    ingest([tmp / "raw"], tmp / "ds", IngestConfig(workers=1), progress=False)
    vae, text = tiny_models(tmp)
    (tmp / "layout.json").write_text(json.dumps(LAYOUT))
    return tmp


def online_chunk(ds, ep, t):
    eps = pq.read_table(next((ds / "meta" / "episodes").rglob("*.parquet"))).to_pylist()
    e = next(x for x in eps if x["episode_index"] == ep)
    info = json.loads((ds / "meta" / "info.json").read_text())
    T, fps = e["length"], info["fps"]
    idx = [min(t + 4 * i, T - 1) for i in range(9)]
    cells = []
    for cam in CAMS:
        path = ds / info["video_path"].format(video_key=cam, chunk_index=e[f"videos/{cam}/chunk_index"],
                                              file_index=e[f"videos/{cam}/file_index"])
        first = round(e[f"videos/{cam}/from_timestamp"] * fps)
        with av.open(str(path)) as f:
            frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
        x = torch.from_numpy(np.stack([frames[first + i] for i in idx])).permute(0, 3, 1, 2).float() / 255.0
        cells.append(torch.nn.functional.interpolate(x, size=[64, 64], mode="bilinear", align_corners=False,
                                                     antialias=True))
    data = pq.read_table(next((ds / "data").rglob("*.parquet"))).to_pydict()
    rows = [i for i, v in enumerate(data["episode_index"]) if v == ep]
    act = np.asarray([data["action"][rows[min(t + k, T - 1)]] for k in range(32)], np.float32)
    return (torch.cat(cells, -1) * 2 - 1).permute(1, 0, 2, 3)[None], act


def test_ingest_cache_verify_pack_inspect(dataset, tmp_path):
    from diffusers import AutoencoderKLWan

    ds, cache = dataset / "ds", tmp_path / "cache"
    r = CliRunner().invoke(cache_cmd, [str(ds), "-o", str(cache), "--layout", str(dataset / "layout.json"),
                                       "--vae", str(dataset / "vae"), "--text-encoder", str(dataset / "umt5"),
                                       "--workers", "0", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads((cache / C.CACHE_REPORT).read_text())["failed_episodes"] == []
    assert CliRunner().invoke(verify_cmd, [str(cache)]).exit_code == 0
    g = zarr.open_group(str(cache), mode="r")
    valid = g[S.ARR_VALID][:]
    assert int(valid.sum()) == 28
    vae = AutoencoderKLWan.from_pretrained(dataset / "vae").eval()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    for ep, t in [(0, 0), (1, 9)]:
        r_ = int(np.flatnonzero(valid & (g[C.ARR_EPISODE][:] == ep) & (g[C.ARR_T][:] == t))[0])
        x, act = online_chunk(ds, ep, t)
        with torch.no_grad():
            ref = ((vae.encode(x).latent_dist.mean - mean) / std)[0]
        got = torch.from_numpy(g[C.ARR_LATENTS][r_].view(np.int16)).view(torch.bfloat16).float()
        torch.testing.assert_close(got, ref, rtol=2 ** -7, atol=1e-5)
        np.testing.assert_array_equal(g[C.ARR_ACTIONS][r_], act)
    prompts = json.loads((cache / C.CACHE_MANIFEST).read_text())["prompts"]
    assert prompts == [C.prompt_for("put the bowl on the plate")]
    r = CliRunner().invoke(pack_cmd, [str(cache), "-o", str(tmp_path / "shards")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "shards" / C.PACK_META).read_text())["num_samples"] == 28
    res = inspect_cache(cache, tmp_path / "inspect.png", n=2)
    assert (tmp_path / "inspect.png").stat().st_size > 1000 and len(res["rows"]) == 2


def test_builtin_libero_layout_end_to_end(dataset, tmp_path):
    from cache_jobs.config import CacheJobConfig, ClusterConfig, DatasetConfig
    from cache_jobs.job import run_cache
    from cache_jobs.models import TextConfig, VaeConfig
    from cache_jobs.tiling import TilingConfig
    from schemas.chunks import ChunkSpec

    cfg = CacheJobConfig(DatasetConfig(str(dataset / "ds")), str(tmp_path / "c"), VaeConfig(str(dataset / "vae")),
                         TextConfig(str(dataset / "umt5")), TilingConfig("libero"), ChunkSpec(start_stride=7),
                         cluster=ClusterConfig(workers=0))
    out = run_cache(cfg, progress=False)
    assert out["num_chunks"] == 4 and not out["failed_episodes"]
    g = zarr.open_group(str(tmp_path / "c"), mode="r")
    assert g[C.ARR_LATENTS].shape[1:] == (48, 3, 14, 28)
    assert sorted(g[C.ARR_T][:][g[S.ARR_VALID][:]].tolist()) == [0, 0, 7, 7]
