"""Our output running out of space is not bad input: one clear line (path, space), work kept, rerun resumes."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.ingest import IngestConfig, ingest
from schemas import keys
from schemas.errors import OutputFullError

REPO = Path(__file__).parents[1]
TASKS = (("open the drawer", [0], 10), ("put the black bowl on the plate", [0, 1], 12), ("turn on the stove", [0], 14))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("workers", [1, 2])
def test_enospc_while_staging_stops_keeps_the_staged_and_resumes(libero_raw, tmp_path, monkeypatch, workers):
    import pipelines.lerobot_io.staging as st

    raw = libero_raw(TASKS)
    ingest([raw], tmp_path / "ref", IngestConfig(workers=workers), progress=False)
    real = st.encode_frames

    def enc(frames, path, *a, **k):
        if len(frames) == 14:  # the stove episode, staged last with one worker
            raise _enospc(path)
        return real(frames, path, *a, **k)
    monkeypatch.setattr(st, "encode_frames", enc)
    with pytest.raises(OutputFullError) as e:
        ingest([raw], tmp_path / "ds", IngestConfig(workers=workers), progress=False)
    msg = str(e.value)
    assert msg.startswith("no space left on the device writing ") and "observation.images." in msg
    assert " free of " in msg and msg.endswith("episodes staged so far are kept: free some space and rerun "
                                                  "the same command to resume") and "\n" not in msg
    staging = tmp_path / "ds" / keys.STAGING_DIR
    staged = sorted(p.name for p in staging.iterdir() if p.is_dir())
    assert (len(staged) == 3 if workers == 1 else 1 <= len(staged) <= 3) and ".tmp" not in "".join(staged)
    assert not (tmp_path / "ds" / keys.INFO_PATH).exists() and not (tmp_path / "ds" / keys.INGEST_REPORT).exists()
    monkeypatch.setattr(st, "encode_frames", real)
    report = ingest([raw], tmp_path / "ds", IngestConfig(workers=workers), progress=False)
    assert report["episodes_written"] == 4 and report["episodes_failed"] == 0
    assert tree(tmp_path / "ds") == tree(tmp_path / "ref")  # nothing recorded as a bad episode


def test_enospc_during_finalize_stops_and_resumes(libero_raw, tmp_path, monkeypatch):
    import pipelines.lerobot_io.finalize as fin

    raw = libero_raw(TASKS)
    ingest([raw], tmp_path / "ref", IngestConfig(workers=1), progress=False)
    real = fin.concat_videos

    def concat(inputs, out_path, *a, **k):
        raise _enospc(f"{out_path}.123.tmp")
    monkeypatch.setattr(fin, "concat_videos", concat)
    with pytest.raises(OutputFullError, match=r"^no space left on the device writing .*/videos/observation\.images\."
                                              r"image/chunk-000/file-000\.mp4\.123\.tmp \("):
        ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    assert len([p for p in (tmp_path / "ds" / keys.STAGING_DIR).iterdir() if p.is_dir()]) == 4
    monkeypatch.setattr(fin, "concat_videos", real)
    ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    assert tree(tmp_path / "ds") == tree(tmp_path / "ref")


def test_cli_prints_one_line_for_a_full_disk(libero_raw, tmp_path):
    raw = libero_raw(TASKS[:1])
    code = ("import errno, sys, pipelines.lerobot_io.staging as st\n"
            "def full(frames, path, *a, **k):\n    raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
            "st.encode_frames = full\nfrom pipelines.cli import run\n"
            "sys.argv = ['wamdata', 'ingest', sys.argv[1], '-o', sys.argv[2], '--workers', '1']\nrun()\n")
    p = subprocess.run([sys.executable, "-c", code, str(raw), str(tmp_path / "ds")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    err = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("ingest libero")]  # bar aside
    assert p.returncode == 1 and len(err) == 1 and err[0].startswith("Error: no space left on the device writing ")
    assert "Traceback" not in p.stderr


def _mount_tmpfs(where: Path, size: str, remount: bool = False) -> bool:
    where.mkdir(exist_ok=True)
    opts = f"remount,size={size}" if remount else f"size={size}"
    cmd = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_real_full_tmpfs_then_more_space_resumes_equal_to_a_clean_run(libero_raw, tmp_path):
    if os.geteuid() != 0 or not _mount_tmpfs(tmp_path / "mnt", "48k"):
        pytest.skip("needs root and mount (a small tmpfs)")
    mnt = tmp_path / "mnt"
    try:
        raw = libero_raw(TASKS)
        ingest([raw], tmp_path / "ref", IngestConfig(workers=2), progress=False)
        with pytest.raises(OutputFullError, match=r"no space left on the device writing .* \(\d+ KiB free of 48 KiB"):
            ingest([raw], mnt / "ds", IngestConfig(workers=2), progress=False)
        assert _mount_tmpfs(mnt, "64m", remount=True)
        report = ingest([raw], mnt / "ds", IngestConfig(workers=2), progress=False)
        assert report["episodes_failed"] == 0
        assert tree(mnt / "ds") == tree(tmp_path / "ref")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_cache_write_enospc_is_one_line_naming_path_and_space_other_errors_unchanged(tmp_path, monkeypatch):
    """The cache's write path (`wamdata cache`: unit shards + markers, text, manifest) stops with
    `OutputFullError`; finished units keep their markers, so the rerun resumes (tests/test_cache_job.py)."""
    import numpy as np

    from cache_jobs import store as S
    from schemas.chunks import ChunkSpec

    g = S.create_arrays(tmp_path, 8, 4, (2, 2, 2), ChunkSpec(), 3, 2)
    unit = S.UnitPlan(index=1, row0=4, rows=4, episodes=())
    bufs = S.unit_buffers(unit, g)
    bufs[S.ARR_VALID][:] = True
    real = S.write_json_atomic.__wrapped__
    failure = [errno.ENOSPC]

    def marker(path, obj):
        raise OSError(failure[0], os.strerror(failure[0]), str(Path(path).with_name(".unit-000001.json.77.tmp")))
    monkeypatch.setattr(S, "write_json_atomic", S.output_writes(marker))
    with pytest.raises(OutputFullError, match=r"^no space left on the device writing .*/_units/\.unit-000001\.json"
                                              r"\.77\.tmp \(.* free of .* there\); completed work units are kept: "
                                              r"free some space and rerun the same command to resume$"):
        S.write_unit(tmp_path, unit, bufs, 4, [])
    failure[0] = errno.EIO
    with pytest.raises(OSError) as e:
        S.write_unit(tmp_path, unit, bufs, 4, [])
    assert e.value.errno == errno.EIO and not isinstance(e.value, OutputFullError)
    monkeypatch.setattr(S, "write_json_atomic", S.output_writes(real))
    assert S.write_unit(tmp_path, unit, bufs, 4, [])["num_chunks"] == 4
    np.testing.assert_array_equal(g[S.ARR_VALID][:], [False] * 4 + [True] * 4)
