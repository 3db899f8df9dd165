"""Run ingest jobs in watched child processes: a stalled or dead worker never hangs the ingest.

    [job, ...] --> at most `workers` children at a time, one fresh process per episode (also with 1 worker)
      child: ("beat", phase, allowance_s) before each step (load; every encoder call), then ("done", result)
      parent: waits on every child's pipe and process sentinel with a timeout = the earliest deadline
        - no beat within its allowance (a stalled encoder/decoder): SIGKILL, retry in a fresh process
        - the child died (OOM killer, a crash): noticed at once through its sentinel, retried
        - after `tries` attempts: reported as a failed episode (never a hang)
        - ("fatal", message) (our output is full): stop every child, raise `OutputFullError`

An encoder call's allowance is proportional to its work: `floor_s + s_per_mpixel x megapixels it may
process` (one frame, or the frames still buffered at the final flush). A retried episode is staged from
scratch by a fresh process (SVT-AV1 output is deterministic), so its files equal a first-try run's.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import shutil
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import wait

from schemas.errors import EpisodeError, OutputFullError, output_full

FLUSH_FRAMES_MAX = 256  # an encoder holds at most this many frames before the final flush (SVT-AV1: <= ~130)


@dataclass(frozen=True)
class Watch:
    load_s: float = 300.0          # loading one raw episode (reads + decodes)
    encode_floor_s: float = 20.0   # fixed part of an encoder call's allowance (covers encoder start-up)
    encode_s_per_mpixel: float = 1.0  # ~10x the measured SVT-AV1 preset-10 cost on one contended core
    tries: int = 3

    def __post_init__(self):
        for k in ("load_s", "encode_floor_s", "encode_s_per_mpixel"):
            if not getattr(self, k) > 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.tries < 1:
            raise ValueError(f"tries must be >= 1, got {self.tries}")

    def encode_allowance(self, frames: int, pixels: int) -> float:
        return self.encode_floor_s + self.encode_s_per_mpixel * min(frames, FLUSH_FRAMES_MAX) * pixels / 1e6


def context():
    """fork where it exists (no re-import; the parent holds no threads or open files when it forks); else spawn."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _die_with_parent() -> None:
    """Linux: this child is SIGKILLed when the ingest process dies (kill -9 of the parent leaves no orphans
    that would go on writing into the staging area of a rerun)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _signal_name(n: int) -> str:
    """SIGKILL, ...; the number for a signal without a name (real-time signals)."""
    try:
        return signal.Signals(n).name
    except ValueError:
        return str(n)


class _Beat:
    def __init__(self, conn, watch: Watch):
        self.conn, self.watch = conn, watch

    def __call__(self, phase: str, allowance: float) -> None:
        self.conn.send(("beat", phase, allowance))

    def encoder_call(self, frames: int, pixels: int) -> None:
        self("encode", self.watch.encode_allowance(frames, pixels))


def _child(work, job, conn, watch: Watch, close_fds: tuple[int, ...]) -> None:
    _die_with_parent()
    for fd in close_fds:  # the output lock: only the parent holds it
        os.close(fd)
    beat = _Beat(conn, watch)
    beat("load", watch.load_s)
    try:
        r = work(job, beat)
    except OSError as e:
        full = output_full(e, job.staging, "episodes staged so far are kept")
        if full is None:
            raise
        conn.send(("fatal", str(full)))
        return
    conn.send(("done", r))


@dataclass
class _Run:
    job: object
    proc: mp.Process
    conn: object
    phase: str
    allowance: float
    deadline: float


def run_jobs(work, jobs: list, workers: int, watch: Watch, uid=lambda j: j.ref.uid,
             tmp_dirs=lambda job, pid: [], close_fds: tuple[int, ...] = (), log=print):
    """Yield one result dict per job (its own, or {"uid", "error"} after `watch.tries` failed attempts).
    `work(job, beat)` runs in the child; `tmp_dirs(job, pid)` are removed after a child is killed."""
    ctx = context()
    if ctx.get_start_method() != "fork":
        close_fds = ()  # a spawned child inherits none of them (and may use those numbers for its own files)
    queue = list(jobs)
    attempts: dict[str, list[str]] = {uid(j): [] for j in jobs}
    running: dict[object, _Run] = {}

    def start(job):
        a, b = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(work, job, b, watch, close_fds), daemon=True)
        p.start()
        b.close()
        running[a] = _Run(job, p, a, "start", watch.load_s, time.monotonic() + watch.load_s)

    def stop(run: _Run) -> None:
        if run.proc.is_alive():
            os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.join()
        run.conn.close()
        for d in tmp_dirs(run.job, run.proc.pid):
            shutil.rmtree(d, ignore_errors=True)

    def failed(run: _Run, why: str):
        """Record a failed attempt; requeue the job, or return its final error result."""
        u = uid(run.job)
        attempts[u].append(why)
        ref = run.job.ref
        if len(attempts[u]) < watch.tries:
            log(f"episode {ref.file} [{ref.episode}]: {why}; retrying in a fresh process "
                f"(try {len(attempts[u]) + 1}/{watch.tries})")
            queue.insert(0, run.job)
            return None
        return {"uid": u, "error": EpisodeError(ref.file, ref.episode, "?",
                                                f"gave up after {watch.tries} tries: " + "; ".join(attempts[u])
                                                ).to_dict()}

    try:
        while queue or running:
            while queue and len(running) < max(workers, 1):
                start(queue.pop(0))
            timeout = max(0.0, min(r.deadline for r in running.values()) - time.monotonic())
            ready = set(wait([*running, *(r.proc.sentinel for r in running.values())], timeout=timeout))
            for conn, run in list(running.items()):
                result, why = None, None
                if conn in ready or run.proc.sentinel in ready:
                    eof = False
                    try:
                        while result is None and conn.poll():
                            msg = conn.recv()
                            if msg[0] == "beat":
                                run.phase, run.allowance = msg[1], msg[2]
                                run.deadline = time.monotonic() + msg[2]
                            elif msg[0] == "done":
                                result = msg[1]
                            else:  # "fatal": our output device is full
                                raise OutputFullError(msg[1])
                    except (EOFError, OSError):
                        eof = True
                    if result is None and (eof or not run.proc.is_alive()):
                        run.proc.join(5)  # bounded: a child that closed its pipe but does not exit is killed
                        code = run.proc.exitcode
                        why = (f"worker died (signal {_signal_name(-code)})" if code and code < 0
                               else f"worker exited with code {code}" if code is not None
                               else "worker closed its pipe without a result")
                if result is None and why is None and time.monotonic() > run.deadline:
                    why = f"stalled in {run.phase}: no progress within its {run.allowance:.1f} s bound"
                if result is None and why is None:
                    continue
                del running[conn]
                stop(run)
                if result is None:
                    result = failed(run, why)
                if result is not None:
                    yield result
    finally:
        for run in running.values():
            stop(run)
