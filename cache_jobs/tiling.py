"""Camera tiling exactly as Fast-WAM's LeRobot video path does it, pixels in [-1, 1].

    {camera_key: (T, H_c, W_c, 3) uint8 RGB}  --Tiler(layout)-->  (T, 3, H, W) float32 in [-1, 1]

Fast-WAM (`fastwam/datasets/lerobot/robot_video_dataset.py` + processor transforms), per camera:
    uint8 -> float32 / 255                            (transforms.image.ToTensor)
    -> resize to the shape_meta size                  (torchvision Resize: bilinear, antialias=True)
    -> [robotwin only] resize to the T-shape cell     (bilinear, antialias=True)
then cells are concatenated into the canvas, the canvas gets ResizeSmallestSideAspectPreserving + CenterCrop
to `video_size` (both the identity here: the canvas *is* video_size) and Normalize(0.5, 0.5) -> [-1, 1].
Aspect ratio is not preserved per camera (Resize([h, w]) stretches), so there is no per-camera crop.

`pre_resize` models the first resize of a two-step layout: Fast-WAM's RoboTwin config resizes every
camera to 240x320 before the T-shape resize (head 256x320, wrists 128x160). A resize to the size an image
already has is skipped (torchvision does the same), so it is exact for cameras already at that size.

Custom layouts come from a JSON file: {"name", "height", "width", "cells": [{"camera", "top", "left",
"height", "width"}, ...], "pre_resize": {camera: [h, w]}?, "fill": float?}. Canvas sides must be multiples of
SPATIAL_MULTIPLE (32); cells must not overlap; uncovered canvas pixels get `fill` (default 0.0 = mid grey).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from schemas.chunks import BUILTIN_LAYOUTS, SPATIAL_MULTIPLE, TileLayout
from schemas.errors import SchemaError

# Fast-WAM's per-camera shape_meta resize that precedes the layout resize (configs/data/robotwin.yaml).
FASTWAM_PRE_RESIZE: dict[str, dict[str, tuple[int, int]]] = {
    "libero": {},
    "robotwin": {c.camera: (240, 320) for c in BUILTIN_LAYOUTS["robotwin"].cells},
}


@dataclass(frozen=True)
class TilingConfig:
    """Which layout to tile into: a builtin name (`libero`, `robotwin`) or a JSON file path."""

    layout: str = "libero"

    def __post_init__(self):
        if not self.layout:
            raise SchemaError("layout must be a builtin name or a JSON file, got ''")


@dataclass(frozen=True)
class ResolvedLayout:
    layout: TileLayout
    pre_resize: dict[str, tuple[int, int]] = field(default_factory=dict)
    fill: float = 0.0

    def __post_init__(self):
        cams = set(self.layout.cameras)
        if len(cams) != len(self.layout.cells):
            raise SchemaError(f"layout {self.layout.name!r}: a camera appears in more than one cell")
        for cam, hw in self.pre_resize.items():
            if cam not in cams:
                raise SchemaError(f"layout {self.layout.name!r}: pre_resize names unknown camera {cam!r}")
            if len(hw) != 2 or min(hw) <= 0:
                raise SchemaError(f"layout {self.layout.name!r}: pre_resize[{cam!r}] must be [h, w] > 0, got {hw}")
        if not -1.0 <= self.fill <= 1.0:
            raise SchemaError(f"layout {self.layout.name!r}: fill must be in [-1, 1], got {self.fill}")
        cover = np.zeros((self.layout.height, self.layout.width), np.int32)
        for c in self.layout.cells:
            cover[c.top:c.top + c.height, c.left:c.left + c.width] += 1
        if (cover > 1).any():
            raise SchemaError(f"layout {self.layout.name!r}: cells overlap")

    def to_dict(self) -> dict:
        return {**self.layout.to_dict(), "pre_resize": {k: list(v) for k, v in self.pre_resize.items()},
                "fill": self.fill}

    def digest(self) -> str:
        import hashlib
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def load_layout(spec: str | Path) -> ResolvedLayout:
    """`libero` | `robotwin` | path to a JSON layout file -> ResolvedLayout (errors name the file)."""
    spec = str(spec)
    if spec in BUILTIN_LAYOUTS:
        return ResolvedLayout(BUILTIN_LAYOUTS[spec], dict(FASTWAM_PRE_RESIZE[spec]))
    path = Path(spec)
    if not path.is_file():
        raise SchemaError(f"layout must be one of {sorted(BUILTIN_LAYOUTS)} or a JSON file; {spec!r} is neither")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: layout is not valid JSON: {e}") from e
    try:
        for side in ("height", "width"):
            v = d.get(side)
            if isinstance(v, int) and v % SPATIAL_MULTIPLE:
                raise SchemaError(f"canvas {side} {v} is not a multiple of {SPATIAL_MULTIPLE} (the Wan2.2 VAE "
                                  f"downsamples x16 and the DiT patchifies x2); pick e.g. "
                                  f"{(v // SPATIAL_MULTIPLE + 1) * SPATIAL_MULTIPLE}")
        layout = TileLayout.from_dict(d)
        pre = {k: (int(v[0]), int(v[1])) for k, v in (d.get("pre_resize") or {}).items()}
        return ResolvedLayout(layout, pre, float(d.get("fill", 0.0)))
    except (SchemaError, TypeError, KeyError, ValueError, IndexError) as e:
        raise SchemaError(f"{path}: bad layout: {e}") from e


def resize_like_torchvision(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision `F.resize(x, size, BILINEAR, antialias=True)` on float (N, C, H, W); same size -> no-op."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=list(size), mode="bilinear", align_corners=False, antialias=True)


@dataclass(frozen=True)
class Tiler:
    """Frames of every camera -> tiled canvas in [-1, 1]. Call with {camera: (T, H, W, 3) uint8}."""

    resolved: ResolvedLayout

    @property
    def layout(self) -> TileLayout:
        return self.resolved.layout

    def __call__(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        lay = self.layout
        missing = [c for c in lay.cameras if c not in frames]
        if missing:
            raise SchemaError(f"layout {lay.name!r} needs cameras {missing}; got {sorted(frames)}")
        T = {c: frames[c].shape[0] for c in lay.cameras}
        if len(set(T.values())) != 1:
            raise SchemaError(f"cameras have different frame counts: {T}")
        n = next(iter(T.values()))
        canvas = torch.full((n, 3, lay.height, lay.width), (self.resolved.fill + 1.0) / 2.0)
        for c in lay.cells:
            img = frames[c.camera]
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] != 3:
                raise SchemaError(f"camera {c.camera!r}: expected (T, H, W, 3) uint8, got {img.shape} {img.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(img)).permute(0, 3, 1, 2).to(torch.float32) / 255.0
            if c.camera in self.resolved.pre_resize:
                x = resize_like_torchvision(x, self.resolved.pre_resize[c.camera])
            x = resize_like_torchvision(x, (c.height, c.width))
            canvas[:, :, c.top:c.top + c.height, c.left:c.left + c.width] = x
        return ((canvas - 0.5) / 0.5).numpy()
