"""Tiling: Fast-WAM's per-camera resize (bilinear, antialias) + concat + [-1, 1]."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cache_jobs.tiling import Tiler, load_layout, resize_like_torchvision
from schemas.chunks import LIBERO_LAYOUT
from schemas.errors import SchemaError

MAIN, WRIST = "observation.images.image", "observation.images.wrist_image"


def _frames(rng, T, H, W):
    return rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def test_libero_canvas_shape_range_and_cells():
    rng = np.random.default_rng(0)
    fr = {MAIN: _frames(rng, 2, 224, 224), WRIST: _frames(rng, 2, 128, 128)}
    out = Tiler(load_layout("libero"))(fr)
    assert out.shape == (2, 3, 224, 448) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    # a camera already at its cell size is not resampled: exactly x / 255 * 2 - 1 (Normalize(0.5, 0.5))
    want = (fr[MAIN].transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - 0.5) / 0.5
    np.testing.assert_array_equal(out[:, :, :, :224], want)
    # the wrist camera is upsampled 128 -> 224 with torch bilinear antialias
    x = torch.from_numpy(fr[WRIST]).permute(0, 3, 1, 2).float() / 255.0
    ref = torch.nn.functional.interpolate(x, size=[224, 224], mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_allclose(out[:, :, :, 224:], (ref.numpy() - 0.5) / 0.5, atol=1e-6)


def test_downscale_matches_pil_bilinear_antialias():
    """torchvision's antialiased bilinear resize is PIL's BILINEAR filter; check ours against PIL."""
    rng = np.random.default_rng(1)
    img = rng.random((128, 96)).astype(np.float32)
    ours = resize_like_torchvision(torch.from_numpy(img)[None, None], (56, 40))[0, 0].numpy()
    pil = np.asarray(Image.fromarray(img, mode="F").resize((40, 56), Image.BILINEAR))
    np.testing.assert_allclose(ours, pil, atol=2e-5)


def test_robotwin_two_step_resize_like_fastwam():
    rng = np.random.default_rng(2)
    cams = [c.camera for c in load_layout("robotwin").layout.cells]
    fr = {c: _frames(rng, 1, 480, 640) for c in cams}
    out = Tiler(load_layout("robotwin"))(fr)
    assert out.shape == (1, 3, 384, 320)
    x = torch.from_numpy(fr[cams[1]]).permute(0, 3, 1, 2).float() / 255.0
    two = resize_like_torchvision(resize_like_torchvision(x, (240, 320)), (128, 160)).numpy() * 2 - 1
    one = resize_like_torchvision(x, (128, 160)).numpy() * 2 - 1
    np.testing.assert_allclose(out[:, :, 256:, :160], two, atol=1e-6)
    assert np.abs(out[:, :, 256:, :160] - one).max() > 1e-3   # one-step would differ: we follow Fast-WAM


def test_custom_layout_file_and_fill(tmp_path):
    lay = {"name": "one", "height": 64, "width": 96, "fill": -1.0,
           "cells": [{"camera": MAIN, "top": 0, "left": 0, "height": 64, "width": 64}]}
    p = tmp_path / "l.json"
    p.write_text(json.dumps(lay))
    out = Tiler(load_layout(p))({MAIN: np.full((1, 32, 32, 3), 255, np.uint8)})
    assert out.shape == (1, 3, 64, 96)
    np.testing.assert_allclose(out[:, :, :, :64], 1.0, atol=1e-6)
    assert (out[:, :, :, 64:] == -1.0).all()


@pytest.mark.parametrize("bad, msg", [
    ({"height": 100}, "not a multiple of 32"),
    ({"width": 48}, "not a multiple of 32"),
    ({"cells": [{"camera": MAIN, "top": 0, "left": 0, "height": 64, "width": 64},
                {"camera": WRIST, "top": 32, "left": 32, "height": 32, "width": 32}]}, "overlap"),
    ({"cells": [{"camera": MAIN, "top": 0, "left": 64, "height": 64, "width": 64}]}, "exceeds"),
])
def test_bad_layouts_name_the_file(tmp_path, bad, msg):
    lay = {"name": "x", "height": 64, "width": 96,
           "cells": [{"camera": MAIN, "top": 0, "left": 0, "height": 64, "width": 64}], **bad}
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(lay))
    with pytest.raises(SchemaError, match=msg) as e:
        load_layout(p)
    assert str(p) in str(e.value)


def test_unknown_layout_and_missing_camera():
    with pytest.raises(SchemaError, match="libero"):
        load_layout("nope")
    with pytest.raises(SchemaError, match="wrist_image"):
        Tiler(load_layout("libero"))({MAIN: np.zeros((1, 8, 8, 3), np.uint8)})
    assert load_layout("libero").layout == LIBERO_LAYOUT
