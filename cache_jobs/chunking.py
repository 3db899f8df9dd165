"""Temporal Fast-WAM chunks of one episode.

    episode: tiled frames (T, 3, H, W) float32, action (T, A), state (T, S)
    chunk at start t (t = 0, s, 2s, ... < T for start stride s):
        frames        (9, 3, H, W)   raw frames t, t+4, ..., t+32       frame_is_pad  (9,)  t+4i >= T
        actions       (32, A)        actions t ... t+31                  action_is_pad (32,) t+k >= T
        state         (S,)           state at t
    Past the episode end the last frame / action is repeated and flagged (Fast-WAM: clamp to the episode).

Storage a start stride implies: an episode of T frames gives ceil(T / s) chunks, each stored as
48 x 3 x (H/16) x (W/16) bf16 latents (libero 224x448: 48*3*14*28*2 B = 110.25 KiB; robotwin 384x320:
48*3*24*20*2 B = 135 KiB) + 32*A + S float32 + 41 pad bytes + 3 int64. With s = 1 (every frame, like
Fast-WAM) the latent cache is ~110 KiB per raw frame for LIBERO (about 29 GiB for its ~270k frames);
s = 4 divides that by 4 but a model then only ever sees every 4th start frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from schemas.chunks import ChunkSpec
from schemas.errors import SchemaError


def num_chunks(length: int, spec: ChunkSpec) -> int:
    if length <= 0:
        raise SchemaError(f"episode length must be positive, got {length}")
    return -(-length // spec.start_stride)


def chunk_starts(length: int, spec: ChunkSpec) -> list[int]:
    return list(range(0, length, spec.start_stride))[: num_chunks(length, spec)]


def chunk_indices(t: int, length: int, spec: ChunkSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(frame_idx (9,), frame_is_pad (9,), action_idx (32,), action_is_pad (32,)), indices clamped to T-1."""
    if not 0 <= t < length:
        raise SchemaError(f"chunk start t={t} outside the episode [0, {length})")
    f = t + np.asarray(spec.frame_offsets(), np.int64)
    a = t + np.arange(spec.action_horizon, dtype=np.int64)
    return np.minimum(f, length - 1), f >= length, np.minimum(a, length - 1), a >= length


def needed_frames(length: int, spec: ChunkSpec) -> np.ndarray:
    """Sorted unique raw frame indices any chunk of this episode uses (what needs tiling)."""
    idx = [chunk_indices(t, length, spec)[0] for t in chunk_starts(length, spec)]
    return np.unique(np.concatenate(idx))


@dataclass(frozen=True)
class EpisodeChunker:
    """Yield the chunk dicts of one episode from arrays decoded (and tiled) once for the whole episode."""

    spec: ChunkSpec

    def __call__(self, episode: int, frames: np.ndarray, action: np.ndarray, state: np.ndarray,
                 frame_rows: np.ndarray | None = None) -> Iterator[dict]:
        """`frames[frame_rows[i]]` is raw frame i; frame_rows=None means frames holds every raw frame."""
        T = len(action)
        if len(state) != T:
            raise SchemaError(f"episode {episode}: action has {T} rows but state has {len(state)}")
        if action.ndim != 2 or state.ndim != 2:
            raise SchemaError(f"episode {episode}: action/state must be (T, D), got {action.shape} {state.shape}")
        lookup = np.arange(T) if frame_rows is None else frame_rows
        for t in chunk_starts(T, self.spec):
            fi, fpad, ai, apad = chunk_indices(t, T, self.spec)
            yield {
                "episode_index": episode,
                "frame_index": t,
                "frames": frames[lookup[fi]],
                "frame_is_pad": fpad,
                "actions": np.asarray(action[ai], np.float32),
                "action_is_pad": apad,
                "state": np.asarray(state[t], np.float32),
            }
