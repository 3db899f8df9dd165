"""SVT-AV1 stall stress: many short encodes per encoder setting, each watched by a watchdog.

    for each SETTING x CONCURRENCY (1, 2):
      parent (imports av, single-threaded) --fork|spawn--> CONCURRENCY worker processes
        worker: for each (H, W, T, seed) of its share: synthetic RGB frames -> encode_frames(...) -> /dev/shm
                reports ("start", i) and ("done", i, seconds) through a pipe
      parent: a worker whose current encode is older than --bound-s is a STALL: its threads' states are
              recorded (/proc/<pid>/task/*/wchan), it is SIGKILLed and a fresh worker takes the rest
    -> bench_out/bench_svt_stress.json + one line per setting: stalls / encodes, mean encode time,
       and the ratio of its mean encode time to the anchor setting's (the first one) in the same run

Sizes are drawn from 128x128 ... 480x640, lengths from 8 ... 40 frames (fixed seed: every setting encodes the
same list). The machine is shared: run under `nice`, with `timeout`.

    nice timeout 3h .venv/bin/python bench/bench_svt_stress.py --encodes 2000 --settings lib_default lp1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = [(128, 128), (128, 160), (224, 224), (240, 320), (256, 256), (360, 480), (480, 640)]


@dataclass(frozen=True)
class Setting:
    preset: int = 10
    svtav1_params: str = ""           # "" = SVT-AV1's own defaults (what ingest used before this bench)
    drop_cap: bool = True             # drop CAP_SYS_NICE before encoding (SVT-AV1 goes SCHED_FIFO as root)
    start: str = "fork"


SETTINGS = {
    "lib_default": Setting(),
    "lp1": Setting(svtav1_params="lp=1"),
    "lp2": Setting(svtav1_params="lp=2"),
    "lp1_spawn": Setting(svtav1_params="lp=1", start="spawn"),
    "lib_default_spawn": Setting(svtav1_params="", start="spawn"),
    "lib_default_nodrop": Setting(svtav1_params="", drop_cap=False),
    "lib_default_p12": Setting(svtav1_params="", preset=12),
}


def plan(n: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    return [(*SIZES[rng.integers(len(SIZES))], int(rng.integers(8, 41)), i) for i in range(n)]


def frames_for(h: int, w: int, t: int, seed: int) -> np.ndarray:
    """A smooth blocky background (like a scene, not noise) with a moving bright square."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:h, :w]
    out = np.repeat(base[None], t, axis=0)
    s = max(8, h // 6)
    for i in range(t):
        y, x = (7 * i) % (h - s), (11 * i) % (w - s)
        out[i, y:y + s, x:x + s] = 230
    return out


def _worker(items, setting: Setting, conn, tmpdir: str) -> None:
    from pipelines.lerobot_io import video

    if not setting.drop_cap:
        video._local.dropped = True  # pretend it was dropped already: SVT-AV1 keeps its realtime threads
    for h, w, t, seed in items:
        conn.send(("start", seed))
        frames = frames_for(h, w, t, seed)
        t0 = time.perf_counter()
        path = os.path.join(tmpdir, f"{os.getpid()}.mp4")
        video.encode_frames(frames, path, 20.0, preset=setting.preset, svtav1_params=setting.svtav1_params)
        conn.send(("done", seed, time.perf_counter() - t0))
        os.unlink(path)
    conn.close()


def _threads(pid: int) -> list[str]:
    states = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
            states.append(f"{stat[0]}:{(task / 'wchan').read_text() or '-'}")
        except OSError:
            pass
    return states


def run_setting(setting: Setting, items, concurrency: int, bound_s: float, tmpdir: str,
                per_encode: bool = False) -> dict:
    """`per_encode`: a fresh worker process per encode (what `wamdata ingest` does per episode); else each
    of the `concurrency` workers encodes its share of the list in one process."""
    ctx = mp.get_context(setting.start)
    queue = list(items)
    share = 1 if per_encode else -(-len(queue) // concurrency)
    todo = [queue[i:i + share] for i in range(0, len(queue), share)]
    live: dict = {}  # conn -> [proc, remaining items, current seed, started_at]
    done, secs, stalls = 0, [], []

    def launch(part):
        if not part:
            return
        a, b = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(part, setting, b, tmpdir), daemon=True)
        p.start()
        b.close()
        live[a] = [p, list(part), None, time.monotonic()]

    while todo and len(live) < concurrency:
        launch(todo.pop(0))
    while live or todo:
        while todo and len(live) < concurrency:
            launch(todo.pop(0))
        ready = wait(list(live), timeout=1.0)
        for conn in ready:
            p, rest, _, _ = live[conn]
            try:
                msg = conn.recv()
            except EOFError:
                p.join()
                del live[conn]
                if rest:  # died without a stall (crash): count it and go on with the rest
                    stalls.append({"seed": rest[0][3], "item": rest[0], "exitcode": p.exitcode})
                    launch(rest[1:])
                continue
            if msg[0] == "start":
                live[conn][2:] = [msg[1], time.monotonic()]
            else:
                done += 1
                secs.append(msg[2])
                live[conn][1] = rest[1:]
                live[conn][2] = None
        now = time.monotonic()
        for conn, (p, rest, cur, since) in list(live.items()):
            if cur is not None and now - since > bound_s:
                stalls.append({"seed": cur, "item": rest[0], "threads": _threads(p.pid),
                               "stalled_after_s": round(now - since, 1)})
                os.kill(p.pid, signal.SIGKILL)
                p.join()
                del live[conn]
                launch(rest[1:])
    return {"encodes": done, "stalls": len(stalls), "stall_detail": stalls,
            "mean_encode_s": float(np.mean(secs)) if secs else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encodes", type=int, default=2000, help="encodes per setting and concurrency")
    ap.add_argument("--settings", nargs="+", default=["lib_default", "lp1"], choices=list(SETTINGS))
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--bound-s", type=float, default=60.0, help="an encode taking longer is a stall")
    ap.add_argument("--per-encode-process", action="store_true",
                    help="a fresh worker process per encode, as `wamdata ingest` runs each episode")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "bench_svt_stress.json")
    args = ap.parse_args()
    import av  # noqa: F401  (the parent holds the library like the ingest parent does)

    from schemas import keys

    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    items = plan(args.encodes)
    anchor = None
    for name in args.settings:
        s = SETTINGS[name]
        for c in args.concurrency:
            t0 = time.time()
            r = run_setting(s, items, c, args.bound_s, tmpdir, args.per_encode_process)
            r.update(setting=asdict(s), concurrency=c, wall_s=round(time.time() - t0, 1),
                     per_encode_process=args.per_encode_process, project_default_params=keys.DEFAULT_SVTAV1_PARAMS)
            name_c = f"{name}{'/per_encode' if args.per_encode_process else ''}/c{c}"
            results[name_c] = r
            args.out.write_text(json.dumps(results, indent=2))
            anchor = anchor or r["mean_encode_s"]
            ratio = r["mean_encode_s"] / anchor if r["mean_encode_s"] and anchor else float("nan")
            print(f"{name_c:>28}: {r['stalls']} stalls / {r['encodes']} encodes, mean encode "
                  f"{r['mean_encode_s']:.3f} s ({ratio:.2f}x the first setting), wall {r['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
