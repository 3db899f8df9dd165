"""Real-weights layouts: the same tiny weights saved as the diffusers repo, the Wan release and DiffSynth's files
give a byte-identical cache; wrong files give one clear line; full-size name/shape maps are complete."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _factories_cache import READER, SMALL_LAYOUT, job_config, layout_file, write_npz_dataset
from _factories_weights import (
    ORIGINAL_DIT_CONFIG,
    dit_release_name,
    release_keys,
    renamed,
    t5_release_name,
    tiny_dit,
    vae_release_name,
    write_layouts,
)
from click.testing import CliRunner

from cache_jobs.job import plan_job
from cache_jobs.tiny_models import make_full_vae_config
from cache_jobs.weights.component import open_component
from cache_jobs.weights.resolve import resolve_paths
from pipelines.cli import main
from schemas import cache as C
from schemas.errors import SchemaError

LAYOUT32 = {"name": "small32", "height": 32, "width": 32, "cells": [
    {"camera": c["camera"], "top": 0, "left": 16 * i, "height": 32, "width": 16}
    for i, c in enumerate(SMALL_LAYOUT["cells"])]}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("weights")
    lay = write_layouts(tmp / "w")
    data = write_npz_dataset(tmp / "data", [5, 3])
    res = CliRunner().invoke(main, ["convert", str(lay["release"]), "-o", str(tmp / "converted")])
    assert res.exit_code == 0, res.output
    lay.update(data=data, layout=layout_file(tmp, LAYOUT32), converted=tmp / "converted", tmp=tmp)
    return lay


def run_cache(w, out: Path, *args) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["cache", str(w["data"]), "-o", str(out), "--layout", str(w["layout"]), "--reader",
                                       READER, "--workers", "0", "--no-progress", "--dtype", "float32", "--stride", "4",
                                       *args])
    return r.exit_code, r.output


def cache_bytes(root: Path) -> dict[str, bytes]:
    """Every data file of the cache (zarr arrays, text embeddings, done markers' checksums); the manifest and
    config name the input paths and are compared through their config hash instead."""
    skip = {C.CACHE_MANIFEST, C.CACHE_CONFIG, C.CACHE_REPORT}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and "units" not in p.parts}


def test_same_cache_from_every_layout(weights, tmp_path):
    w = weights
    hf, rel, ds = w["diffusers"], w["release"], w["diffsynth"]
    variants = {
        "diffusers root": ["--model", str(hf)],
        "release root": ["--model", str(rel)],
        "diffsynth root": ["--model", str(ds), "--tokenizer", str(w["tokenizer"])],
        "converted": ["--model", str(w["converted"])],
    }
    ref, ref_hash = None, None
    for name, args in variants.items():
        out = tmp_path / name.replace(" ", "_")
        code, output = run_cache(w, out, *args)
        assert code == 0, f"{name}: {output}"
        man = json.loads((out / C.CACHE_MANIFEST).read_text())
        got = cache_bytes(out)
        assert len(got) > 5
        if ref is None:
            ref, ref_hash = got, man["config_hash"]
            continue
        assert got.keys() == ref.keys(), name
        assert [k for k in ref if got[k] != ref[k]] == [], name
        assert man["config_hash"] == ref_hash, name
    # per-component overrides, files and mixed layouts resolve to the same weights: same cache key (plan only)
    overrides = [
        (None, str(hf / "vae"), str(hf / "text_encoder"), None),
        (None, str(rel / "Wan2.2_VAE.pth"), str(rel / "models_t5_umt5-xxl-enc-bf16.pth"), None),
        (None, str(ds / "Wan2.2_VAE.safetensors"), str(hf / "text_encoder"), None),
        (str(ds), None, str(hf / "text_encoder" / "model.safetensors"), None),
        (str(hf), str(rel), None, str(rel / "google" / "umt5-xxl")),
        (None, str(hf / "vae"), str(hf), None),          # a repo root as --text-encoder: its text_encoder/
    ]
    for model, vae, text, tok in overrides:
        p = resolve_paths(model, vae, text, tok)
        cfg = job_config(w["data"], tmp_path / "plan", p.vae, p.text, w["layout"], start_stride=4, rows_per_shard=64,
                         unit_rows=256)
        cfg = replace(cfg, text=replace(cfg.text, tokenizer_dir=p.tokenizer))
        assert plan_job(cfg)["config_hash"] == ref_hash, (model, vae, text, tok)


def test_release_vae_and_t5_load_equal_to_diffusers(weights):
    hf, rel = weights["diffusers"], weights["release"]
    from diffusers import AutoencoderKLWan
    from transformers import UMT5EncoderModel

    ref = AutoencoderKLWan.from_pretrained(hf / "vae").state_dict()
    got = open_component(rel / "Wan2.2_VAE.pth", "vae").load(torch.float32).state_dict()
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    ref = UMT5EncoderModel.from_pretrained(hf / "text_encoder", dtype=torch.bfloat16).state_dict()
    got = open_component(rel, "text").load(torch.bfloat16).state_dict()
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert open_component(rel, "vae").digest() == open_component(hf, "vae").digest()
    assert open_component(rel, "text").digest() == open_component(hf / "text_encoder", "text").digest()
    # latents_mean/std of a release file are Wan2.2's published constants (as in the diffusers vae/config.json)
    cfg = open_component(rel, "vae").config
    full = make_full_vae_config()
    assert cfg["latents_mean"] == full["latents_mean"] and cfg["latents_std"] == full["latents_std"]
    assert (cfg["base_dim"], cfg["z_dim"], cfg["scale_factor_spatial"], cfg["scale_factor_temporal"]) == (8, 48, 16, 4)


def test_converted_dir_is_diffusers_format(weights):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    c = weights["converted"]
    assert sorted(p.name for p in c.iterdir()) == ["model_index.json", "text_encoder", "tokenizer", "transformer",
                                                   "vae"]
    assert not list(c.parent.glob(".converted.tmp-*"))
    ref = weights["diffusers"]
    for cls, sub in ((AutoencoderKLWan, "vae"), (WanTransformer3DModel, "transformer")):
        a, b = cls.from_pretrained(c / sub).state_dict(), cls.from_pretrained(ref / sub).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a = UMT5EncoderModel.from_pretrained(c / "text_encoder").state_dict()
    b = UMT5EncoderModel.from_pretrained(ref / "text_encoder").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    r = CliRunner().invoke(main, ["convert", str(weights["release"]), "-o", str(c)])
    assert r.exit_code != 0 and "already exists" in r.output
    # a broken source: one line, nothing left behind (no OUT, no temp dir)
    bad = weights["tmp"] / "bad_src"
    shutil.copytree(weights["release"], bad)
    sd = torch.load(bad / "Wan2.2_VAE.pth")
    sd["decoder.head.2.bias"] = torch.zeros(5)
    torch.save(sd, bad / "Wan2.2_VAE.pth")
    r = CliRunner().invoke(main, ["convert", str(bad), "-o", str(weights["tmp"] / "never")])
    assert r.exit_code != 0 and "'decoder.head.2.bias' has shape (5,)" in r.output and "Traceback" not in r.output
    assert not (weights["tmp"] / "never").exists() and not list(weights["tmp"].glob(".never.tmp-*"))


def test_trainer_loads_original_and_diffusers_dit_identically(weights):
    from _factories_train import tiny_model_config

    from fastwam_train.model import MoT, load_wan_weights

    cfg = tiny_model_config()
    a, b = MoT(cfg).video, MoT(cfg).video
    load_wan_weights(a, weights["release"])
    load_wan_weights(b, weights["diffusers"] / "transformer")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(sa["blocks.1.norm2.weight"], tiny_dit().state_dict()["blocks.1.norm2.weight"])


# -- wrong inputs: one line, naming the file and the key -------------------------------------------------
def expect_error(weights, tmp_path, args, *needles):
    out_dir = tmp_path / "bad"
    code, out = run_cache(weights, out_dir, *args)
    assert not out_dir.exists()             # refused before anything was written
    assert code != 0
    assert "Traceback" not in out
    line = [x for x in out.splitlines() if x.startswith("Error")]
    assert len(line) == 1, out
    for n in needles:
        assert n in line[0], line[0]


def test_wrong_component_and_wrong_dir(weights, tmp_path):
    hf, rel = weights["diffusers"], weights["release"]
    expect_error(weights, tmp_path, ["--vae", str(hf / "text_encoder"), "--text-encoder", str(hf / "text_encoder")],
                 str(hf / "text_encoder"), "umT5 encoder", "expected a Wan2.2 VAE")
    expect_error(weights, tmp_path, ["--vae", str(hf / "transformer"), "--model", str(hf)],
                 "Wan DiT", "expected a Wan2.2 VAE")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    expect_error(weights, tmp_path, ["--model", str(empty)], f"{empty}: found dirs sub/", "expected a Wan2.2 VAE")
    expect_error(weights, tmp_path, ["--model", str(weights["diffsynth"])], "no umT5 tokenizer found",
                 "--tokenizer")
    expect_error(weights, tmp_path, ["--vae", str(rel / "Wan2.2_VAE.pth")], "give --model ROOT, or both")


def test_broken_release_files_name_file_and_key(weights, tmp_path):
    sd = torch.load(weights["release"] / "Wan2.2_VAE.pth")
    t5 = str(weights["release"] / "models_t5_umt5-xxl-enc-bf16.pth")
    cases = {
        "extra": ({**sd, "encoder.middle.3.residual.0.gamma": torch.ones(8, 1, 1, 1)},
                  "tensor 'encoder.middle.3.residual.0.gamma' has no place"),
        "shape": ({**sd, "decoder.head.2.bias": torch.zeros(11)}, "tensor 'decoder.head.2.bias' has shape (11,)"),
        "missing": ({k: v for k, v in sd.items() if k != "encoder.middle.1.proj.bias"},
                    "lacks 1 tensor(s) of the Wan2.2 VAE (release layout), first 'encoder.mid_block.attentions.0"
                    ".proj.bias'"),
    }
    for name, (bad, msg) in cases.items():
        f = tmp_path / f"{name}.pth"
        torch.save(bad, f)
        expect_error(weights, tmp_path, ["--vae", str(f), "--text-encoder", t5], str(f), msg)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    expect_error(weights, tmp_path, ["--vae", str(junk), "--text-encoder", t5], str(junk), "not a readable torch")


def test_full_size_dit_config_checked(tmp_path):
    from cache_jobs.weights.dit import WAN22_TI2V_5B, diffusers_config

    cfg = diffusers_config(dict(WAN22_TI2V_5B), "x")
    assert (cfg["num_attention_heads"], cfg["attention_head_dim"], cfg["ffn_dim"], cfg["num_layers"]) == (24, 128,
                                                                                                        14336, 30)
    with pytest.raises(SchemaError, match="full-size DiT but num_layers=29"):
        diffusers_config({**WAN22_TI2V_5B, "num_layers": 29}, "x")
    assert ORIGINAL_DIT_CONFIG["dim"] != WAN22_TI2V_5B["dim"]


# -- full size, shapes only (meta device) ------------------------------------------------------------------
def _meta_state(build):
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build().state_dict().items()}


def test_full_size_maps_complete_on_meta():
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    from cache_jobs.weights import dit as D
    from cache_jobs.weights import t5 as T
    from cache_jobs.weights import vae as V

    official = release_keys()
    assert len(official["vae"]) == 196 and len(official["t5"]) == 242 and len(official["dit"]) == 825
    # VAE: official names -> ours; equal to diffusers' full-size AutoencoderKLWan, and the derived config is
    # exactly Wan2.2-TI2V-5B's vae/config.json
    full = make_full_vae_config()
    vae = _meta_state(lambda: AutoencoderKLWan(**full))
    mapped = {V.release_to_diffusers(k): s for k, s in official["vae"].items()}
    assert mapped == vae
    assert V.release_config(mapped, "full") == full
    with pytest.raises(SchemaError, match="full-size VAE but decoder_base_dim=160"):
        V.release_config({**mapped, "decoder.conv_out.weight": (12, 160, 3, 3, 3)}, "full")
    # umT5-XXL
    t5 = _meta_state(lambda: UMT5EncoderModel(T.umt5_config(dict(T.UMT5_XXL))))
    t5.pop("encoder.embed_tokens.weight")
    mapped = {T.release_to_hf(k): s for k, s in official["t5"].items()}
    assert mapped == t5 and T.derive_config(mapped, "full") == T.UMT5_XXL
    # DiT
    cfg = {k: v for k, v in D.diffusers_config(dict(D.WAN22_TI2V_5B), "x").items() if not k.startswith("_")}
    dit = _meta_state(lambda: WanTransformer3DModel(**cfg))
    assert {D.original_to_diffusers(k): s for k, s in official["dit"].items()} == dit
    # the test-side release names used by the tiny factories are the official ones
    assert {vae_release_name(k) for k in vae} == set(official["vae"])
    assert {t5_release_name(k) for k in t5} == set(official["t5"])
    assert {dit_release_name(k) for k in dit} == set(official["dit"])


def test_resolve_paths_finds_components(weights):
    hf, rel, ds = weights["diffusers"], weights["release"], weights["diffsynth"]
    p = resolve_paths(str(hf))
    assert (p.vae, p.text, p.tokenizer) == (str(hf / "vae"), str(hf / "text_encoder"), str(hf / "tokenizer"))
    p = resolve_paths(str(rel))
    assert (p.vae, p.text, p.tokenizer) == (str(rel / "Wan2.2_VAE.pth"), str(rel / "models_t5_umt5-xxl-enc-bf16.pth"),
                                            str(rel / "google" / "umt5-xxl"))
    p = resolve_paths(str(ds), tokenizer=str(weights["tokenizer"]))
    assert p.vae == str(ds / "Wan2.2_VAE.safetensors")
    assert renamed({"a": torch.zeros(1)}, lambda k: None) == {}


def test_release_files_compute_what_the_official_modules_compute(tmp_path):
    """Tiny seeded weights in the official names, loaded through our converter: the VAE posterior mean and the
    umT5 hidden states equal those of Fast-WAM's official VideoVAE38_ / WanTextEncoder (stored once)."""
    from _factories_weights import ORACLE, oracle_inputs, oracle_release_weights

    want = torch.load(ORACLE)
    w, x = oracle_release_weights(), oracle_inputs()
    torch.save(w["vae"], tmp_path / "vae.pth")
    torch.save({k: v.to(torch.bfloat16) for k, v in w["t5"].items()}, tmp_path / "t5_bf16.pth")
    from safetensors.torch import save_file

    save_file(w["t5"], str(tmp_path / "t5.safetensors"))
    vae = open_component(tmp_path / "vae.pth", "vae").load(torch.float32)
    with torch.no_grad():
        mu = vae.encode(x["video"]).latent_dist.mean
    torch.testing.assert_close(mu, want["vae_mu"], rtol=1e-5, atol=1e-6)
    t5 = open_component(tmp_path / "t5.safetensors", "text").load(torch.float32)
    with torch.no_grad():
        h = t5(input_ids=x["ids"], attention_mask=x["mask"]).last_hidden_state
    torch.testing.assert_close(h, want["t5_hidden"], rtol=1e-5, atol=1e-5)
    assert open_component(tmp_path / "t5_bf16.pth", "text").config["vocab_size"] == 64


def test_wrapped_and_prefixed_checkpoints(weights, tmp_path):
    """`{"model_state": sd}` (as Fast-WAM's converter expects) and a `model.` prefix on every name load the same."""
    sd = torch.load(weights["release"] / "Wan2.2_VAE.pth")
    torch.save({"model_state": sd}, tmp_path / "wrapped.pth")
    torch.save({f"model.{k}": v for k, v in sd.items()}, tmp_path / "prefixed.pth")
    ref = open_component(weights["release"], "vae").digest()
    assert open_component(tmp_path / "wrapped.pth", "vae").digest() == ref
    assert open_component(tmp_path / "prefixed.pth", "vae").digest() == ref


def test_sharded_release_dit(weights, tmp_path):
    """Shards of the release DiT (each lacks some names) are recognised together; the trainer loads them."""
    from _factories_train import tiny_model_config
    from safetensors.torch import load_file, save_file

    from fastwam_train.model import MoT, load_wan_weights

    sd = load_file(str(weights["release"] / "diffusion_pytorch_model-00001-of-00001.safetensors"))
    names = sorted(sd)
    d = tmp_path / "sharded"
    d.mkdir()
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        save_file({k: sd[k] for k in part}, str(d / f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"))
    (d / "config.json").write_text(json.dumps(ORIGINAL_DIT_CONFIG))
    c = open_component(d, "dit")
    assert (c.layout, len(c.files)) == ("release", 2)
    assert c.verify().digest() == open_component(weights["diffusers"] / "transformer", "dit").digest()
    a, b = MoT(tiny_model_config()).video, MoT(tiny_model_config()).video
    load_wan_weights(a, d)
    load_wan_weights(b, weights["release"])
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
