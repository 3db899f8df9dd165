"""The three Fast-WAM fixes (action head, joint/idm masks, action-expert alpha init) and the Fast-WAM
checkpoint layouts (weights checkpoint, ActionDiT backbone), all derived by hand from the official code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _factories_train import TEXT_DIM, A, S, tiny_model_config, tiny_train_config

from fastwam_train.masks import build_mask
from fastwam_train.model import MoT, init_action_from_video
from fastwam_train.official import load_action_backbone, load_official, save_official, to_official
from fastwam_train.wam import WAM
from schemas.errors import WamdataError

LAYERS = 2


# -- 1. action head ---------------------------------------------------------------------------------------
def test_action_head_is_one_plain_linear():
    mot = MoT(tiny_model_config())
    act = mot.action
    own = {n for n, _ in act.named_parameters() if not n.startswith(("blocks.", "condition_embedder."))}
    assert own == {"action_in.weight", "action_in.bias", "proj_out.weight", "proj_out.bias"}  # no norm/table
    assert isinstance(act.proj_out, torch.nn.Linear) and act.proj_out.weight.shape == (A, 16)
    x = torch.randn(2, 32, 16)
    want = x @ act.proj_out.weight.T + act.proj_out.bias
    torch.testing.assert_close(act.head(x), want, rtol=0, atol=0)


# -- 2. masks -------------------------------------------------------------------------------------------
def test_joint_mask_entries():
    m = build_mask("joint", {"first": 2, "future": 3, "action": 2}).int()
    want = torch.tensor([  # f f | u u u | a a      (fastwam_joint.py, first_frame_causal video)
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1]])
    assert torch.equal(m, want)
    fw = build_mask("fastwam", {"first": 2, "future": 3, "action": 2}).int()
    want[5:, 2:5] = 0  # fastwam.py: actions see the first frame only
    assert torch.equal(fw, want)


def test_idm_shared_first_frame_equals_fastwam_duplicated_layout():
    """fastwam_idm.py: [noisy f|u | cond f|u | action]; ours shares the first frame. Same outputs."""
    nf, nu, na, h, d = 2, 3, 2, 2, 4
    g = torch.Generator().manual_seed(0)
    first, fut, cond, act = (torch.randn(3, 1, h, n, d, generator=g) for n in (nf, nu, nu, na))
    off = torch.cat([first, fut, first, cond, act], 3)            # q/k/v stacked on dim 0
    n_off = off.shape[3]
    om = torch.zeros(n_off, n_off, dtype=torch.bool)
    nv = nf + nu
    for s in (0, nv):  # each video copy first-frame-causal within itself
        om[s:s + nv, s:s + nv] = True
        om[s:s + nf, s + nf:s + nv] = False
    om[2 * nv:, 2 * nv:] = True
    om[2 * nv:, nv:2 * nv] = True   # action -> the whole cond copy
    out_off = F.scaled_dot_product_attention(off[0], off[1], off[2], attn_mask=om)
    ours = torch.cat([first, fut, cond, act], 3)
    m = build_mask("idm", {"first": nf, "future": nu, "cond": nu, "action": na})
    out = F.scaled_dot_product_attention(ours[0], ours[1], ours[2], attn_mask=m)
    keep = list(range(nv)) + list(range(nv + nf, n_off))          # drop the duplicated cond first frame
    torch.testing.assert_close(out, out_off[:, :, keep], rtol=1e-6, atol=1e-6)


# -- 3. action expert init --------------------------------------------------------------------------------
def _lerp_last(x: np.ndarray, n: int) -> np.ndarray:
    """align_corners=True linear resampling of the last axis, by hand (float64; torch uses a float32
    source index, hence the 1e-5 tolerances)."""
    m = x.shape[-1]
    pos = np.arange(n) * (m - 1) / (n - 1)
    lo = np.minimum(np.floor(pos).astype(int), m - 2)
    w = pos - lo
    return x[..., lo] * (1 - w) + x[..., lo + 1] * w


def test_alpha_list_and_values_tiny():
    # video: width 32 (2 heads x 16), ffn 64; action: width 16, ffn 16 -> ratios 2 (width) and 4 (ffn)
    cfg = tiny_model_config(action_ffn_dim=16)
    torch.manual_seed(0)
    mot = MoT(cfg)
    alphas = init_action_from_video(mot.action, mot.video)
    r2, r4 = math.sqrt(2.0), 2.0
    want = {"condition_embedder.text_embedder.linear_2.weight": r2,
            "condition_embedder.time_embedder.linear_2.weight": r2,
            "condition_embedder.time_proj.weight": r2}
    for i in range(LAYERS):
        for a in ("attn1", "attn2"):
            for p in ("to_q", "to_k", "to_v"):
                want[f"blocks.{i}.{a}.{p}.weight"] = r2
        want[f"blocks.{i}.ffn.net.0.proj.weight"] = r2     # [ffn, width]: input 32 -> 16
        want[f"blocks.{i}.ffn.net.2.weight"] = r4          # [width, ffn]: input 64 -> 16
        want[f"blocks.{i}.scale_shift_table"] = r2         # the [1, 6, width] modulation table
    assert {k: v for k, v in alphas.items() if v != 1.0} == want
    assert len(want) == 3 + 9 * LAYERS
    # in Fast-WAM names: the list (q/k/v self+cross, both FFN, modulation, time_projection, 2nd text/time)
    from fastwam_train.official import expert_key_map
    names = expert_key_map(mot.action, "action")
    assert {names[k] for k in want if not k.startswith("blocks.1.")} == {
        "text_embedding.2.weight", "time_embedding.2.weight", "time_projection.1.weight",
        "blocks.0.self_attn.q.weight", "blocks.0.self_attn.k.weight", "blocks.0.self_attn.v.weight",
        "blocks.0.cross_attn.q.weight", "blocks.0.cross_attn.k.weight", "blocks.0.cross_attn.v.weight",
        "blocks.0.ffn.0.weight", "blocks.0.ffn.2.weight", "blocks.0.modulation"}
    v, a = mot.video.state_dict(), mot.action.state_dict()
    # values by hand: axis 0 resampled first, then axis 1, then alpha
    src = v["blocks.0.ffn.net.2.weight"].double().numpy()                       # [32, 64]
    step1 = _lerp_last(src.T, 16).T                                             # out axis 32 -> 16
    hand = _lerp_last(step1, 16) * 2.0                                          # in axis 64 -> 16, alpha 2
    np.testing.assert_allclose(a["blocks.0.ffn.net.2.weight"].double().numpy(), hand, rtol=1e-4, atol=1e-5)
    tab = v["blocks.1.scale_shift_table"].double().numpy()                      # [1, 6, 32]
    np.testing.assert_allclose(a["blocks.1.scale_shift_table"].double().numpy(), _lerp_last(tab, 16) * r2,
                               rtol=1e-4, atol=1e-5)
    # output axis shrinks only: interpolated, no alpha (text_embedding.0 [width, text_dim])
    t0 = v["condition_embedder.text_embedder.linear_1.weight"].double().numpy()
    np.testing.assert_allclose(a["condition_embedder.text_embedder.linear_1.weight"].double().numpy(),
                               _lerp_last(t0.T, 16).T, rtol=1e-4, atol=1e-5)
    # same shape: copied (o-proj input is the shared 2x16 attention space; q-norm likewise)
    assert torch.equal(a["blocks.0.attn1.norm_q.weight"], v["blocks.0.attn1.norm_q.weight"])
    assert alphas["blocks.0.attn1.to_out.0.weight"] == 1.0
    o = v["blocks.0.attn1.to_out.0.weight"].double().numpy()
    np.testing.assert_allclose(a["blocks.0.attn1.to_out.0.weight"].double().numpy(), _lerp_last(o.T, 16).T,
                               rtol=1e-4, atol=1e-5)


# -- 4. Fast-WAM checkpoint layouts ---------------------------------------------------------------------------
def _official_expert_keys(kind: str) -> set[str]:
    """WanVideoDiT / ActionDiT state_dict keys, written out from wan_video_dit.py / action_dit.py."""
    keys = {f"{m}.{p}" for m in ("text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2",
                                 "time_projection.1") for p in ("weight", "bias")}
    for i in range(LAYERS):
        b = f"blocks.{i}."
        for att in ("self_attn", "cross_attn"):
            keys |= {f"{b}{att}.{x}.{p}" for x in "qkvo" for p in ("weight", "bias")}
            keys |= {f"{b}{att}.norm_q.weight", f"{b}{att}.norm_k.weight"}
        keys |= {f"{b}norm3.weight", f"{b}norm3.bias", f"{b}modulation"}
        keys |= {f"{b}ffn.{j}.{p}" for j in (0, 2) for p in ("weight", "bias")}
    if kind == "video":
        keys |= {"patch_embedding.weight", "patch_embedding.bias", "head.head.weight", "head.head.bias",
                 "head.modulation"}
    else:
        keys |= {"action_encoder.weight", "action_encoder.bias", "head.weight", "head.bias"}
    return keys


def test_official_checkpoint_round_trip(tmp_path):
    cfg = tiny_train_config("fastwam")
    torch.manual_seed(0)
    ours = WAM.build(cfg.model, cfg.objective)
    payload = to_official(ours, step=7)
    want = {"mixtures.video." + k for k in _official_expert_keys("video")}
    want |= {"mixtures.action." + k for k in _official_expert_keys("action")}
    assert set(payload["mot"]) == want
    assert set(payload) == {"mot", "step", "torch_dtype", "proprio_encoder"} and payload["step"] == 7
    assert payload["proprio_encoder"]["weight"].shape == (TEXT_DIM, S)
    sd = ours.state_dict()
    assert torch.equal(payload["mot"]["mixtures.video.blocks.1.norm3.weight"], sd["mot.video.blocks.1.norm2.weight"])
    assert torch.equal(payload["mot"]["mixtures.video.head.modulation"], sd["mot.video.scale_shift_table"])
    assert torch.equal(payload["mot"]["mixtures.action.head.weight"], sd["mot.action.proj_out.weight"])
    assert torch.equal(payload["mot"]["mixtures.action.blocks.0.cross_attn.k.weight"],
                       sd["mot.action.blocks.0.attn2.to_k.weight"])
    path = save_official(ours, tmp_path / "step_7.pt", step=7)
    torch.manual_seed(1)
    other = WAM(cfg.model, cfg.objective)
    assert load_official(other, path) == 7
    for k, t in other.state_dict().items():
        assert torch.equal(t, sd[k]), k
    again = to_official(other, step=7)
    assert all(torch.equal(again["mot"][k], payload["mot"][k]) for k in payload["mot"])
    # same predictions from the imported model
    b = {"latents": torch.randn(1, 48, 3, 4, 4), "context": torch.randn(1, 6, TEXT_DIM), "state": torch.randn(1, S)}
    torch.testing.assert_close(other.sample_actions(b, torch.Generator().manual_seed(0)),
                               ours.sample_actions(b, torch.Generator().manual_seed(0)), rtol=0, atol=0)


def test_official_checkpoint_refused_when_it_does_not_fit(tmp_path):
    cfg = tiny_train_config("fastwam")
    ours = WAM(cfg.model, cfg.objective)
    payload = to_official(ours)
    del payload["mot"]["mixtures.action.head.bias"]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(WamdataError, match="missing.*mixtures.action.head.bias"):
        load_official(ours, tmp_path / "bad.pt")
    wide = WAM(tiny_model_config(action_width=24), cfg.objective)
    torch.save(to_official(wide), tmp_path / "wide.pt")
    with pytest.raises(WamdataError, match="shape"):
        load_official(ours, tmp_path / "wide.pt")


def test_action_backbone_payload_loads(tmp_path):
    cfg = tiny_model_config()
    torch.manual_seed(0)
    src = MoT(cfg)
    init_action_from_video(src.action, src.video)
    from fastwam_train.official import expert_key_map
    names = expert_key_map(src.action, "action")
    sd = src.action.state_dict()
    backbone = {names[k]: sd[k].clone() for k in sd if not k.startswith(("action_in.", "proj_out."))}
    assert set(backbone) == {k for k in _official_expert_keys("action")
                             if not k.startswith(("action_encoder.", "head."))}
    meta = {"hidden_dim": 16, "ffn_dim": 32, "num_layers": 2, "num_heads": 2, "attn_head_dim": 16,
            "text_dim": TEXT_DIM, "freq_dim": 16, "eps": 1e-6}
    torch.save({"policy": {"alpha_scaling": True}, "backbone_state_dict": backbone, "meta": meta},
               tmp_path / "ActionDiT_tiny.pt")
    model = WAM.build(tiny_model_config(action_backbone=str(tmp_path / "ActionDiT_tiny.pt")),
                      tiny_train_config().objective)
    got = model.mot.action.state_dict()
    for k in sd:
        if not k.startswith(("action_in.", "proj_out.")):
            assert torch.equal(got[k], sd[k]), k
    torch.save({"backbone_state_dict": backbone, "meta": dict(meta, ffn_dim=64)}, tmp_path / "bad.pt")
    with pytest.raises(WamdataError, match="ffn_dim=64"):
        load_action_backbone(model.mot.action, tmp_path / "bad.pt", cfg)


def test_cli_export_then_import_official_is_exact(tmp_path, one_torch_thread):
    from _factories_train import write_pack
    from click.testing import CliRunner

    from fastwam_train.cli import export_official_cmd, import_official_cmd
    from fastwam_train.infer import load_run
    from fastwam_train.loop import train

    shards = write_pack(tmp_path / "shards", n=4, shards=1)
    cfg = tiny_train_config("fastwam", steps=1, batch_size=2).override("loop", val_every=0)
    train(shards, tmp_path / "run", cfg)
    r = CliRunner().invoke(export_official_cmd, [str(tmp_path / "run"), "-o", str(tmp_path / "fw.pt"),
                                                 "--dtype", "float32"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    payload = torch.load(tmp_path / "fw.pt", weights_only=True)
    assert payload["step"] == 1 and payload["torch_dtype"] == "torch.float32"
    cfg.save(tmp_path / "cfg.json")
    r = CliRunner().invoke(import_official_cmd, [str(tmp_path / "fw.pt"), "--shards", str(shards), "-o",
                                                 str(tmp_path / "imported"), "--config", str(tmp_path / "cfg.json")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    a, _, _ = load_run(tmp_path / "run")
    b, _, _ = load_run(tmp_path / "imported")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # and fine-tuning continues from it (step 0, fresh optimizer)
    recs = train(shards, tmp_path / "imported", cfg.override("loop", steps=2), resume=True)
    assert [x["step"] for x in recs] == [1, 2]
