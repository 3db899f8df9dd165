"""Factory for the pack tests: a complete latent cache written through cache_jobs.store (the cache writer's own
functions) and cache_jobs.chunking, from per-frame action/state arrays, with random latents and text (no VAE).

    write_cache(root, episodes=[(action (T, A), state (T, S)), ...], tasks=[...], layout="libero", stride=1,
                fps=10.0, dataset=None)   -> root
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cache_jobs import store as S
from cache_jobs.chunking import EpisodeChunker
from schemas import cache as C
from schemas.chunks import ChunkSpec

LATENT = (48, 3, 1, 2)
TEXT_DIM = 8


def write_cache(root: Path, episodes: list[tuple[np.ndarray, np.ndarray]], tasks: list[str] | None = None,
                layout: str = "libero", stride: int = 1, fps: float = 10.0, dataset: dict | None = None,
                seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    spec = ChunkSpec(start_stride=stride)
    tasks = tasks or ["pick up the bowl"] * len(episodes)
    prompts = list(dict.fromkeys(C.prompt_for(t) for t in tasks))
    plan = [(i, len(a), prompts.index(C.prompt_for(tasks[i]))) for i, (a, _) in enumerate(episodes)]
    units, n_rows = S.make_plan(plan, spec, rows_per_shard=4, unit_rows=8)
    A, Sd = episodes[0][0].shape[1], episodes[0][1].shape[1]
    man = {"format": "wamdata-latent-cache/1", "hash_inputs": {"chunks": asdict(spec), "layout": {"name": layout}},
           "fps": fps, "num_rows": n_rows, "rows_per_shard": 4, "latent_shape": list(LATENT), "action_dim": A,
           "state_dim": Sd, "stats": {}, "prompts": prompts, "prompt_keys": [C.prompt_key(p) for p in prompts],
           "units": S.plan_to_dicts(units)}
    config_hash = hashlib.sha256(json.dumps([str(root), seed]).encode()).hexdigest()
    S.prepare_dir(root, config_hash, man)
    g = S.create_arrays(root, n_rows, 4, LATENT, spec, A, Sd)
    chunker = EpisodeChunker(spec)
    markers = []
    for u in units:
        bufs = S.unit_buffers(u, g)
        for ep in u.episodes:
            a, s = episodes[ep.episode]
            chunks = list(chunker(ep.episode, np.zeros((len(a), 1), np.float32), a, s))
            sl = slice(ep.row0 - u.row0, ep.row0 - u.row0 + len(chunks))
            bufs[C.ARR_LATENTS][sl] = rng.integers(0, 1 << 14, (len(chunks), *LATENT), dtype=np.uint16)
            for name, k in ((C.ARR_ACTIONS, "actions"), (C.ARR_STATE, "state"), (C.ARR_ACTION_IS_PAD, "action_is_pad"),
                            (C.ARR_FRAME_IS_PAD, "frame_is_pad"), (C.ARR_T, "frame_index")):
                bufs[name][sl] = np.stack([c[k] for c in chunks])
            bufs[C.ARR_EPISODE][sl] = ep.episode
            bufs[C.ARR_PROMPT][sl] = ep.prompt_index
            bufs[S.ARR_VALID][sl] = True
        markers.append(S.write_unit(root, u, bufs, 4, []))
    emb = np.stack([np.random.default_rng(int(C.prompt_key(p)[:8], 16)).integers(0, 1 << 14, (C.TEXT_LEN, TEXT_DIM),
                                                                                 dtype=np.uint16) for p in prompts])
    mask = np.zeros((len(prompts), C.TEXT_LEN), bool)
    mask[:, :5] = True
    text = S.write_text(root, man["prompt_keys"], emb, mask)
    S.finish_manifest(root, markers, text)
    if dataset is not None:
        (root / C.CACHE_CONFIG).write_text(json.dumps({"dataset": dataset}))
    return root
