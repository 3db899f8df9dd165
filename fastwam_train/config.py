"""Nested dataclass configs for `wamdata train`: each component receives only its sub-config.

    TrainConfig
      model      ModelConfig      widths/depths of the video (Wan2.2 TI2V-5B) and action experts, variant
      objective  ObjectiveConfig  flow matching: shift, timestep schedule, loss weighting, lambdas
      optim      OptimConfig      AdamW + cosine-with-warmup + clipping
      data       DataConfig       batch size, shuffling, workers
      loop       LoopConfig       steps, logging, checkpoints, precision, seed

Loaded from a JSON file (partial: missing fields keep defaults), written resolved as RUN/config.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from schemas.errors import SchemaError

VARIANTS = ("fastwam", "joint", "idm", "novideo")
ACTION_INITS = ("interpolate", "interpolate_no_alpha", "random")


def _positive(obj: Any, *names: str) -> None:
    for n in names:
        if getattr(obj, n) <= 0:
            raise SchemaError(f"{n} must be positive, got {getattr(obj, n)}")


@dataclass(frozen=True)
class ModelConfig:
    variant: str = "fastwam"
    in_channels: int = 48
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_heads: int = 24
    head_dim: int = 128
    num_layers: int = 30
    video_ffn_dim: int = 14336
    action_width: int = 1024
    action_ffn_dim: int = 4096
    text_dim: int = 4096           # umT5-xxl; 0: taken from pack_meta.json
    freq_dim: int = 256
    eps: float = 1e-6
    rope_max_seq_len: int = 1024
    action_dim: int = 0            # 0: taken from pack_meta.json
    state_dim: int = 0             # 0: taken from pack_meta.json; proprio -> one extra context token
    action_horizon: int = 32
    wan_dir: str | None = None     # local diffusers-format WanTransformer3DModel directory (real weights)
    action_init: str = "interpolate"   # Fast-WAM: from the video expert with alpha scaling; or
                                       # "interpolate_no_alpha", or "random"
    action_backbone: str | None = None   # Fast-WAM preprocessed `ActionDiT_*.pt` (replaces action_init)
    init_checkpoint: str | None = None   # Fast-WAM weights checkpoint (`{"mot": ...}`) to start from
    gradient_checkpointing: bool = False

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise SchemaError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.action_init not in ACTION_INITS:
            raise SchemaError(f"action_init must be one of {ACTION_INITS}, got {self.action_init!r}")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        _positive(self, "in_channels", "num_heads", "head_dim", "num_layers", "video_ffn_dim", "action_width",
                  "action_ffn_dim", "freq_dim", "action_horizon")
        for name in ("text_dim", "action_dim", "state_dim"):
            if getattr(self, name) < 0:
                raise SchemaError(f"{name} must be >= 0 (0 = from pack_meta.json), got {getattr(self, name)}")
        if self.head_dim % 2:
            raise SchemaError(f"head_dim must be even for RoPE, got {self.head_dim}")

    @property
    def video_width(self) -> int:
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class ObjectiveConfig:
    shift: float = 5.0                   # sigma = shift*u / (1 + (shift-1)*u)
    schedule: str = "uniform"            # u ~ U(0,1), or "logit_normal": u = sigmoid(N(0,1))
    loss_weighting: str = "gaussian"     # Gaussian weight around t = 500 of 1000, or "none"
    num_train_timesteps: int = 1000
    lambda_video: float = 1.0
    lambda_action: float = 1.0
    idm_cond_noise_prob: float = 0.5     # idm: ground-truth conditioning video noise-augmented with this p
    num_inference_steps: int = 10
    cfg_scale: float = 1.0

    def __post_init__(self):
        if self.schedule not in ("uniform", "logit_normal"):
            raise SchemaError(f"schedule must be 'uniform' or 'logit_normal', got {self.schedule!r}")
        if self.loss_weighting not in ("gaussian", "none"):
            raise SchemaError(f"loss_weighting must be 'gaussian' or 'none', got {self.loss_weighting!r}")
        _positive(self, "shift", "num_train_timesteps", "num_inference_steps")
        if not 0.0 <= self.idm_cond_noise_prob <= 1.0:
            raise SchemaError(f"idm_cond_noise_prob must be in [0, 1], got {self.idm_cond_noise_prob}")
        if self.cfg_scale != 1.0:
            raise SchemaError(f"cfg_scale must be 1.0 (Fast-WAM: no guidance), got {self.cfg_scale}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _positive(self, "lr", "grad_clip")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise SchemaError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")


@dataclass(frozen=True)
class DataConfig:
    batch_size: int = 1
    shuffle_buffer: int = 64      # samples; shard order is reshuffled every epoch too
    prefetch: int = 4             # batches decoded ahead by a background thread (0 = inline)
    seed: int = 0
    on_corrupt: str = "raise"     # a sample failing its checksum / a short shard: "raise" (named) or "skip" (counted)

    def __post_init__(self):
        _positive(self, "batch_size")
        if self.shuffle_buffer < 0 or self.prefetch < 0:
            raise SchemaError(f"shuffle_buffer and prefetch must be >= 0, got {self.shuffle_buffer}, {self.prefetch}")
        if self.on_corrupt not in ("raise", "skip"):
            raise SchemaError(f"on_corrupt must be 'raise' or 'skip', got {self.on_corrupt!r}")


@dataclass(frozen=True)
class LoopConfig:
    steps: int = 1000
    log_every: int = 1
    ckpt_every: int = 500
    seed: int = 0
    bf16: bool = True           # CUDA only: bf16 autocast (single/DDP) or FSDP2 bf16 compute params
    device: str = "auto"        # auto | cpu | cuda
    parallel: str = "fsdp"      # several processes: FSDP2 fully_shard (fp32 master sharded), or "ddp"
    param_dtype: str = "float32"   # stored weights/grads/AdamW states; "bfloat16" = Fast-WAM's bf16 weights
    val_every: int = 500        # validate on SHARDS/val every N steps (0: never; skipped without SHARDS/val)
    val_max_samples: int = 64   # the first N samples of the val split (file order)

    def __post_init__(self):
        _positive(self, "steps", "log_every", "ckpt_every", "val_max_samples")
        if self.parallel not in ("fsdp", "ddp"):
            raise SchemaError(f"parallel must be 'fsdp' or 'ddp', got {self.parallel!r}")
        if self.param_dtype not in ("float32", "bfloat16"):
            raise SchemaError(f"param_dtype must be 'float32' or 'bfloat16', got {self.param_dtype!r}")
        if self.val_every < 0:
            raise SchemaError(f"val_every must be >= 0, got {self.val_every}")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return _build(cls, d, "config")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SchemaError(f"{path}: cannot read config: {e}") from e
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        tmp.replace(path)

    def override(self, section: str, **kw) -> TrainConfig:
        return replace(self, **{section: replace(getattr(self, section), **kw)})


def _build(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise SchemaError(f"{where} must be an object, got {type(d).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise SchemaError(f"{where}: unknown keys {sorted(unknown)}")
    kw = {}
    for k, v in d.items():
        default = names[k].default_factory() if callable(names[k].default_factory) else None
        kw[k] = _build(type(default), v, f"{where}.{k}") if is_dataclass(default) else v
    return cls(**kw)
