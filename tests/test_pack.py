"""`wamdata pack`: deterministic shuffled webdataset shards, exact normalization, text once beside the shards."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch
import zarr
from _factories_cache import job_config, layout_file, tiny_models, write_npz_dataset
from click.testing import CliRunner
from safetensors.torch import load_file

from cache_jobs import store as S
from cache_jobs.cli import pack_cmd
from cache_jobs.job import run_cache
from cache_jobs.pack import PackConfig, normalize_clamped, pack
from schemas import cache as C
from schemas.errors import WamdataError
from schemas.pack import PackMeta

LENGTHS = [9, 14, 6]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pack")
    vae, text = tiny_models(tmp)
    data = write_npz_dataset(tmp / "data", LENGTHS)
    run_cache(job_config(data, tmp / "cache", vae, text, layout_file(tmp)), progress=False)
    return tmp / "cache"


def read_tars(out):
    samples = []
    for p in sorted(out.glob("shard-*.tar")):
        with tarfile.open(p) as tf:
            cur = {}
            for m in tf.getmembers():
                key, _, ext = m.name.partition(".")
                if cur and cur["__key__"] != key:
                    samples.append(cur)
                    cur = {}
                cur["__key__"] = key
                raw = tf.extractfile(m).read()
                cur[ext] = np.load(io.BytesIO(raw)) if ext.endswith("npy") else raw.decode()
            if cur:
                samples.append(cur)
    return samples


def digest(out):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_pack_is_deterministic_and_shuffled(cache, tmp_path):
    a = pack(cache, tmp_path / "a", PackConfig(seed=3, maxcount=10))
    pack(cache, tmp_path / "b", PackConfig(seed=3, maxcount=10))
    pack(cache, tmp_path / "c", PackConfig(seed=4, maxcount=10))
    n = sum(LENGTHS)
    assert a["num_samples"] == n and len(a["shards"]) == -(-n // 10)
    da, db = digest(tmp_path / "a"), digest(tmp_path / "b")
    da.pop(C.PACK_META), db.pop(C.PACK_META)
    assert da == db                                            # byte-identical shards for the same seed
    ka = [s["__key__"] for s in read_tars(tmp_path / "a")]
    kc = [s["__key__"] for s in read_tars(tmp_path / "c")]
    every = sorted(C.sample_key(e, t) for e, T in enumerate(LENGTHS) for t in range(T))
    assert sorted(ka) == sorted(kc) == every and ka != kc and ka != every
    eps = [k.split("/")[0] for k in ka[:10]]
    assert len(set(eps)) > 1                                   # episodes mixed within a shard


def test_samples_match_cache_with_exact_normalization(cache, tmp_path):
    out = tmp_path / "p"
    pack(cache, out, PackConfig(seed=0, normalization="min_max"))
    man = json.loads((cache / C.CACHE_MANIFEST).read_text())
    g = zarr.open_group(str(cache), mode="r")
    valid = g[S.ARR_VALID][:]
    row = {(int(e), int(t)): r for r, (e, t, v) in enumerate(zip(g[C.ARR_EPISODE][:], g[C.ARR_T][:], valid,
                                                                     strict=True)) if v}
    amin, amax = np.float32(man["stats"]["action"]["min"]), np.float32(man["stats"]["action"]["max"])
    smin, smax = np.float32(man["stats"]["state"]["min"]), np.float32(man["stats"]["state"]["max"])
    samples = read_tars(out)
    assert len(samples) == sum(LENGTHS)
    keys = list(g[C.ARR_TEXT_KEYS][:])
    for s in samples:
        e, t = (int(x) for x in s["__key__"].split("/"))
        r = row[e, t]
        np.testing.assert_array_equal(s[C.SAMPLE_LATENTS], g[C.ARR_LATENTS][r])
        assert s["latents.npy"].dtype == np.uint16 and s["latents.npy"].shape == (48, 3, 2, 4)
        # Fast-WAM's min/max normalizer in float32: x * (2 / (max - min)) + (-1 - (2 / (max - min)) * min)
        sa, ss = np.float32(2) / (amax - amin), np.float32(2) / (smax - smin)
        want_a = np.clip(g[C.ARR_ACTIONS][r] * sa + (np.float32(-1) - sa * amin), -5, 5)
        want_s = np.clip(g[C.ARR_STATE][r] * ss + (np.float32(-1) - ss * smin), -5, 5)
        np.testing.assert_array_equal(s["actions.npy"], want_a.astype(np.float32))
        np.testing.assert_array_equal(s["state.npy"], want_s.astype(np.float32))
        assert s["actions.npy"].min() >= -1.0 - 1e-6 and s["actions.npy"].max() <= 1.0 + 1e-6
        np.testing.assert_array_equal(s["action_is_pad.npy"], g[C.ARR_ACTION_IS_PAD][r])
        np.testing.assert_array_equal(s["frame_is_pad.npy"], g[C.ARR_FRAME_IS_PAD][r])
        assert s["prompt.txt"] == keys[int(g[C.ARR_PROMPT][r])]
    meta = PackMeta.load(out / C.PACK_META)
    assert meta.normalization == "min_max" and meta.num_samples == len(samples)
    assert meta.action_stats["min"] == man["stats"]["action"]["min"] and meta.config_hash == man["config_hash"]
    raw = json.loads((out / C.PACK_META).read_text())
    assert raw["clamp"] == 5.0 and raw["seed"] == 0
    text = load_file(str(out / C.PACK_TEXT))
    assert sorted(text) == sorted(keys + [k + ".mask" for k in keys])
    emb = g[C.ARR_TEXT_EMB][:]
    for i, k in enumerate(keys):
        assert text[k].dtype == torch.bfloat16 and text[k].shape == (128, 32)
        np.testing.assert_array_equal(text[k].view(torch.int16).numpy().view(np.uint16), emb[i])
        np.testing.assert_array_equal(text[k + ".mask"].numpy(), g[C.ARR_TEXT_MASK][i])


def test_clamp_and_zscore():
    x = np.array([[0.0, 100.0, -100.0]], np.float32)
    st = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    np.testing.assert_array_equal(normalize_clamped(x, "mean_std", st, 5.0), [[0.0, 5.0, -5.0]])


def test_trainer_reader_consumes_the_shards(cache, tmp_path):
    from fastwam_train.config import DataConfig
    from fastwam_train.data import PackedShards

    out = tmp_path / "p"
    res = CliRunner().invoke(pack_cmd, [str(cache), "-o", str(out), "--norm", "mean_std", "--maxcount", "8"])
    assert res.exit_code == 0, res.output
    ds = PackedShards(out, DataConfig(batch_size=4, shuffle_buffer=0, prefetch=0))
    batch, _ = next(ds.batches())
    assert batch["latents"].shape == (4, 48, 3, 2, 4) and batch["actions"].shape == (4, 32, 7)
    assert batch["context"].shape == (4, 128, 32) and batch["state"].shape == (4, 8)


def test_pack_refuses_incomplete_cache_and_nonempty_out(cache, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(WamdataError, match="not empty"):
        pack(cache, tmp_path / "full")
