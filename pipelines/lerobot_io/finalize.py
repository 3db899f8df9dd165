"""Assemble staged episodes into a LeRobot dataset (v3.0 default, v2.1 for Fast-WAM's reader).

    STAGING/<uid>/{frames.parquet, <key>.mp4, summary.json}  (in episode order)
      v3.0 -> data/chunk-000/file-000.parquet (many episodes/file), videos/<key>/chunk-000/file-000.mp4
              (episodes remuxed end to end), meta/{info.json, stats.json, tasks.parquet,
              episodes/chunk-000/file-000.parquet}
      v2.1 -> data/chunk-000/episode_000000.parquet, videos/chunk-000/<key>/episode_000000.mp4,
              meta/{info.json, stats.json, tasks.jsonl, episodes.jsonl, episodes_stats.jsonl}

Memory: one episode's low-dim table at a time (plus every frame's low-dim values for exact global
quantiles: ~4 bytes x dims x frames). `meta/info.json` is written last: it marks the dataset complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lerobot_io import stats as S
from pipelines.lerobot_io.staging import FRAMES, VideoConfig
from pipelines.lerobot_io.video import CODEC_NAMES, concat_videos
from schemas import keys
from schemas.checksums import write_dataset_checksums
from schemas.dataset import EpisodeMeta, Task
from schemas.features import DatasetInfo, Feature, default_features, video_feature


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def hf_features(features: dict[str, Feature], fmt: str = keys.V30) -> dict:
    """The `huggingface` parquet metadata `datasets` writes (lerobot loads parquet through it).

    A fixed-length vector is `List` in datasets >= 4 (lerobot 0.4, v3.0) and `Sequence` in datasets 3.x, the
    version v2.1-era readers pin (Fast-WAM: datasets==3.6.0, which rejects `List`: "Feature type 'List' not
    found"). v2.1 output carries the 3.x name, v3.0 output what lerobot 0.4.4 writes."""
    seq = "Sequence" if fmt == keys.V21 else "List"
    out = {}
    for k, f in features.items():
        if f.dtype == "video":
            continue
        value = {"dtype": f.dtype, "_type": "Value"}
        out[k] = value if f.shape == (1,) else {"feature": value, "length": f.shape[0], "_type": seq}
    return {"info": {"features": out}}


def build_features(summary: dict, fps: float, video: VideoConfig) -> dict[str, Feature]:
    feats: dict[str, Feature] = {}
    for k, f in summary["features"].items():
        if f["dtype"] == "video":
            feats[k] = video_feature(f["shape"][0], f["shape"][1], fps, CODEC_NAMES[video.vcodec], video.pix_fmt)
        else:
            feats[k] = Feature(f["dtype"], tuple(f["shape"]), f.get("names"))
    feats.update(default_features())
    return feats


def _locate(i: int, chunks_size: int) -> tuple[int, int]:
    return i // chunks_size, i % chunks_size


def finalize(out: Path, staged: list[Path], summaries: list[dict], fps: float, video: VideoConfig,
             fmt: str = keys.V30, robot_type: str | None = None,
             data_mb: int = keys.DEFAULT_DATA_FILE_SIZE_MB, video_mb: int = keys.DEFAULT_VIDEO_FILE_SIZE_MB,
             chunks_size: int = keys.DEFAULT_CHUNKS_SIZE, progress=None) -> DatasetInfo:
    for sub in ("data", "videos", "meta"):  # leftovers of an interrupted finalize
        shutil.rmtree(out / sub, ignore_errors=True)
    features = build_features(summaries[0], fps, video)
    video_keys = [k for k, f in features.items() if f.dtype == "video"]
    tasks: dict[str, int] = {}
    for s in summaries:
        tasks.setdefault(s["task"], len(tasks))
    schema_meta = {b"huggingface": json.dumps(hf_features(features, fmt)).encode()}

    episodes, values = [], {}  # values: feature -> list of per-episode arrays (exact global stats)
    writer, file_i, file_bytes, start = None, -1, 0, 0
    for ep_i, (d, s) in enumerate(zip(staged, summaries, strict=True)):
        T = s["length"]
        t = pq.read_table(d / FRAMES)
        t = t.append_column(keys.EPISODE_INDEX, pa.array(np.full(T, ep_i, np.int64)))
        t = t.append_column(keys.INDEX, pa.array(np.arange(start, start + T, dtype=np.int64)))
        t = t.append_column(keys.TASK_INDEX, pa.array(np.full(T, tasks[s["task"]], np.int64)))
        t = t.replace_schema_metadata(schema_meta)
        ep_stats = S.from_json(s["stats"])
        for k in (keys.EPISODE_INDEX, keys.INDEX, keys.TASK_INDEX):
            ep_stats[k] = S.numeric_stats(t.column(k).to_numpy())
        for k in t.column_names:
            col = t.column(k).combine_chunks()
            arr = col.flatten().to_numpy().reshape(T, -1) if pa.types.is_fixed_size_list(col.type) \
                else col.to_numpy().reshape(T, 1)
            values.setdefault(k, []).append(arr)
        row = {keys.EPISODE_INDEX: ep_i, "tasks": [s["task"]], "length": T,
               "dataset_from_index": start, "dataset_to_index": start + T}
        if fmt == keys.V30:
            if writer is None or file_bytes > data_mb * 1024 * 1024:
                if writer is not None:
                    writer.close()
                file_i += 1
                chunk, fidx = _locate(file_i, chunks_size)
                path = out / keys.DATA_PATH_V30.format(chunk_index=chunk, file_index=fidx)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer, file_bytes = pq.ParquetWriter(path, t.schema), 0
            writer.write_table(t)
            file_bytes += t.nbytes
            row["data/chunk_index"], row["data/file_index"] = _locate(file_i, chunks_size)
        else:
            write_parquet(t, out / keys.DATA_PATH_V21.format(episode_chunk=ep_i // chunks_size,
                                                             episode_index=ep_i))
        row["stats"] = ep_stats
        episodes.append(row)
        start += T
        if progress:
            progress(1)
    if writer is not None:
        writer.close()

    if fmt == keys.V30:
        _videos_v30(out, staged, summaries, episodes, video_keys, fps, video_mb, chunks_size)
    else:
        for ep_i, d in enumerate(staged):
            for k in video_keys:
                dst = out / keys.VIDEO_PATH_V21.format(episode_chunk=ep_i // chunks_size, video_key=k,
                                                       episode_index=ep_i)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(d / f"{k}.mp4", dst)

    global_stats = {k: S.numeric_stats(np.concatenate(v)) for k, v in values.items()}
    for k in video_keys:
        hist = sum(np.asarray(s["histograms"][k], dtype=np.int64) for s in summaries)
        global_stats[k] = S.histogram_stats(hist, start)
    write_json(out / keys.STATS_PATH, S.to_json(global_stats))
    if fmt == keys.V30:
        _meta_v30(out, episodes, tasks)
    else:
        _meta_v21(out, episodes, tasks)
    n_chunks = (len(episodes) + chunks_size - 1) // chunks_size
    info = DatasetInfo(fmt, fps, features, robot_type=robot_type, total_episodes=len(episodes),
                       total_frames=start, total_tasks=len(tasks), chunks_size=chunks_size,
                       data_files_size_in_mb=data_mb, video_files_size_in_mb=video_mb,
                       total_chunks=None if fmt == keys.V30 else n_chunks,
                       total_videos=None if fmt == keys.V30 else len(episodes) * len(video_keys))
    write_dataset_checksums(out)                      # sha256 per data/video/meta file, before info.json
    write_json(out / keys.INFO_PATH, info.to_dict())  # last: marks the dataset complete
    return info


def _videos_v30(out, staged, summaries, episodes, video_keys, fps, video_mb, chunks_size):
    for k in video_keys:
        groups: list[list[int]] = [[]]
        size = 0
        for ep_i, d in enumerate(staged):
            n = (d / f"{k}.mp4").stat().st_size
            if groups[-1] and size + n > video_mb * 1024 * 1024:
                groups.append([])
                size = 0
            groups[-1].append(ep_i)
            size += n
        for file_i, group in enumerate(groups):
            chunk, fidx = _locate(file_i, chunks_size)
            dst = out / keys.VIDEO_PATH_V30.format(video_key=k, chunk_index=chunk, file_index=fidx)
            dst.parent.mkdir(parents=True, exist_ok=True)
            lengths = [summaries[i]["length"] for i in group]
            concat_videos([staged[i] / f"{k}.mp4" for i in group], dst, lengths, fps)
            t0 = 0
            for i, n in zip(group, lengths, strict=True):
                row = episodes[i]
                row[f"videos/{k}/chunk_index"], row[f"videos/{k}/file_index"] = chunk, fidx
                row[f"videos/{k}/from_timestamp"] = t0 / fps
                row[f"videos/{k}/to_timestamp"] = (t0 + n) / fps
                t0 += n


def _pandas_index_meta(index_name: str = "__index_level_0__") -> bytes:
    """What pandas writes for a string index, so `pd.read_parquet` gives tasks indexed by task string."""
    return json.dumps({
        "index_columns": [index_name],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": index_name, "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.3.3"}).encode()


def _meta_v30(out, episodes, tasks):
    rows = []
    for e in episodes:
        row = EpisodeMeta.from_row(e).to_row_v30()
        for feat, st in e["stats"].items():
            for name, v in st.items():
                row[f"stats/{feat}/{name}"] = np.asarray(v).tolist()
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        rows.append(row)
    write_parquet(pa.Table.from_pylist(rows), out / keys.EPISODES_PATH_V30.format(chunk_index=0, file_index=0))
    tasks = {Task(i, t).task: i for t, i in tasks.items()}
    t = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()),
                  "__index_level_0__": pa.array(list(tasks), pa.string())})
    write_parquet(t.replace_schema_metadata({b"pandas": _pandas_index_meta()}), out / keys.TASKS_PARQUET_PATH)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def _meta_v21(out, episodes, tasks):
    _write_jsonl(out / keys.TASKS_JSONL_PATH, [asdict(Task(i, t)) for t, i in tasks.items()])
    _write_jsonl(out / keys.EPISODES_JSONL_PATH, [EpisodeMeta.from_row(e).to_row_v21() for e in episodes])
    _write_jsonl(out / keys.EPISODES_STATS_JSONL_PATH,
                 [{"episode_index": e[keys.EPISODE_INDEX], "stats": S.to_json(e["stats"])} for e in episodes])
