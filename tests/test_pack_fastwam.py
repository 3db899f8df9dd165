"""`wamdata pack` reproduces what Fast-WAM computes online (issue 8, items 2-7): its statistics
(BaseLerobotDataset.get_dataset_stats), its normalizer incl. constant dimensions, the LIBERO delta-action mask at
padded steps, its train/val split, several datasets with joint stats, and its dataset_stats.json / text cache files.

Expected values are derived in the test from Fast-WAM's semantics in float64 with explicit loops (`_ref_*`), never
by calling the code under test.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from _factories_pack import write_cache
from click.testing import CliRunner
from test_pack import read_tars

from cache_jobs.pack import PackConfig, SplitConfig, StatsConfig, pack
from pipelines.cli import main
from schemas import cache as C
from schemas.errors import WamdataError
from schemas.pack import PackMeta, normalize, unnormalize

H = 32


def _episodes(lengths, A=7, S=8, seed=0, const_state=True, const_action=False):
    rng = np.random.default_rng(seed)
    eps = []
    for T in lengths:
        t = np.arange(T)[:, None]
        a = np.concatenate([np.sin(0.2 * t + rng.uniform(0, 3, (1, A - 1))) * rng.uniform(0.5, 2, (1, A - 1)),
                            np.where(t % 6 < 3, -1.0, 1.0)], 1)
        s = rng.normal(0, 1, (T, S))
        if const_state:
            s[:, -1] = 0.04               # a fixed gripper state
        if const_action:
            a[:, 2] = 0.25
        eps.append((a.astype(np.float32), s.astype(np.float32)))
    return eps


def _ref_stats(episodes):
    """Fast-WAM get_dataset_stats, global_* entries, float64, explicit windows."""
    out = {}
    for which in ("action", "state"):
        mins, maxs, means, vars_, q01, q99 = [], [], [], [], [], []
        for a, s in episodes:
            T = len(a)
            x = (np.array([[a[min(i + j, T - 1)] for j in range(H)] for i in range(T)], np.float64)
                 if which == "action" else s.astype(np.float64)[:, None, :])
            mins.append(x.min(0)), maxs.append(x.max(0)), means.append(x.mean(0)), vars_.append(x.var(0, ddof=1))
            q01.append(np.quantile(x, 0.01, axis=0)), q99.append(np.quantile(x, 0.99, axis=0))
        means, vars_ = np.stack(means), np.stack(vars_)
        gm = means.mean((0, 1))
        out[which] = {"min": np.stack(mins).min((0, 1)), "max": np.stack(maxs).max((0, 1)), "mean": gm,
                      "std": np.sqrt((vars_ + (means - gm) ** 2).mean((0, 1))),
                      "q01": np.stack(q01).min((0, 1)), "q99": np.stack(q99).max((0, 1))}
    return out


def _ref_norm(x, mode, st):
    """Fast-WAM SingleFieldLinearNormalizer.forward (float64): min/max with range < 1e-4 -> x - min; clamp 5."""
    x = np.asarray(x, np.float64)
    if mode == "mean_std":
        y = (x - st["mean"]) / (st["std"] + 1e-8)
    else:
        lo, hi = (st["min"], st["max"]) if mode == "min_max" else (st["q01"], st["q99"])
        rng = hi - lo
        y = np.where(rng < 1e-4, x - lo, 2 * (x - lo) / np.where(rng < 1e-4, 1, rng) - 1)
    return np.clip(y, -5, 5)


def _ref_windows(a, T, t, mask):
    """Fast-WAM's action window at t: last action repeated past the end, masked dims zeroed at padded steps."""
    w = np.array([a[min(t + j, T - 1)] for j in range(H)], np.float64)
    if mask is not None:
        w[t + np.arange(H) >= T] *= ~np.asarray(mask)
    return w


def _old_norm(x, mode, st):
    """wamdata before issue 8 (per-frame stats, eps 1e-6, constant dims -> -1, no delta mask): for the figures."""
    x = np.asarray(x, np.float64)
    if mode == "mean_std":
        return np.clip((x - st["mean"]) / (st["std"] + 1e-6), -5, 5)
    lo, hi = (st["min"], st["max"]) if mode == "min_max" else (st["q01"], st["q99"])
    return np.clip(2 * (x - lo) / (hi - lo + 1e-6) - 1, -5, 5)


def _frame_stats(episodes, col):
    x = np.concatenate([e[col] for e in episodes]).astype(np.float64)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
            "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0)}


def _samples(out):
    return {s["__key__"]: s for s in read_tars(out)}


# -- item 5: split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n,p,train,val", [(10, 0.2, [5, 6, 0, 7, 3, 2, 4, 9], [1, 8]),
                                           (7, 0.3, [3, 2, 6, 4], [1, 5, 0])])
def test_split_is_fastwams(tmp_path, n, p, train, val):
    order = list(range(n))
    np.random.default_rng(42).shuffle(order)          # BaseLerobotDataset: seed 42, list shuffled in place
    cut = int(n * (1 - p))
    assert (order[:cut], order[cut:]) == (train, val)
    eps = _episodes([3 + i for i in range(n)])
    cache = write_cache(tmp_path / "c", eps)
    res = pack(cache, tmp_path / "p", PackConfig(split=SplitConfig(p)))
    keys = _samples(tmp_path / "p")
    vkeys = _samples(tmp_path / "p" / "val")
    assert sorted({int(k.split("/")[0]) for k in keys}) == sorted(train)
    assert sorted({int(k.split("/")[0]) for k in vkeys}) == sorted(val)
    assert res["num_samples"] == sum(3 + i for i in train) and res["val"]["num_samples"] == sum(3 + i for i in val)
    m_t = json.loads((tmp_path / "p" / C.PACK_META).read_text())
    m_v = json.loads((tmp_path / "p" / "val" / C.PACK_META).read_text())
    assert m_t["caches"][0]["train_episodes"] == train and m_t["caches"][0]["val_episodes"] == val
    assert m_v["split"] == "val" and m_v["action_stats"] == m_t["action_stats"] and m_v["stats"] == m_t["stats"]
    assert (tmp_path / "p" / "val" / C.PACK_TEXT).is_file()
    assert (tmp_path / "p" / "val" / "dataset_stats.json").is_file()
    PackMeta.load(tmp_path / "p" / "val" / C.PACK_META)
    ref = _ref_stats([eps[i] for i in train])          # stats over the train episodes only
    np.testing.assert_allclose(m_t["action_stats"]["min"], ref["action"]["min"], rtol=0, atol=1e-7)


def test_no_val_dir_when_proportion_is_zero(tmp_path):
    pack(write_cache(tmp_path / "c", _episodes([4, 5])), tmp_path / "p")
    assert not (tmp_path / "p" / "val").exists()


# -- item 2: statistics ----------------------------------------------------------------------------
def test_fastwam_stats_by_hand(tmp_path):
    """Two tiny 1-D episodes where every statistic is written out by hand."""
    a0 = np.array([[0.0], [2.0]], np.float32)             # T=2: windows [0,2,2,...] and [2,2,...]
    a1 = np.array([[1.0], [1.0], [4.0]], np.float32)      # T=3: [1,1,4,4..], [1,4,4..], [4,4..]
    s0, s1 = np.array([[1.0], [3.0]], np.float32), np.array([[0.0], [0.0], [3.0]], np.float32)
    cache = write_cache(tmp_path / "c", [(a0, s0), (a1, s1)], layout="robotwin")
    pack(cache, tmp_path / "p", PackConfig(normalization="mean_std"))
    st = json.loads((tmp_path / "p" / "dataset_stats.json").read_text())
    act, state = st["action"]["default"], st["state"]["default"]
    # per-episode step means: ep0 step0 = 1, steps>=1 = 2; ep1 step0 = 2, step1 = 3, steps>=2 = 4
    m = (1 + 2 * 31 + 2 + 3 + 4 * 30) / 64
    # unbiased per-step vars: ep0 step0 = 2, ep1 step0 = 3, step1 = 3, others 0
    sq = [(1 - m) ** 2 + 2] + [(2 - m) ** 2] * 31 + [(2 - m) ** 2 + 3, (3 - m) ** 2 + 3] + [(4 - m) ** 2] * 30
    assert act["global_mean"][0] == pytest.approx(m, rel=1e-6)
    assert act["global_std"][0] == pytest.approx(np.sqrt(np.mean(sq)), rel=1e-6)
    assert act["stepwise_mean"][0][0] == pytest.approx(1.5, rel=1e-6) and act["stepwise_mean"][5][0] == 3.0
    assert (act["global_min"], act["global_max"]) == ([0.0], [4.0])
    # q01 of step0 ep0 = 0 + 0.01*2 = 0.02 (min over episodes/steps); q99 of any step of ep1 >= 4 - ...: max 4
    assert act["global_q01"][0] == pytest.approx(0.02, rel=1e-6) and act["global_q99"] == [4.0]
    sm = (2.0 + 1.0) / 2                                   # state: episode means 2 and 1, equal weight
    assert state["global_mean"][0] == pytest.approx(sm)
    # unbiased vars 2 and 3, (episode mean - 1.5)^2 = 0.25 each
    assert state["global_std"][0] == pytest.approx(np.sqrt(((2 + 0.25) + (3 + 0.25)) / 2), rel=1e-6)
    assert np.array(state["stepwise_min"]).shape == (1, 1) and np.array(act["stepwise_min"]).shape == (H, 1)
    assert st["num_episodes"] == 2 and st["num_transition"] == 5
    meta = PackMeta.load(tmp_path / "p" / C.PACK_META)
    assert meta.action_stats["mean"] == act["global_mean"] and meta.action_stats["std"] == act["global_std"]


@pytest.mark.parametrize("mode", ["mean_std", "min_max", "quantile"])
def test_samples_match_fastwam_and_figures(tmp_path, mode):
    """Items 2-4 together on short LIBERO-like episodes: normalized actions/state vs Fast-WAM's way; prints how far
    the code before issue 8 was, per cause: stats (item 2), constant dims (3), padded delta dims (4)."""
    eps = _episodes([6, 9, 14, 21, 33, 40], const_action=True)
    cache = write_cache(tmp_path / "c", eps, layout="libero")
    pack(cache, tmp_path / "p", PackConfig(normalization=mode))
    ref = _ref_stats(eps)
    mask = np.array([True] * 6 + [False])
    old = {"action": _frame_stats(eps, 0), "state": _frame_stats(eps, 1)}
    const = {"action": ref["action"]["max"] - ref["action"]["min"] < 1e-4,
             "state": ref["state"]["max"] - ref["state"]["min"] < 1e-4}
    # z-score of a constant dim (std 0) scales float32 rounding of its mean by 1e8 (Fast-WAM's too): not compared
    live = {w: ~const[w] if mode == "mean_std" else np.ones_like(const[w]) for w in const}
    after = {"action": 0.0, "state": 0.0}
    before = {"stats": 0.0, "const": 0.0, "mask": 0.0}
    for key, s in _samples(tmp_path / "p").items():
        e, t = (int(x) for x in key.split("/"))
        a, st = eps[e]
        want = _ref_norm(_ref_windows(a, len(a), t, mask), mode, ref["action"])
        want_s = _ref_norm(st[t], mode, ref["state"])
        after["action"] = max(after["action"], np.abs(s[C.SAMPLE_ACTIONS] - want)[:, live["action"]].max())
        after["state"] = max(after["state"], np.abs(s[C.SAMPLE_STATE] - want_s)[live["state"]].max())
        raw = _ref_windows(a, len(a), t, None)
        padded = (t + np.arange(H) >= len(a))[:, None] & mask[None, :]
        d_stats = np.abs(_ref_norm(raw, mode, old["action"]) - want)[~padded & ~const["action"][None, :]]
        before["stats"] = max(before["stats"], d_stats.max())
        d_const = np.abs(_old_norm(raw, mode, old["action"]) - want)[~padded & const["action"][None, :]]
        d_const_s = np.abs(_old_norm(st[t], mode, old["state"]) - want_s)[const["state"]]
        before["const"] = max(before["const"], d_const.max(), d_const_s.max() if mode != "mean_std" else 0.0)
        if padded.any():
            before["mask"] = max(before["mask"], np.abs(_ref_norm(raw, mode, ref["action"]) - want)[padded].max())
    nc = ~const["action"]
    d_mean = np.abs(ref["action"]["mean"][nc] - old["action"]["mean"][nc]) / old["action"]["std"][nc]
    d_std = np.abs(ref["action"]["std"][nc] / old["action"]["std"][nc] - 1)
    print(f"\n[figures] {mode}: max |normalized - Fast-WAM's|: after: action {after['action']:.2e}, state "
          f"{after['state']:.2e}; before: stats {before['stats']:.4f}, constant dims {before['const']:.4f}, "
          f"padded delta dims {before['mask']:.4f}; action mean moved {d_mean.max():.3f} sigma, std "
          f"{100 * d_std.max():.1f}%")
    assert after["action"] < 2e-5 and after["state"] < 2e-5
    if mode == "mean_std":
        assert before["stats"] > 0.05 and before["mask"] > 0.5
    else:
        assert before["const"] == 1.0 and before["mask"] > 0.5     # constant dims: -1 before, 0 now


def test_frames_mode_is_per_frame(tmp_path):
    eps = _episodes([5, 12])
    pack(write_cache(tmp_path / "c", eps), tmp_path / "p", PackConfig(stats=StatsConfig("frames")))
    meta = json.loads((tmp_path / "p" / C.PACK_META).read_text())
    x = np.concatenate([eps[0][0], eps[1][0]]).astype(np.float64)
    np.testing.assert_allclose(meta["stats"]["action"]["mean"], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(meta["stats"]["action"]["std"], x.std(0), rtol=1e-12)
    np.testing.assert_allclose(meta["stats"]["action"]["q01"], np.quantile(x, 0.01, axis=0), rtol=1e-12)
    assert meta["stats"]["mode"] == "frames"


def test_stats_from_dataset_when_stride_skips_frames(tmp_path):
    from _factories_cache import NpzReader, write_npz_dataset

    data = write_npz_dataset(tmp_path / "data", [7, 11], cam_hw=(8, 8))
    r = NpzReader(data)
    eps = [(r.episode_columns(e)["action"], r.episode_columns(e)["observation.state"]) for e in range(2)]
    ds = {"root": str(data), "reader": "_factories_cache:NpzReader", "action_key": "action",
          "state_key": "observation.state"}
    pack(write_cache(tmp_path / "c1", eps), tmp_path / "p1", PackConfig(normalization="mean_std"))
    pack(write_cache(tmp_path / "c4", eps, stride=4, dataset=ds), tmp_path / "p4", PackConfig(normalization="mean_std"))
    m1, m4 = (json.loads((tmp_path / p / C.PACK_META).read_text()) for p in ("p1", "p4"))
    assert m1["stats"] == m4["stats"] and m4["num_samples"] == 2 + 3
    del ds["root"]
    (tmp_path / "c4" / C.CACHE_CONFIG).write_text(json.dumps({"dataset": ds}))
    with pytest.raises(WamdataError, match="source dataset"):
        pack(tmp_path / "c4", tmp_path / "p5")


# -- item 3: constant dimensions, eps, unnormalize ------------------------------------------------------
def test_normalizer_rules():
    st = {"min": [0.5, 1.0, 2.0], "max": [0.5, 1.00005, 4.0]}   # range 0, 5e-5 (< 1e-4), 2
    x = np.array([[0.5, 1.00005, 3.0], [0.5, 1.0, 4.0]], np.float32)
    y = normalize(x, "min_max", st)
    np.testing.assert_allclose(y, [[0.0, 5e-5, 0.0], [0.0, 0.0, 1.0]], atol=1e-7)   # x - min; 2(x-2)/2-1
    np.testing.assert_allclose(unnormalize(y, "min_max", st), x, atol=1e-7)
    q = {"q01": [1.0, 3.0], "q99": [1.0, 5.0]}
    np.testing.assert_allclose(normalize(np.array([1.0, 5.0], np.float32), "quantile", q), [0.0, 1.0])
    z = {"mean": [1.0, 0.0], "std": [0.0, 2.0]}
    got = normalize(np.array([1.0 + 1e-9, 3.0], np.float32), "mean_std", z)
    assert got[0] == 0.0 and got[1] == pytest.approx(3.0 / (2.0 + 1e-8))       # std + 1e-8
    np.testing.assert_allclose(unnormalize(np.array([0.5, 1.5], np.float32), "mean_std", z),
                               [1.0 + 0.5e-8, 3.0], rtol=1e-6)


# -- item 4: delta-action mask ------------------------------------------------------------------------
@pytest.mark.parametrize("spec,mask", [("auto", [1, 1, 1, 1, 1, 1, 0]), ("none", [0] * 7),
                                       ("0,6", [1, 0, 0, 0, 0, 0, 1])])
def test_delta_mask_zeroes_padded_steps_only(tmp_path, spec, mask):
    eps = _episodes([5, 36])
    pack(write_cache(tmp_path / "c", eps, layout="libero"), tmp_path / "p",
         PackConfig(normalization="none", delta_action_mask=spec))
    s = _samples(tmp_path / "p")
    a = eps[0][0]
    got = s[C.sample_key(0, 3)][C.SAMPLE_ACTIONS]               # steps 0, 1 real; 2.. padded (T=5)
    np.testing.assert_array_equal(got[:2], a[3:5])
    np.testing.assert_array_equal(got[2:], np.where(np.array(mask, bool), 0.0, a[4])[None].repeat(H - 2, 0))
    np.testing.assert_array_equal(s[C.sample_key(1, 0)][C.SAMPLE_ACTIONS], eps[1][0][:H])   # no padding
    meta = json.loads((tmp_path / "p" / C.PACK_META).read_text())
    assert meta["delta_action_mask"] == (None if spec == "none" else [bool(m) for m in mask])


def test_auto_mask_off_for_other_layouts(tmp_path):
    eps = _episodes([4])
    pack(write_cache(tmp_path / "c", eps, layout="robotwin"), tmp_path / "p", PackConfig(normalization="none"))
    got = _samples(tmp_path / "p")[C.sample_key(0, 0)][C.SAMPLE_ACTIONS]
    np.testing.assert_array_equal(got[4:], eps[0][0][3][None].repeat(H - 4, 0))


# -- item 6: several caches -------------------------------------------------------------------------
def test_several_caches_joint_stats(tmp_path):
    e1, e2 = _episodes([5, 8], seed=1), _episodes([12], seed=2)
    c1 = write_cache(tmp_path / "c1", e1, tasks=["a", "b"], seed=1)
    c2 = write_cache(tmp_path / "c2", e2, tasks=["a"], seed=2)   # same prompt "a": same embedding
    res = pack([c1, c2], tmp_path / "p", PackConfig(normalization="mean_std"))
    assert res["num_samples"] == 25
    keys = sorted(_samples(tmp_path / "p"))
    assert keys == sorted([f"00_{C.sample_key(e, t)}" for e, T in enumerate([5, 8]) for t in range(T)] +
                          [f"01_{C.sample_key(0, t)}" for t in range(12)])
    meta = json.loads((tmp_path / "p" / C.PACK_META).read_text())
    ref = _ref_stats(e1 + e2)
    np.testing.assert_allclose(meta["action_stats"]["mean"], ref["action"]["mean"], rtol=1e-5)
    np.testing.assert_allclose(meta["action_stats"]["std"], ref["action"]["std"], rtol=1e-5)
    assert len(meta["caches"]) == 2 and meta["cache"] == [str(c1), str(c2)]
    c3 = write_cache(tmp_path / "c3", _episodes([4]), fps=15.0)
    with pytest.raises(WamdataError, match="fps"):
        pack([c1, c3], tmp_path / "q")


# -- items 2 + 7: dataset_stats.json both ways, text cache export ---------------------------------------
def test_stats_file_both_ways_and_export(tmp_path):
    eps = _episodes([6, 10], A=14, S=14, const_state=False)
    cache = write_cache(tmp_path / "c", eps, tasks=["stack the cups", "open the box"], layout="robotwin")
    pack(cache, tmp_path / "p", PackConfig(normalization="mean_std"))
    # a shipped pretrained_norm_stats: only the global entries, numbers chosen by hand
    mean, std = np.linspace(-1, 1, 14), np.linspace(0.5, 2, 14)
    shipped = {"action": {"default": {"global_mean": mean.tolist(), "global_std": std.tolist()}},
               "state": {"default": {"global_mean": [0.0] * 14, "global_std": [1.0] * 14}}}
    (tmp_path / "shipped.json").write_text(json.dumps(shipped))
    res = CliRunner().invoke(main, ["pack", str(cache), "-o", str(tmp_path / "q"), "--norm", "mean_std",
                                    "--stats-file", str(tmp_path / "shipped.json")])
    assert res.exit_code == 0, res.output
    s = _samples(tmp_path / "q")[C.sample_key(1, 2)]
    m32, s32 = mean.astype(np.float32), std.astype(np.float32)
    want = np.clip((np.array([eps[1][0][min(2 + j, 9)] for j in range(H)]) - m32) / s32, -5, 5)
    np.testing.assert_allclose(s[C.SAMPLE_ACTIONS], want, atol=2e-6)
    written = json.loads((tmp_path / "q" / "dataset_stats.json").read_text())
    assert written["action"]["default"]["global_mean"] == m32.tolist()          # float32, as Fast-WAM re-saves

    res = CliRunner().invoke(main, ["export-fastwam", str(tmp_path / "p"), "-o", str(tmp_path / "fw")])
    assert res.exit_code == 0, res.output
    ours = json.loads((tmp_path / "p" / "dataset_stats.json").read_text())
    assert json.loads((tmp_path / "fw" / "dataset_stats.json").read_text()) == ours
    assert list(ours) == ["state", "action", "num_episodes", "num_transition"]
    assert list(ours["action"]["default"])[:4] == ["stepwise_min", "stepwise_max", "global_min", "global_max"]
    from safetensors.torch import load_file

    table = load_file(str(tmp_path / "p" / C.PACK_TEXT))
    for task in ("stack the cups", "open the box"):
        prompt = f"A video recorded from a robot's point of view executing the following instruction: {task}"
        sha = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        payload = torch.load(tmp_path / "fw" / "text_embeds_cache" / f"{sha}.t5_len128.wan22ti2v5b.pt")
        assert sorted(payload) == ["context", "mask"]
        assert payload["context"].dtype == torch.bfloat16 and payload["context"].shape == (128, 8)
        assert payload["mask"].dtype == torch.bool and payload["mask"].shape == (128,)
        assert torch.equal(payload["context"], table[sha]) and int(payload["mask"].sum()) == 5
    # the pack's stats file feeds a second pack unchanged (Fast-WAM's own stats file, read back)
    pack(cache, tmp_path / "r", PackConfig(normalization="mean_std", stats=StatsConfig(file=str(tmp_path / "p" /
                                                                                          "dataset_stats.json"))))
    a, b = (json.loads((tmp_path / d / C.PACK_META).read_text())["action_stats"] for d in ("p", "r"))
    assert a == b


def test_cli_errors_are_one_line(tmp_path):
    cache = write_cache(tmp_path / "c", _episodes([4]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"action": {"arm": {}}, "state": {}}))
    res = CliRunner().invoke(main, ["pack", str(cache), "-o", str(tmp_path / "p"), "--stats-file", str(bad)])
    assert res.exit_code != 0 and "no 'action' stats for key 'default'" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["pack", str(cache), "-o", str(tmp_path / "p"), "--delta-action-mask", "9"])
    assert res.exit_code != 0 and "out of range" in res.output and "Traceback" not in res.output


def test_second_writer_is_refused(tmp_path):
    import fcntl

    cache = write_cache(tmp_path / "c", _episodes([4]))
    with open(tmp_path / ".p.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(WamdataError, match="another `wamdata pack` is writing"):
            pack(cache, tmp_path / "p")
    assert not (tmp_path / "p").exists()
    pack(cache, tmp_path / "p")                                  # lock released: packs
    assert (tmp_path / "p" / C.PACK_META).is_file()


def test_one_frame_episode_is_refused_for_fastwam_stats(tmp_path):
    cache = write_cache(tmp_path / "c", _episodes([5, 1]))
    with pytest.raises(WamdataError, match=r"c: episode 1 has 1 frame"):
        pack(cache, tmp_path / "p")
    pack(cache, tmp_path / "q", PackConfig(stats=StatsConfig("frames")))      # per-frame stats are defined


def test_older_pack_format_is_refused(tmp_path):
    pack(write_cache(tmp_path / "c", _episodes([4])), tmp_path / "p")
    meta = json.loads((tmp_path / "p" / C.PACK_META).read_text())
    assert meta["format_version"] == 2
    meta["format_version"] = 1                      # made with the old normalizer: constant dims at -1
    (tmp_path / "p" / C.PACK_META).write_text(json.dumps(meta))
    with pytest.raises(WamdataError, match="re-run `wamdata pack`"):
        PackMeta.load(tmp_path / "p" / C.PACK_META)


def test_dataset_stats_mode_uses_the_manifest_copy(tmp_path):
    cache = write_cache(tmp_path / "c", _episodes([4, 6]))
    man = json.loads((cache / C.CACHE_MANIFEST).read_text())
    man["stats"] = {"action": {"min": [-2.0] * 7, "max": [2.0] * 7, "count": [10]},
                    "state": {"min": [0.0] * 8, "max": [4.0] * 8}}
    (cache / C.CACHE_MANIFEST).write_text(json.dumps(man))
    pack(cache, tmp_path / "p", PackConfig(stats=StatsConfig("dataset"), delta_action_mask="none"))
    meta = PackMeta.load(tmp_path / "p" / C.PACK_META)
    assert meta.action_stats == {"min": [-2.0] * 7, "max": [2.0] * 7}
    s = _samples(tmp_path / "p")[C.sample_key(1, 0)]
    np.testing.assert_allclose(s[C.SAMPLE_ACTIONS], _episodes([4, 6])[1][0][[min(j, 5) for j in range(H)]] / 2,
                               atol=1e-6)                                     # 2 (x + 2) / 4 - 1 = x / 2
    with pytest.raises(WamdataError, match="without a val split"):
        pack(cache, tmp_path / "q", PackConfig(stats=StatsConfig("dataset"), split=SplitConfig(0.5)))
