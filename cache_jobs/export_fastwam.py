"""`wamdata export-fastwam`: a pack dir -> the files the official Fast-WAM trainer reads instead of computing them.

    SHARDS/text_embeddings.safetensors  {sha256: bf16 [128, D], sha256 + ".mask": bool [128]}
    SHARDS/dataset_stats.json           the stats the pack normalized with (Fast-WAM format)
      -->
    OUT/text_embeds_cache/{sha256(prompt)}.t5_len{L}.{encoder_id}.pt   torch.save({"context": bf16 [L, D],
                                        "mask": bool [L]}), what scripts/precompute_text_embeds.py writes and
                                        RobotVideoDataset._get_cached_text_context loads (text_embedding_cache_dir)
    OUT/dataset_stats.json              for its pretrained_norm_stats

Our cached context has padded positions zeroed; Fast-WAM zeroes them on load (`context[~mask] = 0`), so what its
dataset returns is the same either way. Each file is written to a temp name and renamed into place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cache_jobs.stats import FASTWAM_STATS_FILE
from schemas import cache as C
from schemas.errors import WamdataError

TEXT_DIR = "text_embeds_cache"
ENCODER_ID = "wan22ti2v5b"          # Fast-WAM's id for Wan-AI/Wan2.2-TI2V-5B (lower-case alphanumerics)


def text_cache_name(key: str, context_len: int, encoder_id: str = ENCODER_ID) -> str:
    return f"{key}.t5_len{context_len}.{encoder_id}.pt"


def export_fastwam(shards: str | Path, out: str | Path, encoder_id: str = ENCODER_ID) -> dict:
    import torch
    from safetensors.torch import load_file

    shards, out = Path(shards), Path(out)
    for need in (C.PACK_TEXT, FASTWAM_STATS_FILE):
        if not (shards / need).is_file():
            raise WamdataError(f"{shards / need}: missing; export-fastwam reads a `wamdata pack` output dir")
    try:
        table = load_file(str(shards / C.PACK_TEXT))
    except Exception as e:  # noqa: BLE001 - an unreadable file is one clear error
        raise WamdataError(f"{shards / C.PACK_TEXT}: unreadable ({type(e).__name__}: {e})") from e
    keys = sorted(k for k in table if not k.endswith(".mask"))
    text_dir = out / TEXT_DIR
    text_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k in keys:
        ctx, mask = table[k], table.get(k + ".mask")
        if mask is None or ctx.ndim != 2 or mask.shape != (ctx.shape[0],) or ctx.dtype != torch.bfloat16:
            raise WamdataError(f"{shards / C.PACK_TEXT}: prompt {k[:12]}…: expected bf16 [L, D] + bool [L] mask")
        path = text_dir / text_cache_name(k, int(ctx.shape[0]), encoder_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"context": ctx.contiguous(), "mask": mask.to(torch.bool).contiguous()}, str(tmp))
        os.replace(tmp, path)
        written.append(path.name)
    stats = out / FASTWAM_STATS_FILE
    tmp = stats.with_name(f".{stats.name}.{os.getpid()}.tmp")
    shutil.copyfile(shards / FASTWAM_STATS_FILE, tmp)
    os.replace(tmp, stats)
    return {"text_embeds": str(text_dir), "files": written, "dataset_stats": str(stats)}
