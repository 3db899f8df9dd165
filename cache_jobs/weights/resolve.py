"""`--model ROOT [--vae P] [--text-encoder P] [--tokenizer DIR]` -> the paths of the three components.

    ROOT: diffusers repo root (vae/ text_encoder/ tokenizer/ transformer/ model_index.json)
          | Wan release dir (Wan2.2_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/)
          | DiffSynth's converted dir (Wan2.2_VAE.safetensors, models_t5_umt5-xxl-enc-bf16.safetensors; the
            tokenizer comes from --tokenizer)
    each override: a file or a dir, found by content (cache_jobs.weights.component.open_component)
    tokenizer: --tokenizer | <text dir> itself | sibling tokenizer/ | google/umt5-xxl/ (Wan release) | ROOT/tokenizer/
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cache_jobs.weights.component import Component, open_component
from cache_jobs.weights.tensors import WEIGHT_SUFFIXES
from schemas.errors import SchemaError

TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
WAN_TOKENIZER = Path("google") / "umt5-xxl"


@dataclass(frozen=True)
class ModelPaths:
    vae: str
    text: str
    tokenizer: str


def is_tokenizer_dir(d: Path) -> bool:
    return d.is_dir() and any((d / f).is_file() for f in TOKENIZER_FILES[:2])


def _is_text_config(p: Path) -> bool:
    try:
        cfg = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return cfg.get("model_type") in ("umt5", "t5") or any("T5" in a for a in cfg.get("architectures") or [])


def find_tokenizer(text_path: Path, root: Path | None = None) -> Path:
    """The umT5 tokenizer dir that goes with a text encoder file/dir (or a model root)."""
    base = text_path if text_path.is_dir() else text_path.parent
    cands = [base, base / WAN_TOKENIZER, base / "tokenizer"]
    if _is_text_config(base / "config.json"):   # a diffusers text_encoder/ dir: the tokenizer is its sibling
        cands.insert(1, base.parent / "tokenizer")
    if root is not None:
        cands += [root / "tokenizer", root / WAN_TOKENIZER]
    tried = []
    for c in cands:
        if c in tried:
            continue
        tried.append(c)
        if is_tokenizer_dir(c):
            return c
    raise SchemaError(f"{text_path}: no umT5 tokenizer found (looked in {', '.join(str(t) for t in tried)}); "
                      f"pass --tokenizer DIR (the google/umt5-xxl tokenizer files)")


def resolve_paths(model: str | None = None, vae: str | None = None, text: str | None = None,
                  tokenizer: str | None = None) -> ModelPaths:
    root = Path(model) if model else None
    if root is not None and not root.is_dir():
        raise SchemaError(f"--model {root}: not a directory (give --vae / --text-encoder for single files)")
    if vae is None and root is None or text is None and root is None:
        raise SchemaError("give --model ROOT, or both --vae and --text-encoder")
    vae_c = open_component(vae or root, "vae")
    text_c = open_component(text or root, "text")
    if tokenizer is not None:
        tok = Path(tokenizer)
        tok = tok if tok.is_dir() else tok.parent
        if not is_tokenizer_dir(tok):
            raise SchemaError(f"--tokenizer {tokenizer}: no tokenizer files ({' / '.join(TOKENIZER_FILES[:2])}) there")
    else:
        tok = find_tokenizer(text_c.source if text is None else Path(text), root)
    return ModelPaths(str(_component_path(vae_c)), str(_component_path(text_c)), str(tok))


def _component_path(c: Component) -> Path:
    """The narrowest path that re-opens the same component (a file, or the component's dir)."""
    return c.files[0] if len(c.files) == 1 and c.layout == "release" else Path(c.source)


def tokenizer_digest(d: str | Path) -> str:
    """sha256 over the tokenizer files (base names + bytes; weights and the model's config.json excluded)."""
    d = Path(d)
    h = hashlib.sha256()
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix not in WEIGHT_SUFFIXES and p.name != "config.json" and not p.name.endswith(
                ".index.json") and not p.name.startswith("."):
            h.update(p.name.encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def load_tokenizer(d: str | Path, vocab_size: int):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(d))
    except Exception as e:  # noqa: BLE001 - one clear line
        raise SchemaError(f"{d}: not a loadable tokenizer ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if len(tok) > vocab_size:
        raise SchemaError(f"{d}: tokenizer has {len(tok)} tokens, the text encoder's embedding only {vocab_size}")
    return tok
