import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import IngestConfig, ingest
from pipelines.lerobot_io.reader import LeRobotReader
from pipelines.sources.libero import task_from_file_name
from pipelines.synth.libero import libero_arrays
from pipelines.synth.markers import check_marker, marker_video
from pipelines.validate import validate
from schemas import keys

TASKS = (("put the black bowl on the plate", [0, 2, 10], [30, 34, 38]), ("open the drawer", [1, 3], 26))


def _expected_order():
    # files sorted by name (KITCHEN_SCENE1_open... < KITCHEN_SCENE1_put...), demos in numeric order
    return [("open the drawer", 1, 26), ("open the drawer", 3, 26),
            ("put the black bowl on the plate", 0, 30), ("put the black bowl on the plate", 2, 34),
            ("put the black bowl on the plate", 10, 38)]


@pytest.mark.parametrize("fmt", [keys.V30, keys.V21])
def test_libero_roundtrip_exact(libero_raw, tmp_path, fmt):
    raw = libero_raw(TASKS)
    report = ingest([raw], tmp_path / "ds", IngestConfig(format=fmt, workers=2), progress=False)
    assert report == {"episodes_found": 5, "episodes_written": 5, "episodes_failed": 0, "failed": []}
    assert validate(tmp_path / "ds") == []
    r = LeRobotReader(tmp_path / "ds")
    assert r.info.codebase_version == fmt and r.fps == 20.0
    assert r.tasks == ["open the drawer", "put the black bowl on the plate"]
    assert r.video_keys == ["observation.images.image", "observation.images.wrist_image"]
    start = 0
    for ep, (task, demo, T) in enumerate(_expected_order()):
        assert r.episode_task(ep) == task and r.episode(ep)["length"] == T
        cols = r.episode_columns(ep)
        a = libero_arrays(demo, T)
        np.testing.assert_array_equal(cols[keys.ACTION], a["actions"].astype(np.float32))
        np.testing.assert_array_equal(cols[keys.STATE],
                                      np.concatenate([a["ee_states"], a["gripper_states"]], 1).astype(np.float32))
        np.testing.assert_array_equal(cols[keys.INDEX], np.arange(start, start + T))
        np.testing.assert_array_equal(cols[keys.TIMESTAMP], (np.arange(T) / 20.0).astype(np.float32))
        assert set(cols[keys.TASK_INDEX]) == {r.tasks.index(task)}
        for cam_id, key in enumerate(r.video_keys):
            frames = r.episode_frames(ep, key)
            assert frames.shape == (T, 128, 128, 3)
            for t in range(T):  # upright (rotated 180° from the stored OpenGL image), RGB, right frame
                check_marker(frames[t], t, cam_id)
        start += T


def test_v30_layout_matches_lerobot_real_dataset(libero_raw, tmp_path, shared_dir):
    """Same info.json keys, episodes-parquet columns and stats keys as a real lerobot v3.0 recording."""
    real = shared_dir / "fixtures/real/so101_lerobot_v30_meta"
    ingest([libero_raw(TASKS[:1])], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    ours_info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    real_info = json.loads((real / "meta/info.json").read_text())
    assert list(ours_info) == list(real_info)
    assert ours_info["features"]["observation.images.image"]["info"].keys() == \
        real_info["features"]["observation.images.front"]["info"].keys()
    ours_ep = pq.read_schema(tmp_path / "ds/meta/episodes/chunk-000/file-000.parquet")
    real_ep = pq.read_schema(real / "meta/episodes/chunk-000/file-000.parquet")

    def generic(names, cams):
        out = set()
        for n in names:
            for c in cams:
                n = n.replace(c, "<cam>")
            out.add(n.replace("observation.state", "<vec>").replace("action", "<vec>"))
        return out
    assert generic(ours_ep.names, ["observation.images.image", "observation.images.wrist_image"]) == \
        generic(real_ep.names, ["observation.images.front", "observation.images.top"])
    ours_stats = json.loads((tmp_path / "ds/meta/stats.json").read_text())
    real_stats = json.loads((real / "meta/stats.json").read_text())
    assert set(ours_stats["action"]) == set(real_stats["action"]) == set(keys.STAT_NAMES)
    assert np.shape(ours_stats["observation.images.image"]["mean"]) == (3, 1, 1)
    assert pq.read_schema(tmp_path / "ds/meta/tasks.parquet").pandas_metadata["index_columns"] == \
        ["__index_level_0__"]


def test_global_quantiles_are_exact_not_averaged(libero_raw, tmp_path):
    ingest([libero_raw(TASKS)], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    stats = json.loads((tmp_path / "ds/meta/stats.json").read_text())
    acts = [libero_arrays(d, T)["actions"].astype(np.float32) for _, d, T in _expected_order()]
    allv = np.concatenate(acts).astype(np.float64)
    for name, q in keys.QUANTILES.items():
        np.testing.assert_allclose(stats["action"][name], np.quantile(allv, q, axis=0), rtol=0, atol=1e-12)
    averaged = np.mean([np.quantile(a.astype(np.float64), 0.9, axis=0) for a in acts], axis=0)
    assert not np.allclose(averaged, stats["action"]["q90"])  # the averaging shortcut would be wrong here
    assert stats["action"]["count"] == [len(allv)]
    np.testing.assert_allclose(stats["action"]["std"], allv.std(0), atol=1e-12)
    assert stats["observation.images.image"]["count"] == [sum(T for _, _, T in _expected_order())]
    raw = np.concatenate([marker_video(T, 128, 128, 0) for _, _, T in _expected_order()]).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(np.ravel(stats["observation.images.image"]["mean"]), raw.mean(0), atol=1e-12)
    np.testing.assert_allclose(np.ravel(stats["observation.images.image"]["q50"]),
                               np.quantile(raw, 0.5, axis=0, method="inverted_cdf"), atol=1e-12)


def test_no_noops_variant_takes_instruction_from_file_name(libero_raw, tmp_path):
    raw = libero_raw((("pick up the black bowl next to the plate", [0, 1], 20),), variant="no_noops", size=256)
    ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    r = LeRobotReader(tmp_path / "ds")
    assert r.tasks == ["pick up the black bowl next to the plate"]
    assert r.info.features["observation.images.image"].shape == (256, 256, 3)
    check_marker(r.episode_frames(1, "observation.images.wrist_image")[7], 7, 1)
    assert task_from_file_name("LIVING_ROOM_SCENE2_put_both_the_soup_in_the_basket_demo.hdf5") == \
        "put both the soup in the basket"


def test_existing_complete_dataset_is_not_overwritten_silently(libero_raw, tmp_path):
    raw = libero_raw(TASKS[:1])
    ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    with pytest.raises(Exception, match=r"made differently: fps \(None there, 10.0 now\); pass --overwrite"):
        ingest([raw], tmp_path / "ds", IngestConfig(workers=1, fps=10.0), progress=False)
    ingest([raw], tmp_path / "ds", IngestConfig(workers=1, overwrite=True), progress=False)
    assert validate(tmp_path / "ds") == []


def test_schema_records_reject_bad_values():
    from schemas.dataset import EpisodeMeta, Task
    from schemas.errors import SchemaError
    from schemas.features import DatasetInfo, Feature

    with pytest.raises(SchemaError, match="fps must be positive, got 0"):
        DatasetInfo("v3.0", 0, {})
    with pytest.raises(SchemaError, match="codebase_version must be one of"):
        DatasetInfo("v9", 30, {})
    with pytest.raises(SchemaError, match=r"features is missing the default keys \['timestamp'"):
        DatasetInfo("v3.0", 30, {"action": Feature("float32", (7,))})
    with pytest.raises(SchemaError, match="feature names has 2 entries for shape"):
        Feature("float32", (3,), ["a", "b"])
    with pytest.raises(SchemaError, match="length must be positive, got 0"):
        EpisodeMeta(0, ["t"], 0, 0, 0)
    with pytest.raises(SchemaError, match="must equal length 5"):
        EpisodeMeta(0, ["t"], 5, 10, 14)
    with pytest.raises(SchemaError, match="task must be a non-empty string"):
        Task(0, " ")
