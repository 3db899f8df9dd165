"""`wamdata validate DATASET`: check a LeRobot dataset against its own metadata.

    DATASET/meta/info.json + episodes + tasks + stats, data parquet, videos
      -> list of problems (empty = valid): schema, counts, indices, timestamps, video frame counts, stats,
         and the sha256 of every data/video/meta file against meta/checksums.json (schemas/checksums.py)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.lerobot_io.reader import LeRobotReader
from pipelines.lerobot_io.video import count_frames
from schemas import keys
from schemas.checksums import check_dataset_checksums
from schemas.errors import WamdataError


def validate(root: str | Path, check_videos: bool = True, checksums: bool | None = None) -> list[str]:
    """`checksums`: None checks meta/checksums.json when the dataset has one; True also requires it; False skips."""
    sums = [] if checksums is False else check_dataset_checksums(root, require=bool(checksums))
    return sums + _validate(root, check_videos)


def _validate(root: str | Path, check_videos: bool) -> list[str]:
    try:
        r = LeRobotReader(root)
        episodes, tasks = r.episodes, r.tasks
    except (WamdataError, OSError, KeyError, ValueError) as e:
        return [str(e)]
    problems: list[str] = []
    info = r.info
    if len(episodes) != info.total_episodes:
        problems.append(f"info.total_episodes={info.total_episodes} but {len(episodes)} episodes in meta")
    if len(tasks) != info.total_tasks:
        problems.append(f"info.total_tasks={info.total_tasks} but {len(tasks)} tasks in meta")
    if [e["episode_index"] for e in episodes] != list(range(len(episodes))):
        problems.append("episode_index values are not 0..N-1")
        return problems
    try:
        stats = r.stats
    except WamdataError as e:
        problems.append(str(e))
        stats = {}
    for k in info.features:
        missing = [s for s in keys.STAT_NAMES if s not in stats.get(k, {})]
        if missing:
            problems.append(f"stats.json: feature {k!r} is missing {missing}")
    total, video_frames = 0, {}
    for e in episodes:
        ep, n = e["episode_index"], e["length"]
        try:
            cols = r.episode_columns(ep)
        except WamdataError as err:
            problems.append(str(err))
            continue
        where = f"episode {ep} ({r.data_file(ep)})"
        before = len(problems)
        for k, f in info.features.items():
            if f.dtype == "video":
                continue
            if k not in cols:
                problems.append(f"{where}: column {k!r} missing")
            elif cols[k].shape[1:] not in ((), f.shape) and cols[k].shape[1:] != (1,):
                problems.append(f"{where}: column {k!r} has shape {cols[k].shape[1:]}, info says {f.shape}")
        if len(problems) > before:
            continue
        if not np.array_equal(cols[keys.FRAME_INDEX], np.arange(n)):
            problems.append(f"{where}: frame_index is not 0..{n - 1}")
        if not np.array_equal(cols[keys.INDEX], np.arange(total, total + n)):
            problems.append(f"{where}: index is not contiguous from {total}")
        if e.get("dataset_from_index", total) != total:
            problems.append(f"{where}: dataset_from_index={e['dataset_from_index']}, expected {total}")
        if not np.allclose(cols[keys.TIMESTAMP], np.arange(n) / r.fps, atol=1e-4):
            problems.append(f"{where}: timestamps are not frame_index / fps ({r.fps})")
        if set(np.unique(cols[keys.TASK_INDEX]).tolist()) - set(range(len(tasks))):
            problems.append(f"{where}: task_index outside 0..{len(tasks) - 1}")
        for k in (keys.STATE, keys.ACTION):
            if k in cols and not np.isfinite(cols[k]).all():
                problems.append(f"{where}: {k!r} contains NaN or inf")
        for vk in r.video_keys:
            path, start = r.video_file(ep, vk)
            video_frames.setdefault(path, 0)
            video_frames[path] += n
            if r.v30 and abs(e[f"videos/{vk}/to_timestamp"] - start - n / r.fps) > 1e-6:
                problems.append(f"{where}: {vk} from/to timestamps span != length / fps")
        total += n
    if total != info.total_frames:
        problems.append(f"info.total_frames={info.total_frames} but episodes hold {total} frames")
    if check_videos:
        for path, expected in video_frames.items():
            if not path.exists():
                problems.append(f"{path}: video file missing")
                continue
            try:
                got = count_frames(path)
            except Exception as err:  # corrupt container
                problems.append(f"{path}: cannot read video ({err})")
                continue
            if got != expected:
                problems.append(f"{path}: {got} video frames, episodes need {expected}")
    return problems
