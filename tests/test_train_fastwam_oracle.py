"""Oracle: our model against Fast-WAM's own model code (read-only checkout; FASTWAM_SRC, default
/work/ref/FastWAM) at small widths with identical weights (exported by `official.to_official`, loaded strictly
into Fast-WAM's MoT), noise and timesteps. Skipped where that checkout or its imports are absent."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from _factories_train import TEXT_DIM, A, S, tiny_model_config, tiny_train_config

from fastwam_train.model import MoT, init_action_from_video
from fastwam_train.official import expert_key_map, to_official
from fastwam_train.wam import WAM

REF = Path(os.environ.get("FASTWAM_SRC", "/work/ref/FastWAM"))
if not (REF / "src" / "fastwam" / "models" / "wan22" / "mot.py").is_file():
    pytest.skip(f"no Fast-WAM checkout at {REF}", allow_module_level=True)
pytest.importorskip("einops")
pytest.importorskip("imageio")
sys.path.insert(0, str(REF / "src"))
pytest.importorskip("fastwam.models.wan22.fastwam_idm")
from fastwam.models.wan22.action_dit import ActionDiT  # noqa: E402
from fastwam.models.wan22.fastwam import FastWAM  # noqa: E402
from fastwam.models.wan22.fastwam_idm import FastWAMIDM  # noqa: E402
from fastwam.models.wan22.fastwam_joint import FastWAMJoint  # noqa: E402
from fastwam.models.wan22.mot import MoT as OfficialMoT  # noqa: E402
from fastwam.models.wan22.wan_video_dit import WanVideoDiT  # noqa: E402

HD = 12  # head_dim whose 3-D RoPE split is valid in Fast-WAM's code (t, h, w = 4, 4, 4), as 128 is at full size


def _pair(variant: str):
    cfg = tiny_train_config(variant, head_dim=HD)
    torch.manual_seed(0)
    ours = WAM.build(cfg.model, cfg.objective).eval()
    vid = WanVideoDiT(hidden_dim=2 * HD, in_dim=48, ffn_dim=64, out_dim=48, text_dim=TEXT_DIM, freq_dim=16, eps=1e-6,
                      patch_size=(1, 2, 2), num_heads=2, attn_head_dim=HD, num_layers=2, has_image_input=False,
                      seperated_timestep=True, video_attention_mask_mode="first_frame_causal")
    act = ActionDiT(hidden_dim=16, action_dim=A, ffn_dim=32, text_dim=TEXT_DIM, freq_dim=16, eps=1e-6, num_heads=2,
                    attn_head_dim=HD, num_layers=2)
    mot = OfficialMoT({"video": vid, "action": act}, mot_checkpoint_mixed_attn=False).eval()
    payload = to_official(ours)
    mot.load_state_dict(payload["mot"], strict=True)
    prop = torch.nn.Linear(S, TEXT_DIM)
    prop.load_state_dict(payload["proprio_encoder"])
    return ours, vid, act, mot, prop


def _run(mot, tokens, mask, freqs, pres):
    ctx = {k: {"context": p["context"], "mask": p["context_mask"]} for k, p in pres.items()}
    return mot(embeds_all=tokens, attention_mask=mask, freqs_all=freqs, context_all=ctx,
               t_mod_all={k: p["t_mod"] for k, p in pres.items()})


@pytest.mark.parametrize("variant,cls", [("fastwam", FastWAM), ("joint", FastWAMJoint), ("idm", FastWAMIDM)])
def test_training_predictions_equal_fastwam(variant, cls):
    ours, vid, act, mot, prop = _pair(variant)
    g = torch.Generator().manual_seed(1)
    b = 2
    batch = {"latents": torch.randn(b, 48, 3, 4, 6, generator=g), "actions": torch.randn(b, 32, A, generator=g),
             "state": torch.randn(b, S, generator=g), "action_is_pad": torch.zeros(b, 32, dtype=torch.bool),
             "frame_is_pad": torch.zeros(b, 9, dtype=torch.bool), "context": torch.randn(b, 10, TEXT_DIM, generator=g)}
    rnd = ours.draw(batch, torch.Generator().manual_seed(3))
    rnd["cond_noisy"] = torch.tensor([True, False])
    fl, lat = ours.flow, batch["latents"]
    with torch.no_grad():
        out = ours.forward_train(batch, rnd)
        ctx = torch.cat([batch["context"], prop(batch["state"]).unsqueeze(1)], 1)
        cm = torch.ones(b, ctx.shape[1], dtype=torch.bool)

        def video(sigma, noise):
            x = torch.cat([lat[:, :, :1], fl.add_noise(lat[:, :, 1:], noise, sigma)], 2)
            return vid.pre_dit(x=x, timestep=sigma * 1000, context=ctx, context_mask=cm,
                               fuse_vae_embedding_in_latents=True)

        vp = video(rnd["sigma_video"], rnd["noise_video"])
        ap = act.pre_dit(action_tokens=fl.add_noise(batch["actions"], rnd["noise_action"], rnd["sigma_action"]),
                         timestep=rnd["sigma_action"] * 1000, context=ctx, context_mask=cm)
        tpf, nv = vp["meta"]["tokens_per_frame"], vp["tokens"].shape[1]
        owner = types.SimpleNamespace(video_expert=vid)
        if variant == "idm":
            vc = video(torch.where(rnd["cond_noisy"], rnd["sigma_cond"], torch.zeros(b)), rnd["noise_cond"])
            mask = cls._build_teacher_forcing_attention_mask(owner, nv, nv, 32, tpf, tpf, "cpu")
            merged = {"tokens": torch.cat([vp["tokens"], vc["tokens"]], 1),
                      "t_mod": torch.cat([vp["t_mod"], vc["t_mod"]], 1), "context": vp["context"],
                      "context_mask": torch.cat([vp["context_mask"], vc["context_mask"]], 1)}
            to = _run(mot, {"video": merged["tokens"], "action": ap["tokens"]}, mask,
                      {"video": torch.cat([vp["freqs"], vc["freqs"]], 0), "action": ap["freqs"]},
                      {"video": merged, "action": ap})
        else:
            mask = cls._build_mot_attention_mask(owner, nv, 32, tpf, "cpu")
            to = _run(mot, {"video": vp["tokens"], "action": ap["tokens"]}, mask,
                      {"video": vp["freqs"], "action": ap["freqs"]}, {"video": vp, "action": ap})
        pred_video = vid.post_dit(to["video"][:, :nv], vp)[:, :, 1:]
        pred_action = act.post_dit(to["action"], ap)
    torch.testing.assert_close(out["pred_action"], pred_action, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["pred_video"], pred_video, rtol=1e-5, atol=2e-5)


def test_action_init_equals_preprocess_script():
    spec = importlib.util.spec_from_file_location("fastwam_prep", REF / "scripts" / "preprocess_action_dit_backbone.py")
    prep = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(prep)
    except ImportError as e:
        pytest.skip(f"Fast-WAM preprocessing script does not import here: {e}")
    for kw in ({}, {"action_width": 8, "action_ffn_dim": 24}):
        torch.manual_seed(0)
        cfg = tiny_model_config(**kw)
        mot = MoT(cfg)
        init_action_from_video(mot.action, mot.video)
        vn, an = expert_key_map(mot.video, "video"), expert_key_map(mot.action, "action")
        vsd = {vn[k]: t for k, t in mot.video.state_dict().items()}
        asd = {an[k]: t for k, t in mot.action.state_dict().items()}
        official = ActionDiT(hidden_dim=cfg.action_width, action_dim=A, ffn_dim=cfg.action_ffn_dim, text_dim=TEXT_DIM,
                             freq_dim=16, eps=1e-6, num_heads=2, attn_head_dim=16, num_layers=2).state_dict()
        keys = ActionDiT.backbone_key_set(official.keys())
        assert keys == {k for k in asd if not k.startswith(("action_encoder.", "head."))}
        for key in keys:  # the script's main loop, default --apply-alpha-scaling true, float32
            src, target = vsd[key], official[key]
            value = src
            if tuple(src.shape) != tuple(target.shape):
                value = prep._resize_tensor_to_shape(src, tuple(target.shape))
                if src.ndim >= 2 and src.shape[-1] != target.shape[-1]:
                    value = value.to(torch.float32) * (float(src.shape[-1]) / float(target.shape[-1])) ** 0.5
            assert torch.equal(value.to(target.dtype), asd[key]), key
