"""`wamdata inspect CACHE`: VAE-decode a few cached latents next to the source tiles, as one PNG.

    n rows (valid chunks spread over the cache), 4 columns:
      source tile frame t | decoded frame t | source tile frame t+32 | decoded frame t+32
    Source tiles are recomputed from the dataset recorded in the manifest (decode + resize + tile), the
    decoded frames come from the VAE recorded there (de-normalized: z * latents_std + latents_mean).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from cache_jobs import store as S
from cache_jobs.config import CacheJobConfig
from schemas import cache as C


def _to_img(x: np.ndarray) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return np.clip((x.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def inspect_cache(cache: str | Path, out_png: str | Path, n: int = 4) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cache_jobs.chunking import chunk_indices
    from cache_jobs.job import open_reader
    from cache_jobs.models import VaeEncoder
    from cache_jobs.tiling import Tiler, load_layout

    cache = Path(cache)
    cfg = CacheJobConfig.from_dict(json.loads((cache / C.CACHE_CONFIG).read_text()))
    g = zarr.open_group(str(cache), mode="r")
    rows = np.flatnonzero(g[S.ARR_VALID][:])
    if len(rows) == 0:
        raise ValueError(f"{cache}: no valid chunks to inspect")
    pick = rows[np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)]
    vae = VaeEncoder.get(cfg.vae)
    reader = open_reader(cfg)
    tiler = Tiler(load_layout(cfg.tiling.layout))
    fig, axes = plt.subplots(len(pick), 4, figsize=(12, 3 * len(pick)), squeeze=False)
    errs = []
    for i, r in enumerate(pick):
        ep, t = int(g[C.ARR_EPISODE][r]), int(g[C.ARR_T][r])
        length = len(reader.episode_columns(ep)[cfg.dataset.action_key])
        fi = chunk_indices(t, length, cfg.chunks)[0]
        src = tiler({cam: reader.episode_frames(ep, cam)[fi] for cam in tiler.layout.cameras})  # (9, 3, H, W)
        dec = vae.decode(g[C.ARR_LATENTS][r:r + 1])[0].transpose(1, 0, 2, 3)                     # (9, 3, H, W)
        errs.append(float(np.abs(dec - src).mean()))
        for j, (img, title) in enumerate(((src[0], "source t"), (dec[0], "decoded t"),
                                          (src[-1], "source t+32"), (dec[-1], "decoded t+32"))):
            axes[i, j].imshow(_to_img(img))
            axes[i, j].set_title(f"ep {ep} t {t}: {title}", fontsize=8)
            axes[i, j].axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return {"png": str(out_png), "rows": [int(r) for r in pick], "mean_abs_err": errs}
