"""Fault campaign findings: second writer, rerun of a finished ingest, duplicate inputs, empty files."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from pipelines.ingest import IngestConfig, ingest
from pipelines.ingest_lock import OutputLockedError
from pipelines.validate import validate
from schemas import keys
from schemas.errors import WamdataError

TASKS = (("put the black bowl on the plate", [0, 1], 12),)
REPO = Path(__file__).parents[1]
_HOLD = ("import sys, time\nfrom pipelines.ingest_lock import OutputLock\n"
         "with OutputLock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(600)\n")


def _holder(out: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_ingest_into_the_same_output_refuses_at_once_naming_the_first(libero_raw, tmp_path):
    raw = libero_raw(TASKS)
    holder = _holder(tmp_path / "ds")
    try:
        t0 = time.time()
        with pytest.raises(OutputLockedError) as e:
            ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
        assert time.time() - t0 < 10
        assert f"is being written by another ingest (pid {holder.pid} on host {socket.gethostname()}," in str(e.value)
        assert not (tmp_path / "ds" / keys.STAGING_DIR).exists()  # it touched nothing
    finally:
        holder.kill()
        holder.wait()
    # the holder died by SIGKILL: its lock file is still there, and is taken over
    assert (tmp_path / "ds" / keys.INGEST_LOCK).exists()
    report = ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    assert report["episodes_written"] == 2 and validate(tmp_path / "ds") == []
    assert not (tmp_path / "ds" / keys.INGEST_LOCK).exists()


def test_three_concurrent_ingests_one_writes_the_others_refuse(libero_raw, tmp_path):
    raw = libero_raw(TASKS)
    code = ("import sys\nfrom pipelines.cli import run\nsys.argv = ['wamdata', 'ingest', sys.argv[1], '-o', "
            "sys.argv[2], '--workers', '1']\nrun()\n")
    procs = []
    for _ in range(3):
        procs.append(subprocess.Popen([sys.executable, "-c", code, str(raw), str(tmp_path / "ds")],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": str(REPO)}))
        time.sleep(0.3)
    outs = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    for rc, out, err in outs:  # each either wrote it, found it done, or refused in one line
        assert (rc == 0 and ("wrote 2/2" in out or "nothing to do" in out)) or \
            (rc == 2 and err.count("\n") == 1 and "being written by another ingest (pid" in err), (rc, out, err)
    assert sum("wrote 2/2" in out for _, out, _ in outs) == 1
    assert validate(tmp_path / "ds") == []


def test_rerun_of_a_finished_ingest_is_a_noop_unless_the_config_differs(libero_raw, tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import main

    raw = libero_raw(TASKS)
    first = ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ds").rglob("*")}
    again = ingest([raw], tmp_path / "ds", IngestConfig(workers=2), progress=False)  # workers: not config
    assert again == {**first, "nothing_to_do": True}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ds").rglob("*")} == before
    res = CliRunner().invoke(main, ["ingest", str(raw), "-o", str(tmp_path / "ds"), "--workers", "1"])
    assert res.exit_code == 0 and res.output == \
        f"nothing to do: {tmp_path / 'ds'} already holds this dataset (2 episodes, same inputs and config)\n"
    with pytest.raises(WamdataError, match=r"made differently: fps \(None there, 10.0 now\), video.crf \(30 there, "
                                           r"20 now\); pass --overwrite"):
        ingest([raw], tmp_path / "ds", IngestConfig(workers=1, fps=10.0, video=_video(crf=20)), progress=False)
    from pipelines.synth.libero import write_libero_file
    write_libero_file(raw, n_demos=1, T=12, instruction="open the drawer")
    with pytest.raises(WamdataError, match=r"made differently: the input episodes \(2 there, 3 now\);"):
        ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)


def _video(**kw):
    from pipelines.lerobot_io.staging import VideoConfig
    return VideoConfig(**kw)


def test_the_same_input_twice_is_ingested_once(libero_raw, tmp_path, monkeypatch):
    raw = libero_raw(TASKS)
    (tmp_path / "link").symlink_to(raw)
    one_file = next(raw.glob("*.hdf5"))
    monkeypatch.chdir(tmp_path)
    spellings = [raw, raw, Path("raw") / raw.name, raw / ".." / raw.name, tmp_path / "link", one_file]
    report = ingest(spellings, tmp_path / "ds", IngestConfig(workers=1), progress=False)
    assert (report["episodes_found"], report["episodes_written"]) == (2, 2)
    cfg = json.loads((tmp_path / "ds" / keys.INGEST_CONFIG).read_text())
    assert cfg["paths"] == [str(raw), str(one_file)]  # resolved, first occurrence kept (the file is inside raw)


def test_an_hdf5_file_with_zero_demos_is_reported(libero_raw, tmp_path):
    from pipelines.synth.libero import write_libero_file

    raw = libero_raw(TASKS)
    empty = write_libero_file(raw, n_demos=1, T=12, instruction="turn on the stove")
    with h5py.File(empty, "a") as f:
        del f["data/demo_0"]
    report = ingest([raw], tmp_path / "ds", IngestConfig(workers=1), progress=False)
    assert (report["episodes_found"], report["episodes_written"], report["episodes_failed"]) == (3, 2, 1)
    assert report["failed"] == [{"file": str(empty), "episode": "*", "key": "data",
                                 "error": "the file holds no demos (no data/demo_<i> group)"}]


def test_kill9_while_another_run_waits_is_not_a_stale_lock_race(tmp_path):
    """A lock whose holder was SIGKILLed mid-run (file left behind, content of the dead pid) is taken over,
    and the new holder's pid is what a third contender is told."""
    from pipelines.ingest_lock import OutputLock

    holder = _holder(tmp_path / "ds")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (tmp_path / "ds" / keys.INGEST_LOCK).read_text()
    with OutputLock(tmp_path / "ds"):
        assert json.loads((tmp_path / "ds" / keys.INGEST_LOCK).read_text())["pid"] == os.getpid()
        code = ("import sys\nfrom pipelines.ingest_lock import OutputLock\ntry:\n"
                "    OutputLock(sys.argv[1]).__enter__()\nexcept Exception as e:\n    print(e)\n")
        msg = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ds")], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
        assert f"(pid {os.getpid()} on host" in msg


class _Kill(BaseException):
    """Stands in for kill -9 at one point: nothing after it runs (BaseException: no handler catches it)."""


def test_a_kill_at_every_point_of_finalize_resumes_to_the_same_dataset(libero_raw, tmp_path, monkeypatch):
    """Every rename/replace/unlink/rmdir of the parent from the staged state to the end (finalize, the
    metadata, the report, the staging cleanup) is a kill point; each rerun gives the reference dataset."""
    import shutil

    import pipelines.ingest as I

    raw = libero_raw((TASKS[0], ("open the drawer", [3], 10)))
    ingest([raw], tmp_path / "ref", IngestConfig(workers=1), progress=False)
    ref = {str(p.relative_to(tmp_path / "ref")): p.read_bytes()
           for p in sorted((tmp_path / "ref").rglob("*")) if p.is_file()}
    with monkeypatch.context() as m:  # every episode staged, nothing finalized
        m.setattr(I, "finalize", lambda *a, **k: (_ for _ in ()).throw(_Kill()))
        with pytest.raises(_Kill):
            ingest([raw], tmp_path / "staged", IngestConfig(workers=1), progress=False)
    ops = {name: getattr(os, name) for name in ("replace", "rename", "unlink", "rmdir")}
    k = 0
    while True:
        out = tmp_path / f"k{k}"
        shutil.copytree(tmp_path / "staged", out)
        count = [0]

        def wrap(name, count=count, k=k):
            def op(path, *a, **kw):
                if not str(path).endswith(keys.INGEST_LOCK):
                    count[0] += 1
                    if count[0] == k + 1:
                        raise _Kill()
                return ops[name](path, *a, **kw)
            return op
        with monkeypatch.context() as m:
            for name in ops:
                m.setattr(os, name, wrap(name))
            try:
                ingest([raw], out, IngestConfig(workers=1), progress=False)
                killed = False
            except _Kill:
                killed = True
        if killed:
            report = ingest([raw], out, IngestConfig(workers=1), progress=False)
            assert report["episodes_written"] == 3, k
        got = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        got = {p.replace(f"k{k}", "ref"): b for p, b in got.items()}
        assert got.keys() == ref.keys(), (k, sorted(got.keys() ^ ref.keys()))
        assert all(got[p] == ref[p] for p in ref), k
        assert not [p for p in out.rglob("*") if ".tmp" in p.name], k
        shutil.rmtree(out)
        if not killed:
            break
        k += 1
    assert k > 20  # the points exercised (renames, replaces, each file of the staging cleanup)
