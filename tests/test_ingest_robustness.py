"""Bad input is reported and skipped; kill -9 + rerun completes with nothing duplicated or missing."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import IngestConfig, ingest
from pipelines.lerobot_io.reader import LeRobotReader
from pipelines.validate import validate
from schemas import keys

GOOD = ("put the black bowl on the plate", [0, 1, 2], 24)


def _corrupt(raw):
    """One good file plus one file per kind of bad input (each holds demo_0)."""
    from pipelines.synth.libero import write_libero_file

    bad = {}
    for name in ("nan", "mismatch", "missing_cam", "empty", "truncated"):
        bad[name] = write_libero_file(raw, n_demos=1, T=20, instruction=f"bad {name}")
    with h5py.File(bad["nan"], "a") as f:
        a = f["data/demo_0/actions"][()]
        a[5, 3] = np.nan
        f["data/demo_0/actions"][...] = a
    with h5py.File(bad["mismatch"], "a") as f:
        del f["data/demo_0/obs/gripper_states"]
        f["data/demo_0/obs/gripper_states"] = np.zeros((19, 2))
    with h5py.File(bad["missing_cam"], "a") as f:
        del f["data/demo_0/obs/eye_in_hand_rgb"]
    with h5py.File(bad["empty"], "a") as f:
        g = f["data/demo_0"]
        for k in ("actions", "obs/ee_states", "obs/gripper_states", "obs/agentview_rgb", "obs/eye_in_hand_rgb"):
            shape, dtype = g[k].shape, g[k].dtype
            del g[k]
            g.create_dataset(k, shape=(0,) + shape[1:], dtype=dtype)
    data = bad["truncated"].read_bytes()
    bad["truncated"].write_bytes(data[: len(data) // 3])
    return bad


def test_bad_episodes_are_reported_and_skipped(libero_raw, tmp_path):
    raw = libero_raw((GOOD,))
    bad = _corrupt(raw)
    report = ingest([raw], tmp_path / "ds", IngestConfig(workers=2), progress=False)
    assert report["episodes_written"] == 3 and report["episodes_failed"] == 5
    by_file = {f["file"]: f for f in report["failed"]}
    assert set(by_file) == {str(p) for p in bad.values()}
    assert (by_file[str(bad["nan"])]["episode"], by_file[str(bad["nan"])]["key"]) == ("demo_0", keys.ACTION)
    assert "NaN" in by_file[str(bad["nan"])]["error"] and "frame 5" in by_file[str(bad["nan"])]["error"]
    mismatch = by_file[str(bad["mismatch"])]
    assert mismatch["key"] == "obs/gripper_states" and "length mismatch" in mismatch["error"]
    assert by_file[str(bad["missing_cam"])]["key"] == "obs/eye_in_hand_rgb"
    assert "missing" in by_file[str(bad["missing_cam"])]["error"]
    assert by_file[str(bad["empty"])]["key"] == keys.ACTION and "empty" in by_file[str(bad["empty"])]["error"]
    assert by_file[str(bad["truncated"])]["key"] in ("file", "data")
    on_disk = json.loads((tmp_path / "ds" / keys.INGEST_REPORT).read_text())
    assert on_disk == report
    assert validate(tmp_path / "ds") == []
    assert LeRobotReader(tmp_path / "ds").tasks == [GOOD[0]]


def _read_all(root):
    r = LeRobotReader(root)
    cols = [r.episode_columns(e) for e in range(r.num_episodes)]
    return r, cols


_RUN = """
import sys, time
import pipelines.ingest as I
real = I.finalize
def late_finalize(*a, **k):  # the kill must land before the dataset is complete, however fast staging is
    time.sleep(60)
    return real(*a, **k)
I.finalize = late_finalize
I.ingest([sys.argv[1]], sys.argv[2], I.IngestConfig(workers=2), progress=False)
"""


def test_kill9_then_rerun_completes_identically(libero_raw, tmp_path):
    raw = libero_raw((GOOD, ("open the drawer", list(range(8)), 24)))
    ingest([raw], tmp_path / "ref", IngestConfig(workers=2), progress=False)
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(raw), str(out)], start_new_session=True)
    staging = out / keys.STAGING_DIR
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some, but not all, episodes are staged
        done = [d for d in staging.iterdir() if len(d.name) == 16] if staging.exists() else []
        if len(done) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / keys.INFO_PATH).exists(), "the run finished before it was killed; nothing was tested"
    ingest([raw], out, IngestConfig(workers=2), progress=False)
    assert validate(out) == []
    r, cols = _read_all(out)
    ref, ref_cols = _read_all(tmp_path / "ref")
    assert r.num_episodes == ref.num_episodes == 11
    for a, b in zip(cols, ref_cols, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    stats, ref_stats = ((d / keys.STATS_PATH).read_text() for d in (out, tmp_path / "ref"))
    assert json.loads(stats) == json.loads(ref_stats)
    assert not staging.exists()


def test_crash_during_finalize_then_rerun(libero_raw, tmp_path, monkeypatch):
    import pipelines.lerobot_io.finalize as fin

    raw = libero_raw((GOOD,))
    real = fin._meta_v30

    def boom(*a, **k):
        raise RuntimeError("simulated crash while writing meta")
    monkeypatch.setattr(fin, "_meta_v30", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    assert (tmp_path / "ds" / "data").exists() and not (tmp_path / "ds" / keys.INFO_PATH).exists()
    monkeypatch.setattr(fin, "_meta_v30", real)
    ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    assert validate(tmp_path / "ds") == []
    assert pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet").num_rows == 3 * 24


def test_rerun_with_different_config_refuses_to_mix(libero_raw, tmp_path, monkeypatch):
    import pipelines.lerobot_io.finalize as fin

    raw = libero_raw((GOOD,))
    monkeypatch.setattr(fin, "_meta_v30", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    with pytest.raises(Exception, match="different config"):
        ingest([raw], tmp_path / "ds", IngestConfig(workers=1, fps=10.0), progress=False)


def test_validate_catches_broken_datasets(libero_raw, tmp_path):
    raw = libero_raw((GOOD,))
    ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    info["total_frames"] += 1
    (tmp_path / "ds/meta/info.json").write_text(json.dumps(info))
    assert any("total_frames" in p for p in validate(tmp_path / "ds"))
    info["total_frames"] -= 1
    (tmp_path / "ds/meta/info.json").write_text(json.dumps(info))
    stats = json.loads((tmp_path / "ds/meta/stats.json").read_text())
    del stats["action"]["q99"]
    (tmp_path / "ds/meta/stats.json").write_text(json.dumps(stats))
    assert validate(tmp_path / "ds", checksums=False) == ["stats.json: feature 'action' is missing ['q99']"]
    assert f"{tmp_path / 'ds/meta/stats.json'}: sha256 mismatch" in validate(tmp_path / "ds")[0]   # edited after ingest
    mp4 = tmp_path / "ds/videos/observation.images.image/chunk-000/file-000.mp4"
    mp4.unlink()
    assert any("video file missing" in p for p in validate(tmp_path / "ds"))


def test_stalled_load_is_killed_retried_then_reported(tmp_path):
    from pipelines.ingest import _Job, _work
    from pipelines.ingest_guard import Watch, run_jobs
    from pipelines.sources.base import EpisodeRef

    staging = tmp_path / "staging"
    staging.mkdir()
    cfg = IngestConfig(workers=2)
    jobs = [_Job(EpisodeRef("test", str(tmp_path), ep), "_hang_source", str(staging), cfg)
            for ep in ("a", "hang", "b", "always")]
    t0 = time.time()
    results = {r["uid"]: r for r in run_jobs(_work, jobs, 2, Watch(load_s=4, tries=2), log=lambda m: None)}
    assert time.time() - t0 < 60
    by_ep = {j.ref.episode: results[j.ref.uid] for j in jobs}
    assert by_ep["a"]["frames"] == by_ep["b"]["frames"] == by_ep["hang"]["frames"] == 12  # hang: 2nd try
    err = by_ep["always"]["error"]
    assert (err["episode"], err["key"]) == ("always", "?")
    assert err["error"] == "gave up after 2 tries: " + "; ".join(["stalled in load: no progress within its 4.0 s "
                                                                 "bound"] * 2)
    assert sorted(p.name for p in staging.iterdir() if ".tmp" not in p.name) == \
        sorted(j.ref.uid for j in jobs[:3])
