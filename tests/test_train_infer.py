"""fastwam_train inference, CLI, latency harness and 2-process DDP (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _factories_train import A, tiny_train_config, write_pack
from click.testing import CliRunner

from fastwam_train.cli import latency_cmd, predict_cmd, train_cmd
from fastwam_train.config import DataConfig
from fastwam_train.data import PackedShards
from fastwam_train.infer import latency, load_run, predict_raw
from fastwam_train.loop import CONFIG_FILE, LOG_FILE
from fastwam_train.parallel import CKPT_DIR, TRAINER_STATE
from schemas.pack import unnormalize

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_pack(tmp_path_factory.mktemp("pack") / "shards", n=8, shards=4)


def _write_cfg(path: Path, steps: int, variant: str = "fastwam", parallel: str = "fsdp") -> Path:
    cfg = tiny_train_config(variant, steps=steps, batch_size=4).override("loop", parallel=parallel)
    cfg.save(path)
    return path


def test_cli_train_predict_raw_units(shards, tmp_path, one_torch_thread):
    cfg_file = _write_cfg(tmp_path / "cfg.json", steps=5)
    runner = CliRunner()
    res = {}
    for name, steps in (("short", "1"), ("long", "150")):
        r = runner.invoke(train_cmd, [str(shards), "-o", str(tmp_path / name), "--variant", "novideo",
                                      "--config", str(cfg_file), "--steps", steps], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        saved = json.loads((tmp_path / name / CONFIG_FILE).read_text())
        assert saved["model"]["variant"] == "novideo" and saved["loop"]["steps"] == int(steps)
        r = runner.invoke(predict_cmd, [str(tmp_path / name), "--shards", str(shards), "-n", "8",
                                        "-o", str(tmp_path / f"{name}.npz")], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        res[name] = json.loads(r.output.strip().splitlines()[-1])
        assert res[name]["chunk_shape"] == [32, A] and res[name]["samples"] == 8
    # training helps in raw units (the raw actions live around 5 +- 2; a 1-step model is far off)
    assert res["long"]["mse_raw"] < 0.7 * res["short"]["mse_raw"], res
    out = np.load(tmp_path / "long.npz")
    assert out["pred"].shape == (8, 32, A) and abs(float(out["gt"].mean()) - 5.0) < 1.0
    # predict_raw is exactly the un-normalized sampler output
    model, _, meta = load_run(tmp_path / "long")
    data = PackedShards(shards, DataConfig(batch_size=1, shuffle_buffer=0, prefetch=0))
    batch = PackedShards.collate([data.decode(next(iter(data.raw_epoch(0))))])
    norm = model.sample_actions(batch, torch.Generator().manual_seed(7)).numpy()
    np.testing.assert_array_equal(predict_raw(model, meta, batch, seed=7),
                                  unnormalize(norm, meta.normalization, meta.action_stats))


def test_latency_harness_orders_variants(tmp_path, one_torch_thread):
    cfg = tiny_train_config("fastwam")
    ms = latency(cfg, latent=(3, 16, 16), repeats=2)
    assert set(ms) == {"fastwam", "joint", "idm", "novideo"}
    assert ms["joint"] > 1.3 * ms["fastwam"] and ms["idm"] > 1.3 * ms["fastwam"], ms
    assert ms["novideo"] < 1.3 * ms["fastwam"], ms
    r = CliRunner().invoke(latency_cmd, ["--config", str(_write_cfg(tmp_path / "c.json", 2)),
                                         "--latent", "3x8x8", "--repeats", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].split() == ["variant", "ms/chunk", "x", "fastwam"]
    rows = {ln.split()[0]: float(ln.split()[2]) for ln in lines[1:]}
    assert set(rows) == {"fastwam", "joint", "idm", "novideo"} and rows["fastwam"] == 1.0


def test_ddp_two_cpu_processes_gloo(shards, tmp_path):
    cfg_file = _write_cfg(tmp_path / "cfg.json", steps=3, parallel="ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fastwam_train", "train", str(shards), "-o", str(tmp_path / "run"), "--config", str(cfg_file)]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    st = torch.load(tmp_path / "run" / CKPT_DIR / TRAINER_STATE, weights_only=False)
    # global batch 2 ranks x 4 = 8: three steps are three epochs of the 8 samples
    assert st["step"] == 3 and st["world"] == 2 and st["position"] == [3, 0]
    recs = [json.loads(x) for x in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in recs)
