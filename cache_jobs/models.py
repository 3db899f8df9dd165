"""Encoders of the cache: Wan2.2 VAE (video) and umT5 (text), loaded once per process.

    VaeEncoder.encode   (B, 3, 9, H, W) float32 in [-1, 1]  -> (B, 48, 3, H/16, W/16) uint16
                        = bf16 bits of (mu - latents_mean) / latents_std   (posterior mean, no sampling)
    VaeEncoder.decode   (B, 48, F, h, w) uint16 bf16 bits   -> (B, 3, 4F-3, 16h, 16w) float32 in [-1, 1]
    TextEncoder.encode  [prompt] * P                         -> (P, 128, D) uint16 bf16 bits, (P, 128) bool
                        umT5 last hidden state, positions past the prompt's tokens zeroed (Wan / Fast-WAM)

Models come from a file or dir in any supported layout (diffusers, Wan release, DiffSynth: found by content,
converted exactly by cache_jobs.weights) and live in a per-process cache keyed by (kind, path, dtype, device):
a dask worker loads each once; tasks carry only the small frozen configs.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass
from pathlib import Path

import ftfy
import numpy as np
import regex
import torch

from schemas.cache import TEXT_LEN
from schemas.errors import SchemaError

_CACHE: dict[tuple, object] = {}
_LOCK = threading.Lock()
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if resolve_device(device).startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise SchemaError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def vae_digest(path: str | Path) -> str:
    """sha256 of the VAE's architecture + latents stats + tensor content (layout- and file-format-independent:
    the Wan release file and its diffusers conversion give the same digest)."""
    from cache_jobs.weights.component import open_component

    return open_component(path, "vae").verify().digest()


def text_digest(path: str | Path, tokenizer: str | Path) -> str:
    from cache_jobs.weights.component import open_component
    from cache_jobs.weights.resolve import tokenizer_digest

    return f"{open_component(path, 'text').verify().digest()}+{tokenizer_digest(tokenizer)}"


def bf16_bits(x: torch.Tensor) -> np.ndarray:
    return x.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)


def from_bf16_bits(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)


def _cached(key: tuple, build):
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def loaded_models() -> list[tuple]:
    """Keys of the models this process holds (tests use it to prove one load per worker)."""
    return list(_CACHE)


@dataclass(frozen=True)
class VaeConfig:
    model_dir: str              # file or dir, any supported layout
    dtype: str = "auto"         # auto: bf16 on CUDA, float32 on CPU
    device: str = "auto"
    batch_size: int = 4

    def __post_init__(self):
        if self.batch_size <= 0:
            raise SchemaError(f"batch_size must be positive, got {self.batch_size}")


class VaeEncoder:
    def __init__(self, cfg: VaeConfig):
        from cache_jobs.weights.component import open_component

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, cfg.device)
        self.model = open_component(cfg.model_dir, "vae").load(self.dtype).to(self.device).eval()
        c = self.model.config
        if len(c.latents_mean) != c.z_dim or len(c.latents_std) != c.z_dim:
            raise SchemaError(f"{cfg.model_dir}: latents_mean/std must have z_dim={c.z_dim} entries")
        self.mean = torch.tensor(c.latents_mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(c.latents_std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1, 1)
        self.spatial = int(c.scale_factor_spatial)
        self.z_dim = int(c.z_dim)

    @classmethod
    def get(cls, cfg: VaeConfig) -> VaeEncoder:
        return _cached(("vae", str(Path(cfg.model_dir).resolve()), cfg.dtype, resolve_device(cfg.device)),
                       lambda: cls(cfg))

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (self.z_dim, 1 + (num_frames - 1) // 4, height // self.spatial, width // self.spatial)

    @torch.no_grad()
    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """(B, 3, F, H, W) float32 [-1, 1] -> (B, 48, F_lat, h, w) uint16 bf16 bits, in batches of batch_size."""
        out = []
        for i in range(0, len(pixels), self.cfg.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(pixels[i:i + self.cfg.batch_size]))
            mu = self.model.encode(x.to(self.device, self.dtype)).latent_dist.mean
            out.append(bf16_bits((mu.float() - self.mean) / self.std))
        return np.concatenate(out)

    @torch.no_grad()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        z = from_bf16_bits(latents).to(self.device, torch.float32) * self.std + self.mean
        return self.model.decode(z.to(self.dtype)).sample.float().cpu().numpy()


@dataclass(frozen=True)
class TextConfig:
    model_dir: str              # file or dir, any supported layout
    dtype: str = "auto"
    device: str = "auto"
    max_length: int = TEXT_LEN
    batch_size: int = 16
    tokenizer_dir: str | None = None   # None: found next to model_dir (cache_jobs.weights.resolve.find_tokenizer)

    def __post_init__(self):
        if self.max_length <= 0 or self.batch_size <= 0:
            raise SchemaError(f"max_length and batch_size must be positive, got {self.max_length}, {self.batch_size}")


def prompt_clean(text: str) -> str:
    """Wan's prompt cleaning, as Fast-WAM's tokenizer (clean="whitespace") and diffusers' Wan pipeline do it:
    ftfy.fix_text, html-unescape twice, strip, then runs of whitespace (`regex` \\s) -> one space, strip."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip()


class TextEncoder:
    def __init__(self, cfg: TextConfig):
        from cache_jobs.weights.component import open_component
        from cache_jobs.weights.resolve import find_tokenizer, load_tokenizer

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, cfg.device)
        comp = open_component(cfg.model_dir, "text")
        self.model = comp.load(self.dtype).to(self.device).eval()
        tok_dir = cfg.tokenizer_dir or find_tokenizer(Path(cfg.model_dir))
        self.tokenizer = load_tokenizer(tok_dir, int(self.model.config.vocab_size))
        self.dim = int(self.model.config.d_model)

    @classmethod
    def get(cls, cfg: TextConfig) -> TextEncoder:
        return _cached(("text", str(Path(cfg.model_dir).resolve()), cfg.dtype, resolve_device(cfg.device)),
                       lambda: cls(cfg))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        embs, masks = [], []
        for i in range(0, len(prompts), self.cfg.batch_size):
            batch = [prompt_clean(p) for p in prompts[i:i + self.cfg.batch_size]]
            tok = self.tokenizer(batch, padding="max_length", max_length=self.cfg.max_length, truncation=True,
                                 add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
            ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
            h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            h = torch.where(mask.unsqueeze(-1).bool(), h, torch.zeros((), dtype=h.dtype, device=h.device))
            embs.append(bf16_bits(h))
            masks.append(mask.bool().cpu().numpy())
        if not embs:
            return np.zeros((0, self.cfg.max_length, self.dim), np.uint16), np.zeros((0, self.cfg.max_length), bool)
        return np.concatenate(embs), np.concatenate(masks)
