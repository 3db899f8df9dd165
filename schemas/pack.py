"""`pack_meta.json` beside the packed webdataset shards: written by `wamdata pack`, read by `fastwam_train`.

    pack_meta.json = PackMeta.to_dict()
      normalization  "mean_std" | "min_max" | "quantile" (q01/q99) | "none"
      action_stats   {stat: [A]}   the stats the mode uses, raw units (mean+std, min+max or q01+q99)
      state_stats    {stat: [S]}
      action_dim, state_dim, action_horizon, latent_shape [48, F_lat, h, w], text_dim, text_len,
      num_samples, config_hash

`normalize` / `unnormalize` are the one definition both sides use, Fast-WAM's `SingleFieldLinearNormalizer`
(datasets/lerobot/utils/normalizer.py) in float32: y = x * scale + offset, x = (y - offset) / scale, with
    mean_std   scale = 1 / (std + 1e-8), offset = -mean / (std + 1e-8)
    min_max    (min, max) -> [-1, 1]: scale = 2 / (max - min), offset = -1 - scale * min;
    quantile   the same on (q01, q99);
               a dimension whose range is < 1e-4 gets scale 1, offset -min: a constant dimension maps to 0.0.
(`wamdata pack` clamps to +-clamp after normalizing, Fast-WAM's fixed +-5.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from schemas.errors import SchemaError

# 2: Fast-WAM's normalizer (constant dims -> 0, std + 1e-8); a version-1 pack would unnormalize wrongly
PACK_FORMAT_VERSION = 2
NORM_MODES = ("mean_std", "min_max", "quantile", "none")
NORM_STATS = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "quantile": ("q01", "q99"), "none": ()}
STD_REG = 1e-8      # Fast-WAM SingleFieldLinearNormalizer.std_reg
RANGE_TOL = 1e-4    # .range_tol: narrower min/max (q01/q99) ranges are not scaled


@dataclass(frozen=True)
class PackMeta:
    normalization: str
    action_dim: int
    state_dim: int
    latent_shape: tuple[int, int, int, int]
    text_dim: int
    num_samples: int
    config_hash: str
    action_stats: dict[str, list[float]] = field(default_factory=dict)
    state_stats: dict[str, list[float]] = field(default_factory=dict)
    action_horizon: int = 32
    text_len: int = 128
    format_version: int = PACK_FORMAT_VERSION

    def __post_init__(self):
        if self.format_version != PACK_FORMAT_VERSION:
            raise SchemaError(f"pack format_version is {self.format_version}, this wamdata reads "
                              f"{PACK_FORMAT_VERSION} (normalization changed); re-run `wamdata pack`")
        if self.normalization not in NORM_MODES:
            raise SchemaError(f"normalization must be one of {NORM_MODES}, got {self.normalization!r}")
        object.__setattr__(self, "latent_shape", tuple(int(s) for s in self.latent_shape))
        if len(self.latent_shape) != 4 or any(s <= 0 for s in self.latent_shape):
            raise SchemaError(f"latent_shape must be 4 positive ints [C, F, h, w], got {self.latent_shape}")
        for name in ("action_dim", "state_dim", "text_dim", "action_horizon", "text_len"):
            if int(getattr(self, name)) <= 0:
                raise SchemaError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_samples < 0:
            raise SchemaError(f"num_samples must be >= 0, got {self.num_samples}")
        for which, stats, dim in (("action_stats", self.action_stats, self.action_dim),
                                  ("state_stats", self.state_stats, self.state_dim)):
            for stat in NORM_STATS[self.normalization]:
                if stat not in stats:
                    raise SchemaError(f"{which} is missing {stat!r} required by {self.normalization!r}")
                if len(stats[stat]) != dim:
                    raise SchemaError(f"{which}[{stat!r}] has {len(stats[stat])} entries, expected {dim}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["latent_shape"] = list(self.latent_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PackMeta:
        required = ("normalization", "action_dim", "state_dim", "latent_shape", "text_dim", "num_samples",
                    "config_hash")
        for req in required:
            if req not in d:
                raise SchemaError(f"pack meta is missing {req!r}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @classmethod
    def load(cls, path: str | Path) -> PackMeta:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise SchemaError(f"{path}: cannot read pack meta: {e}") from e


def affine(mode: str, stats: dict[str, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) float32 of Fast-WAM's linear normalizer for `mode` and raw-unit `stats`."""
    if mode not in NORM_MODES or mode == "none":
        raise SchemaError(f"no affine normalization for mode {mode!r}")
    a, b = NORM_STATS[mode]
    lo, hi = np.asarray(stats[a], np.float32), np.asarray(stats[b], np.float32)
    if mode == "mean_std":
        denom = hi + np.float32(STD_REG)
        return np.float32(1.0) / denom, -lo / denom
    rng = hi - lo
    ignore = rng < np.float32(RANGE_TOL)
    rng[ignore] = np.float32(2.0)
    scale = np.float32(2.0) / rng
    offset = np.float32(-1.0) - scale * lo
    offset[ignore] = -lo[ignore]
    return scale, offset


def normalize(x: np.ndarray, mode: str, stats: dict[str, list[float]]) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if mode == "none":
        return x
    scale, offset = affine(mode, stats)
    return x * scale + offset


def unnormalize(x: np.ndarray, mode: str, stats: dict[str, list[float]]) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if mode == "none":
        return x
    scale, offset = affine(mode, stats)
    return (x - offset) / scale
