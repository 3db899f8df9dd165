"""fastwam_train data reader + loop: batches, resumable positions, falling losses, exact resume, errors."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from _factories_train import LATENT_SHAPE, TEXT_DIM, A, S, tiny_train_config, write_pack

from fastwam_train.config import DataConfig, TrainConfig
from fastwam_train.data import PackedShards
from fastwam_train.loop import CONFIG_FILE, LOG_FILE, lr_factor, train
from fastwam_train.parallel import CKPT_DIR, TRAINER_STATE
from schemas import cache
from schemas.errors import EpisodeError, WamdataError


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_pack(tmp_path_factory.mktemp("pack") / "shards", n=8, shards=3)


def test_batches_shapes_and_text_lookup(shards):
    data = PackedShards(shards, DataConfig(batch_size=3, shuffle_buffer=0, prefetch=2))
    batch, pos = next(data.batches())
    assert pos == (0, 3)
    assert batch["latents"].shape == (3, *LATENT_SHAPE) and batch["latents"].dtype == torch.float32
    assert batch["actions"].shape == (3, 32, A) and batch["state"].shape == (3, S)
    assert batch["action_is_pad"].dtype == torch.bool and batch["frame_is_pad"].shape == (3, 9)
    assert batch["context"].shape == (3, cache.TEXT_LEN, TEXT_DIM) and batch["context_mask"].dtype == torch.bool
    sha = cache.prompt_key(cache.prompt_for("pick up the red block"))
    k = [i for i, key in enumerate(batch["keys"]) if int(key.split("/")[0]) % 2 == 0][0]
    assert torch.equal(batch["context"][k], data.text[sha].float())
    assert int(batch["context_mask"][k].sum()) == 5
    # latents are exactly the bf16 values written (bits -> bf16 -> float32)
    raw = next(iter(data.raw_epoch(0)))
    bits = np.load(io.BytesIO(raw[cache.SAMPLE_LATENTS]))
    assert bits.dtype == np.uint16
    dec = data.decode(raw)["latents"]
    assert np.array_equal(dec.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16), bits)


def test_positions_resume_the_same_stream(shards):
    cfg = DataConfig(batch_size=1, shuffle_buffer=4, prefetch=0, seed=5)
    data = PackedShards(shards, cfg)
    straight = [(s["key"], pos) for s, pos in _take(data.samples(), 13)]
    assert straight[7][1] == (0, 8) and straight[8][1] == (1, 1)  # 8 samples per epoch
    assert sorted(k for k, _ in straight[:8]) == sorted(cache.sample_key(i, 0) for i in range(8))
    assert [k for k, _ in straight[:8]] != [k for k, _ in straight[8:]] + ["x"] * 3
    resumed = [(s["key"], pos) for s, pos in _take(data.samples(straight[4][1]), 8)]
    assert resumed == straight[5:13]
    # two ranks take the even / odd samples of the one global order
    keys = [k for k, _ in straight]
    r0 = [s["key"] for s, _ in _take(PackedShards(shards, cfg, 0, 2).samples(), 6)]
    r1 = [s["key"] for s, _ in _take(PackedShards(shards, cfg, 1, 2).samples(), 6)]
    assert r0 == keys[0:12:2] and r1 == keys[1:13:2]
    # global batches: 2 ranks x 2 = the 1-process batch of 4, positions the same on both ranks
    one = next(PackedShards(shards, DataConfig(batch_size=4, shuffle_buffer=4, prefetch=0, seed=5)).batches())
    two = [next(PackedShards(shards, DataConfig(batch_size=2, shuffle_buffer=4, prefetch=0, seed=5), r, 2).batches())
           for r in (0, 1)]
    assert one[1] == two[0][1] == two[1][1] == (0, 4)
    assert sorted(one[0]["keys"]) == sorted(two[0][0]["keys"] + two[1][0]["keys"])


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_bad_sample_names_file_episode_and_key(tmp_path):
    root = write_pack(tmp_path / "s", n=2, shards=1)
    tar = root / "shard-000000.tar"
    members = []
    with tarfile.open(tar) as tf:
        for m in tf.getmembers():
            members.append((m, tf.extractfile(m).read()))
    with tarfile.open(tar, "w") as tf:
        for m, data in members:
            if m.name.endswith(cache.SAMPLE_ACTIONS):
                buf = io.BytesIO()
                np.save(buf, np.zeros((5, A), np.float32))
                data = buf.getvalue()
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data))
    data = PackedShards(root, DataConfig(batch_size=1, shuffle_buffer=0, prefetch=2))
    with pytest.raises(EpisodeError) as e:
        next(data.batches())
    assert "shard-000000.tar" in str(e.value) and "episode 000000" in str(e.value)
    assert e.value.key == cache.SAMPLE_ACTIONS


def test_lr_schedule_warmup_then_cosine_to_one_percent():
    assert lr_factor(0, 100, 0.05, 0.01) == pytest.approx(0.2)
    assert lr_factor(4, 100, 0.05, 0.01) == pytest.approx(1.0)
    assert lr_factor(5, 100, 0.05, 0.01) == pytest.approx(1.0)
    assert lr_factor(100, 100, 0.05, 0.01) == pytest.approx(0.01)


@pytest.mark.parametrize("variant", ["fastwam", "idm"])
def test_tiny_model_losses_fall(shards, tmp_path, variant, one_torch_thread):
    cfg = tiny_train_config(variant, steps=200, batch_size=4)
    recs = train(shards, tmp_path / "run", cfg)
    assert [r["step"] for r in recs] == list(range(1, 201))
    la = np.array([r["loss_action"] for r in recs])
    lv = np.array([r["loss_video"] for r in recs])
    assert la[-25:].mean() < 0.75 * la[:25].mean(), (la[:25].mean(), la[-25:].mean())
    assert lv[-25:].mean() < 0.9 * lv[:25].mean(), (lv[:25].mean(), lv[-25:].mean())
    rec = recs[-1]
    assert rec["samples_per_s"] > 0 and 0 <= rec["data_wait_frac"] < 1
    assert rec["lr"] == pytest.approx(1e-3 * lr_factor(199, 200, 0.05, 0.01))
    assert TrainConfig.load(tmp_path / "run" / CONFIG_FILE).model.action_dim == A
    assert len((tmp_path / "run" / LOG_FILE).read_text().splitlines()) == 200


def test_resume_continues_the_same_loss_curve(shards, tmp_path):
    cfg = tiny_train_config("fastwam", steps=8, batch_size=3)
    straight = train(shards, tmp_path / "a", cfg)
    first = train(shards, tmp_path / "b", cfg, stop_at=4)  # interrupted after step 4
    with pytest.raises(WamdataError, match="--resume"):
        train(shards, tmp_path / "b", cfg)
    second = train(shards, tmp_path / "b", cfg, resume=True)
    assert [r["step"] for r in first + second] == list(range(1, 9))
    got = [(r["loss_action"], r["loss_video"]) for r in first + second]
    want = [(r["loss_action"], r["loss_video"]) for r in straight]
    assert got == want
    log = [json.loads(x)["step"] for x in (tmp_path / "b" / LOG_FILE).read_text().splitlines()]
    assert log == list(range(1, 9))
    st = torch.load(tmp_path / "b" / CKPT_DIR / TRAINER_STATE, weights_only=False)
    assert st["step"] == 8 and st["position"] == [3, 0]  # 8 steps x 3 = 24 samples = 3 epochs of 8


def test_resume_refuses_changed_model(shards, tmp_path):
    cfg = tiny_train_config("fastwam", steps=2, batch_size=2)
    train(shards, tmp_path / "r", cfg)
    with pytest.raises(WamdataError, match="differs"):
        train(shards, tmp_path / "r", tiny_train_config("joint", steps=4), resume=True)
    with pytest.raises(WamdataError, match="no checkpoint"):
        train(shards, tmp_path / "fresh", cfg, resume=True)


def test_shipped_tiny_config_resolves_dims_from_pack_meta(shards, tmp_path):
    from pathlib import Path

    import fastwam_train

    cfg = TrainConfig.load(Path(fastwam_train.__file__).parent / "configs" / "tiny.json")
    assert cfg.model.text_dim == 0 and cfg.model.action_dim == 0
    train(shards, tmp_path / "run", cfg.override("loop", steps=2))
    saved = TrainConfig.load(tmp_path / "run" / CONFIG_FILE).model
    assert (saved.text_dim, saved.action_dim, saved.state_dim) == (TEXT_DIM, A, S)
    with pytest.raises(WamdataError, match="text_dim"):
        train(shards, tmp_path / "bad", cfg.override("model", text_dim=99).override("loop", steps=1))
