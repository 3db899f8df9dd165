"""What `wamdata ingest` writes loads unchanged in lerobot's own `LeRobotDataset` (lerobot 0.4.4, format v3.0,
frames decoded by torchcodec), and its meta layout matches a real lerobot v3.0 recording.

lerobot runs in its own venv (`.venv-lerobot`, built by `.ci/setup_lerobot_env.sh`) through
`tests/_lerobot_load.py`; it is skipped only on a developer machine without that venv, never in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import require_side_venv

from pipelines.ingest import IngestConfig, ingest
from pipelines.lerobot_io.reader import LeRobotReader
from pipelines.lerobot_io.staging import VideoConfig
from pipelines.synth.libero import libero_arrays, write_libero_file
from pipelines.synth.markers import check_marker, marker_frame
from schemas import keys

REPO = Path(__file__).resolve().parents[1]
LEROBOT_PY = REPO / ".venv-lerobot" / "bin" / "python"
LOADER = REPO / "tests" / "_lerobot_load.py"
FPS = 20.0
SIZE = 128
CAMS = {"observation.images.image": 0, "observation.images.wrist_image": 1}  # key -> marker camera id
# (file stem, variant, instruction, demo ids, lengths): gaps in demo numbers, a no_noops file (task from name)
RAW = (("original", "put the black bowl on the plate", [0, 3], [12, 17]),
       ("no_noops", "open the top drawer", [1], [14]))


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("raw") / "libero_spatial"
    for variant, instruction, ids, lengths in RAW:
        write_libero_file(d, T=lengths, size=SIZE, instruction=instruction, variant=variant, demo_ids=ids)
    return d


def _expected_episodes(raw_dir: Path) -> list[dict]:
    """Discovery order: files sorted by path, demos in numeric order."""
    by_name = {}
    for variant, instruction, ids, lengths in RAW:
        stem = instruction.replace(" ", "_")
        name = f"KITCHEN_SCENE1_{stem}_demo.hdf5" if variant == "original" else f"{stem}_demo.hdf5"
        by_name[name] = [{"task": instruction, "demo": i, "length": n} for i, n in zip(ids, lengths, strict=True)]
    assert sorted(p.name for p in raw_dir.glob("*.hdf5")) == sorted(by_name)
    return [ep for name in sorted(by_name) for ep in by_name[name]]


@pytest.fixture(scope="module", params=["libsvtav1", "h264"])
def ours(request, raw_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"ours_{request.param}") / "ds"
    report = ingest([raw_dir], out, IngestConfig(workers=2, video=VideoConfig(vcodec=request.param)))
    assert report["episodes_failed"] == 0, report
    return out


def _lerobot_items(root: Path, indices: list[int], tmp: Path) -> dict[str, np.ndarray]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp / "hf"),
           "HF_LEROBOT_HOME": str(tmp / "hf_lerobot"), "SVT_LOG": "1"}
    out = tmp / "items.npz"
    proc = subprocess.run([str(LEROBOT_PY), str(LOADER), str(root), str(out), *map(str, indices)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"LeRobotDataset failed on {root}:\n{proc.stderr[-4000:]}"
    with np.load(out) as d:
        return {k: d[k] for k in d.files}


def test_lerobot_dataset_loads_ours_unchanged(ours, raw_dir, tmp_path):
    require_side_venv(LEROBOT_PY, ".ci/setup_lerobot_env.sh")
    expected = _expected_episodes(raw_dir)
    starts = np.cumsum([0] + [e["length"] for e in expected])
    # first, middle and last frame of every episode (episodes > 0 sit later in the concatenated mp4s)
    picks = [(ep, t) for ep, e in enumerate(expected) for t in (0, e["length"] // 2, e["length"] - 1)]
    items = _lerobot_items(ours, [int(starts[ep] + t) for ep, t in picks], tmp_path)

    meta = json.loads(str(items.pop("__meta__")))
    assert meta["codebase_version"] == keys.V30
    assert meta["video_backend"] == "torchcodec"
    assert meta["num_episodes"] == len(expected)
    assert meta["num_frames"] == int(starts[-1])
    assert meta["fps"] == FPS
    assert sorted(meta["video_keys"]) == sorted(CAMS)

    reader = LeRobotReader(ours)
    decoded = {(ep, key): reader.episode_frames(ep, key) for ep in range(len(expected)) for key in CAMS}
    for row, (ep, t) in enumerate(picks):
        e = expected[ep]
        arr = libero_arrays(e["demo"], e["length"])
        np.testing.assert_array_equal(items["observation.state"][row],
                                      np.concatenate([arr["ee_states"][t], arr["gripper_states"][t]]
                                                     ).astype(np.float32))
        np.testing.assert_array_equal(items["action"][row], arr["actions"][t].astype(np.float32))
        assert items["timestamp"][row] == np.float32(t / FPS)
        assert (items["episode_index"][row], items["frame_index"][row], items["index"][row]) == \
            (ep, t, starts[ep] + t)
        assert items["task"][row] == e["task"]
        assert reader.tasks[items["task_index"][row]] == e["task"]
        for key, cam_id in CAMS.items():
            img = items[key][row]
            assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
            where = f"{key} episode {ep} frame {t}"
            check_marker(img, t, cam_id)  # upright, RGB order, right frame, right camera (exact)
            raw_diff = np.abs(img.astype(np.int16) - marker_frame(t, SIZE, SIZE, cam_id)).mean()
            assert raw_diff < 2.0, f"{where}: mean abs diff {raw_diff:.2f} vs the raw frame"
            ours_diff = np.abs(img.astype(np.int16) - decoded[ep, key][t]).mean()
            assert ours_diff < 1.0, f"{where}: lerobot's decode differs from ours by {ours_diff:.2f}"


# -- meta layout vs a real lerobot v3.0 recording --------------------------------------------------
def _shape_of(root: Path) -> dict:
    """Layout with feature names abstracted: the keys and column types lerobot's writer produces."""
    info = json.loads((root / keys.INFO_PATH).read_text())
    feats = info["features"]

    def role(key: str) -> str:
        if key in keys.DEFAULT_FEATURE_KEYS:
            return key
        return "<video>" if feats[key]["dtype"] == "video" else "<vector>"

    def col(name: str) -> str:
        for prefix in ("videos/", "stats/"):
            if name.startswith(prefix):
                feat, _, rest = name[len(prefix):].partition("/")
                return f"{prefix}{role(feat)}/{rest}"
        return name

    episodes = pq.read_table(root / keys.EPISODES_PATH_V30.format(chunk_index=0, file_index=0))
    stats = json.loads((root / keys.STATS_PATH).read_text())
    tasks = pq.read_table(root / keys.TASKS_PARQUET_PATH)
    data = pq.read_table(root / keys.DATA_PATH_V30.format(chunk_index=0, file_index=0))
    return {
        "info_keys": sorted(info),
        "feature_fields": {role(k): sorted(v) for k, v in feats.items()},
        "video_info_keys": sorted({k for f in feats.values() if f["dtype"] == "video" for k in f["info"]}),
        "episode_columns": sorted({(col(f.name), str(f.type)) for f in episodes.schema}),
        "stats": {role(k): sorted(v) for k, v in stats.items()},
        "tasks_columns": sorted((f.name, str(f.type)) for f in tasks.schema),
        "data_columns": sorted({(role(f.name), str(f.type).split("[")[0]) for f in data.schema}),
    }


def test_meta_layout_matches_real_lerobot_recording(ours, shared_dir):
    real = _shape_of(shared_dir / "fixtures" / "real" / "so101_lerobot_v30_meta")
    mine = _shape_of(ours)
    for part in real:
        assert mine[part] == real[part], f"{part} differs from lerobot's own v3.0 layout"
    info = json.loads((ours / keys.INFO_PATH).read_text())
    assert info["codebase_version"] == keys.V30
    assert info["data_path"] == keys.DATA_PATH_V30 and info["video_path"] == keys.VIDEO_PATH_V30


# -- identical input through lerobot's own writer: same files, same values ----------------------------
def test_same_layout_and_values_as_lerobot_writer(raw_dir, tmp_path):
    """bench/_lerobot_writer.py (LeRobotDataset.create/add_frame/save_episode) on the same raw files."""
    require_side_venv(LEROBOT_PY, ".ci/setup_lerobot_env.sh")
    ours = tmp_path / "ours"
    ingest([raw_dir], ours, IngestConfig(workers=1))
    theirs = tmp_path / "lerobot"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_LEROBOT_HOME": str(tmp_path / "hf_lerobot"), "SVT_LOG": "1"}
    proc = subprocess.run([str(LEROBOT_PY), str(REPO / "bench" / "_lerobot_writer.py"), str(raw_dir), "-o",
                           str(theirs), "--fps", str(int(FPS)), "--image-writer-threads", "2",
                           "--image-writer-processes", "0"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    info_o, info_t = (json.loads((r / keys.INFO_PATH).read_text()) for r in (ours, theirs))
    assert sorted(info_o) == sorted(info_t)
    for k in ("codebase_version", "fps", "total_episodes", "total_frames", "total_tasks", "chunks_size",
              "data_path", "video_path", "splits"):
        assert info_o[k] == info_t[k], k
    assert sorted(info_o["features"]) == sorted(info_t["features"])
    for key, ft in info_t["features"].items():
        fo = info_o["features"][key]
        assert (fo["dtype"], fo["shape"]) == (ft["dtype"], list(ft["shape"])), key
        if ft["dtype"] == "video":
            assert fo["info"] == ft["info"], key  # codec av1, yuv420p, fps, size, ...

    def table(root: Path, path: str):
        return pq.read_table(root / path.format(chunk_index=0, file_index=0))

    ep_o, ep_t = table(ours, keys.EPISODES_PATH_V30), table(theirs, keys.EPISODES_PATH_V30)
    assert sorted((f.name, str(f.type)) for f in ep_o.schema) == sorted((f.name, str(f.type)) for f in ep_t.schema)
    for col in ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index",
                *[c for c in ep_t.column_names if c.startswith("videos/")]):
        assert ep_o[col].to_pylist() == ep_t[col].to_pylist(), col
    d_o, d_t = table(ours, keys.DATA_PATH_V30), table(theirs, keys.DATA_PATH_V30)
    assert sorted(map(str, d_o.schema)) == sorted(map(str, d_t.schema))
    for col in d_t.column_names:
        assert d_o[col].to_pylist() == d_t[col].to_pylist(), col
    t_o, t_t = (pq.read_table(r / keys.TASKS_PARQUET_PATH).to_pylist() for r in (ours, theirs))
    assert t_o == t_t

    st_o, st_t = (json.loads((r / keys.STATS_PATH).read_text()) for r in (ours, theirs))
    assert {k: sorted(v) for k, v in st_o.items()} == {k: sorted(v) for k, v in st_t.items()}
    for feat, stats in st_t.items():
        for name, val in stats.items():
            assert np.shape(st_o[feat][name]) == np.shape(val), (feat, name)
    for feat in (keys.STATE, keys.ACTION, keys.TIMESTAMP, keys.FRAME_INDEX, keys.INDEX):
        for name in ("min", "max", "count"):  # exact; lerobot's quantiles are approximations: not compared
            # lerobot takes timestamp stats from float64 t/fps, we from the stored float32 column
            tol = 1e-6 if feat == keys.TIMESTAMP else 0
            np.testing.assert_allclose(st_o[feat][name], st_t[feat][name], rtol=0, atol=tol,
                                       err_msg=f"{feat} {name}")
        for name in ("mean", "std"):
            np.testing.assert_allclose(st_o[feat][name], st_t[feat][name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{feat} {name}")
