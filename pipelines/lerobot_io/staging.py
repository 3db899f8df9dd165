"""Stage one episode on disk, atomically: what a worker process writes, independent of the others.

    RawEpisode --stage_episode--> STAGING/<uid>/      (renamed into place only when complete)
                                    frames.parquet    state, action, extras, timestamp, frame_index
                                    <video_key>.mp4   one per camera, frame i at i/fps
                                    summary.json      task, length, features, per-episode stats, histograms

Episode/task/global indices are assigned later by `finalize` (they depend on every other episode).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lerobot_io import stats as S
from pipelines.lerobot_io.video import encode_frames
from schemas import keys
from schemas.episode import RawEpisode
from schemas.errors import SchemaError

SUMMARY = "summary.json"
FRAMES = "frames.parquet"


@dataclass(frozen=True)
class VideoConfig:
    vcodec: str = keys.DEFAULT_VCODEC
    crf: int = keys.DEFAULT_CRF
    g: int = keys.DEFAULT_GOP
    pix_fmt: str = keys.DEFAULT_PIX_FMT
    preset: int | None = keys.DEFAULT_SVTAV1_PRESET  # libsvtav1 only (see schemas.keys)
    svtav1_params: str = keys.DEFAULT_SVTAV1_PARAMS  # libsvtav1 only: extra `svtav1-params` (see schemas.keys)

    def __post_init__(self):
        if self.vcodec not in keys.VCODEC_CHOICES:
            raise SchemaError(f"vcodec must be one of {keys.VCODEC_CHOICES}, got {self.vcodec!r}")
        if not 0 <= self.crf <= 63:
            raise SchemaError(f"crf must be in [0, 63], got {self.crf}")
        if self.g <= 0:
            raise SchemaError(f"g must be positive, got {self.g}")
        if self.preset is not None and not 0 <= self.preset <= 13:
            raise SchemaError(f"preset must be in [0, 13], got {self.preset}")


def vector_column(arr: np.ndarray) -> pa.Array:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def episode_numeric(ep: RawEpisode) -> dict[str, np.ndarray]:
    """The per-frame numeric features of an episode, (T, D) float32, keyed by feature key."""
    return {keys.STATE: ep.state, keys.ACTION: ep.action, **ep.extra}


def tmp_dir(dest: Path, pid: int) -> Path:
    """Where process `pid` writes `dest` before renaming it into place."""
    return dest.with_name(f"{dest.name}.tmp{pid}")


def stage_episode(ep: RawEpisode, dest: Path, fps: float, video: VideoConfig, before_encode=None) -> dict:
    """Write `ep` to `dest` (a directory that appears only when complete). Returns the summary.
    `before_encode(frames, pixels)` is passed to the encoder as its liveness beat (see `encode_frames`)."""
    tmp = tmp_dir(dest, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    T = ep.length
    numeric = episode_numeric(ep)
    cols = {k: vector_column(v if v.ndim == 2 else v[:, None]) for k, v in numeric.items()}
    timestamp = (np.arange(T) / fps).astype(np.float32)
    cols[keys.TIMESTAMP] = pa.array(timestamp)
    cols[keys.FRAME_INDEX] = pa.array(np.arange(T, dtype=np.int64))
    pq.write_table(pa.table(cols), tmp / FRAMES)

    names = {keys.STATE: ep.state_names, keys.ACTION: ep.action_names}
    features = {k: {"dtype": "float32", "shape": [int(v.reshape(T, -1).shape[1])], "names": names.get(k)}
                for k, v in numeric.items()}
    stats = {k: S.numeric_stats(v) for k, v in numeric.items()}
    stats[keys.TIMESTAMP] = S.numeric_stats(timestamp)
    stats[keys.FRAME_INDEX] = S.numeric_stats(np.arange(T))
    hists = {}
    for cam, frames in ep.frames.items():
        key = keys.camera_key(cam)
        encode_frames(frames, tmp / f"{key}.mp4", fps, video.vcodec, video.crf, video.g, video.pix_fmt,
                      video.preset, video.svtav1_params, before_call=before_encode)
        hists[key] = S.image_histogram(frames)
        stats[key] = S.histogram_stats(hists[key], T)
        features[key] = {"dtype": "video", "shape": [int(frames.shape[1]), int(frames.shape[2]), 3]}
    summary = {"source_file": ep.source_file, "episode_id": ep.episode_id, "task": ep.task, "length": T,
               "features": features, "stats": S.to_json(stats),
               "histograms": {k: h.tolist() for k, h in hists.items()}, "meta": ep.meta,
               "video": asdict(video), "fps": fps}
    (tmp / SUMMARY).write_text(json.dumps(summary))
    os.rename(tmp, dest)  # atomic: a staged episode is complete or absent
    return summary


def load_summary(d: Path) -> dict:
    return json.loads((d / SUMMARY).read_text())
