"""fastwam_train model: Wan weight parity, action-expert init, masks per group, leakage per variant."""

from __future__ import annotations

import pytest
import torch
from _factories_train import TEXT_DIM, A, S, tiny_model_config, tiny_train_config
from diffusers import WanTransformer3DModel

from fastwam_train.masks import REACH, build_mask, group_slices, groups_for
from fastwam_train.model import MoT, init_action_from_video, load_wan_weights
from fastwam_train.wam import WAM

GROUPS = ("first", "future", "cond", "action")


def tiny_wan(layers: int = 2) -> WanTransformer3DModel:
    torch.manual_seed(0)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16,
                                 in_channels=48, out_channels=48, text_dim=TEXT_DIM, freq_dim=16, ffn_dim=64,
                                 num_layers=layers, cross_attn_norm=True, eps=1e-6)


@pytest.fixture(scope="module")
def wan_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("wan")
    wan = tiny_wan()
    wan.save_pretrained(str(d))
    return d, wan.eval()


@pytest.fixture(scope="module")
def wan_dir(wan_pair):
    return wan_pair[0]


def test_video_expert_equals_diffusers_forward(wan_pair):
    wan_dir, wan = wan_pair  # the in-memory model that was saved; we load from its directory
    mot = MoT(tiny_model_config()).eval()
    load_wan_weights(mot.video, wan_dir)
    torch.manual_seed(1)
    x, ctx = torch.randn(2, 48, 3, 4, 6), torch.randn(2, 10, TEXT_DIM)
    t_frames = torch.tensor([[0.0, 300.0, 300.0], [0.0, 812.5, 812.5]])
    tokens_per_frame = 2 * 3
    with torch.no_grad():
        ref = wan(x, t_frames.repeat_interleave(tokens_per_frame, 1), ctx, return_dict=False)[0]
        v_in = mot.video.embed(x, t_frames, ctx)
        xv, xa, _ = mot(v_in, None, None)
        out = mot.video.head(xv, v_in["temb"], (3, 4, 6))
    assert xa is None
    assert out.shape == ref.shape == (2, 48, 3, 4, 6)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_load_rejects_mismatched_config(wan_dir):
    mot = MoT(tiny_model_config(video_ffn_dim=32))
    with pytest.raises(ValueError, match="ffn"):
        load_wan_weights(mot.video, wan_dir)


def test_action_expert_interpolated_from_video(wan_dir):
    mot = MoT(tiny_model_config())
    load_wan_weights(mot.video, wan_dir)
    done = init_action_from_video(mot.action, mot.video, alpha=False)
    v, a = mot.video.state_dict(), mot.action.state_dict()
    assert "blocks.0.attn1.to_q.weight" in done and not any(n.startswith(("action_in", "proj_out")) for n in done)
    # same shape -> copied exactly (q-norm lives in the shared 2x16 attention space)
    assert torch.equal(a["blocks.1.attn1.norm_q.weight"], v["blocks.1.attn1.norm_q.weight"])
    # width 32 -> 16 along the input axis: endpoints of the linear interpolation are the endpoints
    wq_v, wq_a = v["blocks.0.attn1.to_q.weight"], a["blocks.0.attn1.to_q.weight"]
    assert wq_a.shape == (32, 16)
    torch.testing.assert_close(wq_a[:, 0], wq_v[:, 0])
    torch.testing.assert_close(wq_a[:, -1], wq_v[:, -1])
    ff_a = a["blocks.0.ffn.net.0.proj.weight"]
    assert ff_a.shape == (32, 16)
    torch.testing.assert_close(ff_a[0, 0], v["blocks.0.ffn.net.0.proj.weight"][0, 0])


@pytest.mark.parametrize("variant", ["fastwam", "joint", "idm", "novideo"])
def test_mask_reachability_group_by_group(variant):
    sizes = {"first": 3, "future": 5, "cond": 5, "action": 4}
    order = groups_for(variant)
    sizes = {g: n for g, n in sizes.items() if g in order}
    mask = build_mask(variant, sizes)
    sl = group_slices(sizes, order)
    expected = {
        "fastwam": {"first": {"first"}, "future": {"first", "future"}, "action": {"first", "action"}},
        "joint": {"first": {"first"}, "future": {"first", "future"},   # fastwam_joint.py: video never
                  "action": {"first", "future", "action"}},            # sees actions, actions see all video
        "idm": {"first": {"first"}, "future": {"first", "future"}, "cond": {"first", "cond"},
                "action": {"first", "cond", "action"}},
        "novideo": {"first": {"first"}, "action": {"first", "action"}},
    }[variant]
    assert set(expected) == set(order)
    for q in order:
        for k in order:
            block = mask[sl[q], sl[k]]
            want = k in expected[q]
            assert bool(block.all()) == want and bool(block.any()) == want, (variant, q, k)
    assert {(q, k) for q in expected for k in expected[q]} == set(REACH[variant])


def test_mask_rejects_foreign_group():
    with pytest.raises(ValueError, match="future"):
        build_mask("novideo", {"first": 2, "future": 2, "action": 2})


def _batch(b=2, f=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"latents": torch.randn(b, 48, f, 4, 4, generator=g), "actions": torch.randn(b, 32, A, generator=g),
            "state": torch.randn(b, S, generator=g), "action_is_pad": torch.zeros(b, 32, dtype=torch.bool),
            "frame_is_pad": torch.zeros(b, 9, dtype=torch.bool), "context": torch.randn(b, 12, TEXT_DIM, generator=g),
            "context_mask": torch.ones(b, 12, dtype=torch.bool)}


@pytest.mark.parametrize("variant,leaks", [("fastwam", False), ("novideo", False), ("joint", True), ("idm", True)])
def test_future_latent_leakage(variant, leaks):
    cfg = tiny_train_config(variant)
    torch.manual_seed(0)
    model = WAM.build(cfg.model, cfg.objective)
    b1 = _batch()
    b2 = dict(b1, latents=b1["latents"].clone())
    b2["latents"][:, :, 1:] = torch.randn_like(b2["latents"][:, :, 1:]) * 5
    rnd = model.draw(b1, torch.Generator().manual_seed(3))
    rnd["cond_noisy"][:] = False  # idm: clean ground-truth conditioning half of the time; here always
    p1 = model.forward_train(b1, rnd)["pred_action"]
    p2 = model.forward_train(b2, rnd)["pred_action"]
    assert torch.equal(p1, p2) != leaks
    lat = b1["latents"].clone().requires_grad_(True)
    _, terms = model.loss(dict(b1, latents=lat), rnd)
    (grad,) = torch.autograd.grad(terms["loss_action"], lat)
    fut_grad = grad[:, :, 1:].abs().max().item()
    assert (fut_grad > 0) == leaks, fut_grad
    assert grad[:, :, 0].abs().max().item() > 0  # the first frame is every variant's context


@pytest.mark.parametrize("variant", ["fastwam", "novideo", "joint", "idm"])
def test_sample_actions_shape_and_cache_parity(variant):
    cfg = tiny_train_config(variant)
    torch.manual_seed(0)
    model = WAM.build(cfg.model, cfg.objective).eval()
    batch = _batch()
    a1 = model.sample_actions(batch, torch.Generator().manual_seed(0))
    assert a1.shape == (2, 32, A) and torch.isfinite(a1).all()
    changed = dict(batch, latents=batch["latents"].clone())
    changed["latents"][:, :, 1:] += 3.0  # inference never reads ground-truth future latents
    torch.testing.assert_close(model.sample_actions(changed, torch.Generator().manual_seed(0)), a1,
                               rtol=0, atol=0)
    if variant == "fastwam":
        # the K/V-cached action steps equal a plain forward over [first | action] tokens
        first = batch["latents"][:, :, :1]
        ctx = model.context(batch)
        x = torch.randn(2, 32, A)
        t = torch.full((2,), 500.0)
        with torch.no_grad():
            v_in = model.mot.video.embed(first, torch.zeros(2, 1), ctx)
            a_in = model.mot.action.embed(x, t, ctx)
            _, xa, _ = model.mot(v_in, a_in, build_mask("fastwam", {"first": 4, "action": 32}))
            cache = model._prefill(v_in, {"first": 4})
            _, xa2, _ = model.mot(None, a_in, build_mask("fastwam", {"first": 4, "action": 32})[4:], cache=cache)
        torch.testing.assert_close(xa2, xa, rtol=1e-5, atol=1e-6)


def test_full_size_video_expert_matches_wan22_ti2v_5b_layout():
    """Real widths on the meta device: names and shapes equal diffusers' Wan2.2 TI2V-5B transformer."""
    from fastwam_train.config import ModelConfig

    with torch.device("meta"):
        wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128,
                                    in_channels=48, out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336,
                                    num_layers=30, cross_attn_norm=True, eps=1e-6)
        mot = MoT(ModelConfig(action_dim=14, state_dim=14))
    ours = {k: tuple(v.shape) for k, v in mot.video.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in wan.state_dict().items()}
    n_video = sum(p.numel() for p in mot.video.parameters())
    n_action = sum(p.numel() for p in mot.action.parameters())
    assert 4.9e9 < n_video < 5.1e9, n_video
    assert mot.action.blocks[0].attn1.to_q.weight.shape == (3072, 1024)  # 24 x 128 shared attention space
    assert mot.action.blocks[0].ffn.net[0].proj.weight.shape == (4096, 1024)
    assert 0.9e9 < n_action < 1.1e9, n_action  # 30 layers at width 1024 with 3072-wide attention


def test_gradient_checkpointing_same_loss_and_grads():
    torch.manual_seed(0)
    cfg = tiny_train_config("joint")
    plain = WAM.build(cfg.model, cfg.objective).train()
    ckpt = WAM.build(cfg.model.__class__(**{**cfg.model.__dict__, "gradient_checkpointing": True}),
                     cfg.objective).train()
    ckpt.load_state_dict(plain.state_dict())
    batch = _batch()
    rnd = plain.draw(batch, torch.Generator().manual_seed(1))
    outs = []
    for m in (plain, ckpt):
        loss, _ = m.loss(batch, rnd)
        loss.backward()
        outs.append((loss.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    assert len(outs[0][1]) == len(outs[1][1])
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
