"""FSDP2 on 2 CPU processes (gloo) equals 1 process; sharded checkpoints resume on another world size;
checksums refuse a corrupt checkpoint; validation on SHARDS/val; the --dry-run memory estimate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _factories_train import A, tiny_train_config, write_pack
from click.testing import CliRunner

from fastwam_train.cli import train_cmd
from fastwam_train.config import DataConfig, ModelConfig, TrainConfig
from fastwam_train.data import PackedShards
from fastwam_train.infer import load_run
from fastwam_train.loop import LOG_FILE, train
from fastwam_train.memory import GIB, estimate
from fastwam_train.parallel import CKPT_DIR, SUMS, TRAINER_STATE
from fastwam_train.validate import VAL_SEED
from schemas.errors import WamdataError

REPO = Path(__file__).resolve().parents[1]
KEYS = ("loss", "loss_action", "loss_video", "grad_norm")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = write_pack(tmp_path_factory.mktemp("pack") / "shards", n=8, shards=4)
    write_pack(root / "val", n=3, shards=1, seed=1)   # a complete pack dir of its own, as `pack` writes it
    return root


def _cfg(batch: int) -> TrainConfig:
    cfg = tiny_train_config("joint", steps=4, batch_size=batch, gradient_checkpointing=True)
    return cfg.override("loop", ckpt_every=2, val_every=2, val_max_samples=3)


def _log(run: Path) -> dict:
    recs = [json.loads(x) for x in (run / LOG_FILE).read_text().splitlines()]
    return {(r.get("split", "train"), r["step"]): r for r in recs}


def _close(got: dict, want: dict, keys) -> None:
    for k in keys:
        assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), (k, got[k], want[k])


def test_fsdp2_two_processes_equal_one_and_resume_at_one(shards, tmp_path, one_torch_thread):
    train(shards, tmp_path / "a", _cfg(4))                     # reference: 1 process, global batch 4
    ref = _log(tmp_path / "a")
    _cfg(2).save(tmp_path / "cfg2.json")                       # 2 processes x 2 = global batch 4
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fastwam_train", "train", str(shards), "-o", str(tmp_path / "b"), "--config",
           str(tmp_path / "cfg2.json"), "--stop-at", "2"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    two = _log(tmp_path / "b")
    assert sorted(two) == [("train", 1), ("train", 2), ("val", 2)]
    for s in (1, 2):
        _close(two[("train", s)], ref[("train", s)], KEYS)
    _close(two[("val", 2)], ref[("val", 2)], ("val_loss", "val_loss_action", "val_loss_video", "val_action_mse_raw"))
    ck = tmp_path / "b" / CKPT_DIR
    sums = dict(ln.split("  ")[::-1] for ln in (ck / SUMS).read_text().splitlines())
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata", TRAINER_STATE} <= set(sums)   # sharded: one file per rank
    st = torch.load(ck / TRAINER_STATE, weights_only=False)
    assert st["world"] == 2 and st["step"] == 2 and st["position"] == [1, 0]   # 2 x 4 samples = one epoch of 8
    # the 2-process checkpoint resumes in 1 process (batch 4 = the same global batch) and continues the run
    recs = train(shards, tmp_path / "b", _cfg(4), resume=True)
    assert [(r.get("split", "train"), r["step"]) for r in recs] == [("train", 3), ("train", 4), ("val", 4)]
    for r in recs:
        want = ref[(r.get("split", "train"), r["step"])]
        _close(r, want, KEYS if "loss" in r else ("val_loss", "val_action_mse_raw"))


def test_validation_record_by_hand(shards, tmp_path, one_torch_thread):
    cfg = tiny_train_config("fastwam", steps=2, batch_size=2).override("loop", val_every=2, val_max_samples=2)
    train(shards, tmp_path / "r", cfg)
    rec = _log(tmp_path / "r")[("val", 2)]
    assert rec["val_samples"] == 2
    model, _, _ = load_run(tmp_path / "r")
    val = PackedShards(shards / "val", DataConfig(batch_size=1, shuffle_buffer=0, prefetch=0))
    stats = val.meta.action_stats
    mean, std = np.array(stats["mean"]), np.array(stats["std"])
    errs, n, losses = 0.0, 0, []
    for i, raw in zip(range(2), val.raw_epoch(0), strict=False):
        s = val.decode(raw)
        b = PackedShards.collate([s])
        with torch.no_grad():
            pred = model.sample_actions(b, torch.Generator().manual_seed(VAL_SEED + i))[0].numpy()
            losses.append(float(model.loss(b, model.draw(b, torch.Generator().manual_seed(VAL_SEED + i)))[0]))
        pred_raw, gt_raw = pred * std + mean, s["actions"].numpy() * std + mean     # mean_std pack, by hand
        ok = ~s["action_is_pad"].numpy()
        errs += float(((pred_raw - gt_raw)[ok] ** 2).sum())
        n += int(ok.sum()) * A
    assert rec["val_action_mse_raw"] == pytest.approx(errs / n, rel=1e-5)
    assert rec["val_loss"] == pytest.approx(np.mean(losses), rel=1e-5)


def test_empty_val_split_refused_before_training(tmp_path, one_torch_thread):
    """A val split with no samples (its episodes all failed at cache time) is refused at the start with one
    line, not by a division by zero at the first validation step."""
    import tarfile

    root = write_pack(tmp_path / "shards", n=4, shards=1)
    val = write_pack(root / "val", n=1, shards=1, seed=1)
    for f in val.glob("shard-*.tar"):
        tarfile.open(f, "w").close()                               # a shard holding no sample
    meta = json.loads((val / "pack_meta.json").read_text())
    (val / "pack_meta.json").write_text(json.dumps({**meta, "num_samples": 0}))
    cfg = tiny_train_config("fastwam", steps=2, batch_size=2).override("loop", val_every=1)
    with pytest.raises(WamdataError, match=r"/val: the val split holds no samples"):
        train(root, tmp_path / "r", cfg)
    assert not (tmp_path / "r" / CKPT_DIR).exists()


def test_corrupt_checkpoint_refused_with_one_line(shards, tmp_path, one_torch_thread):
    cfg = tiny_train_config("fastwam", steps=1, batch_size=2).override("loop", val_every=0)
    train(shards, tmp_path / "r", cfg)
    cfg.save(tmp_path / "cfg.json")
    ck = tmp_path / "r" / CKPT_DIR
    for name in ("__0_0.distcp", TRAINER_STATE):
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(tmp_path / "r", bad)
        f = bad / CKPT_DIR / name
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01                              # one flipped bit
        f.write_bytes(bytes(data))
        with pytest.raises(WamdataError, match=f"{name}: sha256 does not match"):
            load_run(bad)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    bad = tmp_path / "bad-__0_0.distcp"
    p = subprocess.run([sys.executable, "-m", "fastwam_train", "train", str(shards), "-o", str(bad), "--config",
                        str(tmp_path / "cfg.json"), "--resume", "--steps", "2"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warnings.warn" not in ln]
    assert len(lines) == 1 and "sha256 does not match" in lines[0] and "refusing to load" in lines[0], p.stderr
    (ck / SUMS).unlink()
    with pytest.raises(WamdataError, match=f"no {SUMS}"):
        load_run(tmp_path / "r")


def test_dry_run_memory_estimate(shards):
    cfg = tiny_train_config("fastwam")
    cfg_file = shards.parent / "dry.json"
    cfg.save(cfg_file)
    r = CliRunner().invoke(train_cmd, [str(shards), "-o", str(shards.parent / "never"), "--config", str(cfg_file),
                                       "--dry-run", "--world-size", "4"])
    assert r.exit_code == 0, r.output
    assert not (shards.parent / "never").exists()
    from fastwam_train.wam import WAM
    n = sum(p.numel() for p in WAM(cfg.model, cfg.objective).parameters())
    rows = {ln.split("  ")[1].strip(): float(ln.split()[-2]) for ln in r.output.splitlines()[2:]}
    assert rows["fp32 params"] == pytest.approx(4 * n / 4 / GIB, abs=0.006)
    assert rows["AdamW states"] == pytest.approx(8 * n / 4 / GIB, abs=0.006)
    bf = estimate(cfg.override("loop", param_dtype="bfloat16"), (48, 3, 4, 4), 4)   # Fast-WAM's bf16 weights
    assert (bf["params"], bf["grads"], bf["optimizer"]) == (2 * n / 4, 2 * n / 4, 4 * n / 4)
    # full size, world 8 (meta device): ~6.0 B parameters; DDP's fp32 AdamW alone passes 80 GB, FSDP2 fits
    full = TrainConfig(model=ModelConfig(action_dim=7, state_dim=8, gradient_checkpointing=True))
    fsdp, ddp = estimate(full, (48, 3, 14, 28), 8), estimate(full.override("loop", parallel="ddp"), (48, 3, 14, 28), 8)
    assert 6.0e9 < fsdp["params_total"] < 6.05e9
    assert ddp["params"] + ddp["grads"] + ddp["optimizer"] == 16 * fsdp["params_total"] > 80e9
    assert fsdp["params"] + fsdp["grads"] + fsdp["optimizer"] == 16 * fsdp["params_total"] / 8
    assert fsdp["total"] < 40 * GIB
