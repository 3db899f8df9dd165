"""Tiny random-init models load through the user's from_pretrained path; encoders' numerics and contracts."""

import numpy as np
import pytest
import torch

from cache_jobs.models import (
    TextConfig,
    TextEncoder,
    VaeConfig,
    VaeEncoder,
    bf16_bits,
    from_bf16_bits,
    prompt_clean,
    vae_digest,
)
from cache_jobs.tiny_models import (
    WAN22_LATENTS_MEAN,
    WAN22_LATENTS_STD,
    make_full_vae_config,
    make_tiny_umt5,
    make_tiny_vae,
)
from schemas.cache import prompt_for


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    return make_tiny_vae(tmp / "vae"), make_tiny_umt5(tmp / "umt5")


def test_full_vae_config_is_wan22_ti2v_5b():
    from diffusers import AutoencoderKLWan

    cfg = make_full_vae_config()
    assert (cfg["base_dim"], cfg["decoder_base_dim"], cfg["z_dim"], cfg["patch_size"]) == (160, 256, 48, 2)
    assert (cfg["in_channels"], cfg["out_channels"], cfg["is_residual"]) == (12, 12, True)
    assert (cfg["scale_factor_spatial"], cfg["scale_factor_temporal"]) == (16, 4)
    assert cfg["dim_mult"] == [1, 2, 4, 4] and cfg["temperal_downsample"] == [False, True, True]
    assert len(cfg["latents_mean"]) == len(cfg["latents_std"]) == 48
    assert cfg["latents_mean"][:3] == [-0.2289, -0.0052, -0.1323] and cfg["latents_std"][-1] == 0.7744
    with torch.device("meta"):
        n = sum(p.numel() for p in AutoencoderKLWan(**cfg).parameters())
    assert 700e6 < n < 710e6                                    # ~705 M parameters


def test_tiny_vae_loads_like_the_real_one_and_encodes_libero_size(models):
    from diffusers import AutoencoderKLWan

    vae_dir, _ = models
    m = AutoencoderKLWan.from_pretrained(vae_dir)
    assert (m.config.z_dim, m.config.patch_size, m.config.base_dim) == (48, 2, 8)
    assert list(m.config.latents_mean) == WAN22_LATENTS_MEAN and list(m.config.latents_std) == WAN22_LATENTS_STD
    enc = VaeEncoder(VaeConfig(str(vae_dir), batch_size=2))
    assert enc.latent_shape(9, 224, 448) == (48, 3, 14, 28)
    px = np.random.default_rng(0).uniform(-1, 1, (3, 3, 9, 64, 96)).astype(np.float32)
    lat = enc.encode(px)
    assert lat.shape == (3, 48, 3, 4, 6) and lat.dtype == np.uint16
    with torch.no_grad():     # normalized posterior mean, no sampling, batch-size independent
        mu = m.encode(torch.from_numpy(px)).latent_dist.mean
    ref = (mu - enc.mean.cpu()) / enc.std.cpu()
    torch.testing.assert_close(from_bf16_bits(lat).float(), ref, rtol=2 ** -7, atol=1e-5)
    np.testing.assert_array_equal(lat, enc.encode(px))         # deterministic
    dec = enc.decode(lat[:1])
    assert dec.shape == (1, 3, 9, 64, 96) and dec.min() >= -1 and dec.max() <= 1


def test_bf16_bits_roundtrip_is_exact():
    x = torch.randn(1000).to(torch.bfloat16)
    bits = bf16_bits(x)
    assert bits.dtype == np.uint16
    assert torch.equal(from_bf16_bits(bits), x)


def test_tiny_umt5_and_tokenizer_load_through_auto_classes(models):
    from transformers import AutoTokenizer, UMT5EncoderModel

    _, text_dir = models
    tok = AutoTokenizer.from_pretrained(text_dir)
    ids = tok(prompt_for("open the drawer"), padding="max_length", max_length=128, truncation=True)
    assert len(ids["input_ids"]) == 128 and ids["input_ids"][sum(ids["attention_mask"]) - 1] == tok.eos_token_id
    assert tok.pad_token_id == 0 and ids["input_ids"][-1] == 0
    assert UMT5EncoderModel.from_pretrained(text_dir).config.d_model == 32


def test_text_encoder_zeroes_padding_and_is_batch_independent(models):
    _, text_dir = models
    enc = TextEncoder(TextConfig(str(text_dir), batch_size=2))
    prompts = [prompt_for(t) for t in ("open the drawer", "stack the green block on the red block", "lift")]
    emb, mask = enc.encode(prompts)
    assert emb.shape == (3, 128, 32) and mask.shape == (3, 128)
    for i in range(3):
        n = int(mask[i].sum())
        assert (emb[i, n:] == 0).all() and (emb[i, :n] != 0).any()
    one, _ = TextEncoder(TextConfig(str(text_dir), batch_size=1)).encode(prompts[1:2])
    np.testing.assert_array_equal(one[0], emb[1])


def test_prompt_clean_and_digest(models, tmp_path):
    assert prompt_clean("  pick &amp;amp; place the  cup ") == "pick & place the cup"
    assert prompt_clean(" a \n\t b ") == "a b"
    # ftfy.fix_text first (as Wan / Fast-WAM / diffusers' Wan pipeline): curly quotes -> ASCII, mojibake repaired
    assert prompt_clean("put the robot\u2019s cup \u201cleft\u201d") == "put the robot's cup \"left\""
    assert prompt_clean("caf\u00c3\u00a9 &amp;lt;b&amp;gt;") == "caf\u00e9 <b>"
    vae_dir, _ = models
    d1 = vae_digest(vae_dir)
    assert d1 == vae_digest(vae_dir)
    assert d1 != vae_digest(make_tiny_vae(tmp_path / "v2", seed=1))
