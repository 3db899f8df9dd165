"""A stalled encoder or a dead worker costs a retry in a fresh process, never a hang; the result is the same."""

import os
import signal
import time
from pathlib import Path

import pytest

from pipelines.ingest import IngestConfig, ingest
from schemas import keys

TASKS = (("put the black bowl on the plate", [0, 1], 12), ("open the drawer", [0], 17))


def tree(root: Path) -> dict[str, bytes]:
    """Every file of a dataset by relative path, byte for byte (the resolved config, which records this run's
    watchdog settings, aside)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != keys.INGEST_CONFIG}


def _inject(monkeypatch, tmp_path, fault: str, length: int | None = None):
    """Wrap the encoder used by staging (inherited by forked workers). The first encode of a wrist camera
    (or every encode of an episode of `length` frames) misbehaves: 'stall' hangs inside the encoder after
    its third call's beat; 'die' SIGKILLs the worker. Each encode start is logged with its time."""
    import pipelines.lerobot_io.staging as st

    real, flag, log = st.encode_frames, tmp_path / "fault.flag", tmp_path / "starts.log"

    def enc(frames, path, *a, before_call=None, **k):
        with open(log, "a") as f:
            f.write(f"{time.time()} {Path(path).parent.name.split('.tmp')[0]} {Path(path).name}\n")
        hit = len(frames) == length if length else ("wrist" in Path(path).name and not flag.exists())
        if not hit:
            return real(frames, path, *a, before_call=before_call, **k)
        flag.write_text(Path(path).parent.name.split(".tmp")[0])
        if fault == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        calls = []

        def beat(n, px):
            before_call(n, px)
            calls.append(n)
            if len(calls) == 3:
                time.sleep(3600)  # a deadlocked encoder: no CPU, no progress
        return real(frames, path, *a, before_call=beat, **k)

    monkeypatch.setattr(st, "encode_frames", enc)
    return flag, log


def _retries(flag: Path, log: Path) -> list[float]:
    """Start times of later encodes of the faulty episode's wrist camera (its retries)."""
    return [float(t) for t, uid, name in (ln.split() for ln in log.read_text().splitlines())
            if uid == flag.read_text() and "wrist" in name and float(t) > flag.stat().st_mtime]


@pytest.mark.parametrize("workers", [1, 2])
def test_stalled_encoder_is_killed_and_retried_within_its_bound(libero_raw, tmp_path, monkeypatch, workers):
    raw = libero_raw(TASKS)
    ingest([raw], tmp_path / "ref", IngestConfig(workers=workers), progress=False)
    flag, log = _inject(monkeypatch, tmp_path, "stall")
    cfg = IngestConfig(workers=workers, encode_stall_s=3.0, encode_s_per_mpixel=1.0)
    report = ingest([raw], tmp_path / "ds", cfg, progress=False)
    assert report["episodes_written"] == 3 and report["episodes_failed"] == 0
    assert tree(tmp_path / "ds") == tree(tmp_path / "ref")  # the retried episode is written once, identically
    bound = 3.0 + 128 * 128 / 1e6  # encode_stall_s + s/Mpx x one 128x128 frame
    retry = _retries(flag, log)
    recovery = min(retry) - flag.stat().st_mtime  # stall start -> the retry's encoder starts
    print(f"injected stall recovered in {recovery:.2f} s (bound {bound:.2f} s, workers={workers})")
    assert bound <= recovery < bound + 15


def test_an_episode_that_always_stalls_is_reported_not_hung(libero_raw, tmp_path, monkeypatch):
    raw = libero_raw(TASKS)
    _inject(monkeypatch, tmp_path, "stall", length=17)
    report = ingest([raw], tmp_path / "ds", IngestConfig(workers=2, encode_stall_s=1.0, tries=2), progress=False)
    assert report["episodes_written"] == 2 and report["episodes_failed"] == 1
    (err,) = report["failed"]
    assert err["episode"] == "demo_0" and "open_the_drawer" in err["file"] and err["key"] == "?"
    assert err["error"] == "gave up after 2 tries: " + "; ".join(
        ["stalled in encode: no progress within its 1.0 s bound"] * 2)
    assert not list((tmp_path / "ds").rglob("*.tmp*"))


@pytest.mark.parametrize("workers", [1, 2])
def test_dead_worker_is_noticed_at_once_and_its_episode_requeued(libero_raw, tmp_path, monkeypatch, workers):
    raw = libero_raw(TASKS)
    ingest([raw], tmp_path / "ref", IngestConfig(workers=workers), progress=False)
    flag, log = _inject(monkeypatch, tmp_path, "die")
    slow = IngestConfig(workers=workers, stall_timeout_s=900, encode_stall_s=900)  # stalls would take 15 min
    t0 = time.time()
    report = ingest([raw], tmp_path / "ds", slow, progress=False)
    assert report["episodes_written"] == 3 and report["episodes_failed"] == 0
    assert tree(tmp_path / "ds") == tree(tmp_path / "ref")
    assert time.time() - t0 < 120  # far below the 900 s bounds: the death was seen through the process
    retry = _retries(flag, log)
    assert min(retry) - flag.stat().st_mtime < 10


def test_kill9_of_the_ingest_takes_its_workers_with_it(libero_raw, tmp_path):
    """Workers die with the parent (no orphan keeps writing into the staging area of the rerun)."""
    import subprocess
    import sys

    raw = libero_raw(TASKS)
    code = ("import sys, time, pipelines.lerobot_io.staging as st\n"
            "st.encode_frames = lambda *a, **k: time.sleep(3600)\n"
            "from pipelines.ingest import IngestConfig, ingest\n"
            "ingest([sys.argv[1]], sys.argv[2], IngestConfig(workers=2), progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(raw), str(tmp_path / "ds")],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    staging = tmp_path / "ds" / keys.STAGING_DIR
    deadline = time.time() + 60
    while time.time() < deadline and len([d for d in staging.glob("*.tmp*")]) < 2:
        time.sleep(0.05)
    kids = [int(d.name.rsplit(".tmp", 1)[1]) for d in staging.glob("*.tmp*")]
    assert len(kids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    alive = [p for p in kids if Path(f"/proc/{p}").exists() and "Z" not in
             Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert alive == []


def test_default_encoder_params_keep_lerobot_output(tmp_path):
    """lp=1 only changes SVT-AV1's thread count: AV1 in mp4, yuv420p, the same bytes as the library defaults."""
    import av

    from pipelines.lerobot_io.video import encode_frames, probe
    from pipelines.synth.markers import marker_video

    assert keys.DEFAULT_SVTAV1_PARAMS == "lp=1"
    frames = marker_video(20, 64, 96)
    encode_frames(frames, tmp_path / "default.mp4", 20.0)
    encode_frames(frames, tmp_path / "lib.mp4", 20.0, svtav1_params="")
    assert (tmp_path / "default.mp4").read_bytes() == (tmp_path / "lib.mp4").read_bytes()
    p = probe(tmp_path / "default.mp4")
    assert p == {"codec": "libdav1d", "pix_fmt": "yuv420p", "width": 96, "height": 64, "fps": 20.0}  # AV1 decoder
    with av.open(str(tmp_path / "default.mp4")) as c:
        keyframes = [pkt.is_keyframe for pkt in c.demux(c.streams.video[0]) if pkt.size]
    assert keyframes == [i % 2 == 0 for i in range(20)]  # g=2


def test_spawned_workers_give_the_same_dataset(libero_raw, tmp_path, monkeypatch):
    """Where fork does not exist (macOS, Windows) the children are spawned: same files."""
    import multiprocessing as mp

    import pipelines.ingest_guard as G

    raw = libero_raw(TASKS)
    ingest([raw], tmp_path / "ref", IngestConfig(workers=2), progress=False)
    monkeypatch.setattr(G, "context", lambda: mp.get_context("spawn"))
    ingest([raw], tmp_path / "ds", IngestConfig(workers=2), progress=False)
    assert tree(tmp_path / "ds") == tree(tmp_path / "ref")


def test_worker_killed_by_an_unnamed_signal_is_reported_not_a_traceback(tmp_path):
    """A child ended by a real-time signal (no name in signal.Signals) is a failed attempt like any other."""
    from types import SimpleNamespace

    from pipelines.ingest_guard import Watch, run_jobs

    n = int(signal.SIGRTMIN) + 5
    job = SimpleNamespace(ref=SimpleNamespace(uid="ep0", file="raw.hdf5", episode=0), staging=str(tmp_path))

    def work(job, beat):
        os.kill(os.getpid(), n)

    res = list(run_jobs(work, [job], 1, Watch(tries=1), log=lambda msg: None))
    assert res == [{"uid": "ep0", "error": {"file": "raw.hdf5", "episode": "0", "key": "?",
                                            "error": f"gave up after 1 tries: worker died (signal {n})"}}]
