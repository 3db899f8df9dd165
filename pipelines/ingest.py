"""`wamdata ingest`: raw episodes -> one LeRobot dataset, in parallel, resumable, atomic.

    RAW... --discover--> [EpisodeRef] --worker pool: load + stage (one episode in memory per worker)-->
        OUT/.wamdata_staging/<uid>/ (complete or absent) --finalize (episode order = discovery order)-->
        OUT/{data, videos, meta}  + OUT/ingest_report.json + OUT/wamdata_ingest_config.json

kill -9 at any moment, rerun the same command: staged episodes are kept, half-written ones redone,
finalize starts over from the staging area; `meta/info.json` is written last, then the staging area is
renamed away and deleted. A bad episode is reported (file, episode, key) and skipped; the rest of the batch
is written. Every episode runs in a watched child process (`ingest_guard`): a stalled encoder or a dead
worker costs a retry, never a hang. OUT is locked (`ingest_lock`) while an ingest runs. A rerun on a
complete dataset made from the same inputs and config does nothing; made differently, it is refused.
Our own output running out of space stops the ingest (staged episodes kept), it is not bad input.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from pipelines.ingest_guard import Watch, run_jobs
from pipelines.ingest_lock import OutputLock
from pipelines.lerobot_io.finalize import finalize, write_json
from pipelines.lerobot_io.staging import VideoConfig, load_summary, stage_episode, tmp_dir
from pipelines.sources.base import EpisodeRef, SourceOptions
from schemas import keys
from schemas.errors import EpisodeError, SchemaError, WamdataError, output_full

_WATCH = ("workers", "overwrite", "stall_timeout_s", "encode_stall_s", "encode_s_per_mpixel", "tries")


@dataclass(frozen=True)
class IngestConfig:
    source: str | None = None            # None = detected from the files
    format: str = keys.V30
    fps: float | None = None             # None = the source's default / the episode's own
    workers: int = 0                     # 0 = one per CPU core
    robot_type: str | None = None
    overwrite: bool = False
    stall_timeout_s: float = 300.0       # bound on loading one raw episode (then: killed, retried)
    encode_stall_s: float = 20.0         # bound on one encoder call: this + encode_s_per_mpixel x megapixels
    encode_s_per_mpixel: float = 1.0
    tries: int = 3                       # attempts per episode (a stall or a dead worker), then reported
    video: VideoConfig = field(default_factory=VideoConfig)
    source_options: SourceOptions = field(default_factory=SourceOptions)

    def __post_init__(self):
        if self.format not in keys.CODEBASE_VERSIONS:
            raise SchemaError(f"format must be one of {keys.CODEBASE_VERSIONS}, got {self.format!r}")
        if self.fps is not None and not self.fps > 0:
            raise SchemaError(f"fps must be positive, got {self.fps}")
        if self.workers < 0:
            raise SchemaError(f"workers must be >= 0, got {self.workers}")
        for k in ("stall_timeout_s", "encode_stall_s", "encode_s_per_mpixel"):
            if not getattr(self, k) > 0:
                raise SchemaError(f"{k} must be positive, got {getattr(self, k)}")
        if self.tries < 1:
            raise SchemaError(f"tries must be >= 1, got {self.tries}")

    def watch(self) -> Watch:
        return Watch(self.stall_timeout_s, self.encode_stall_s, self.encode_s_per_mpixel, self.tries)

    def identity(self) -> dict:
        """What must match for a rerun to resume into an existing staging area."""
        d = asdict(self)
        for k in _WATCH:
            d.pop(k)
        return d


def source_module(name: str):
    from pipelines.sources.detect import SOURCES

    if name not in SOURCES:
        raise SchemaError(f"source must be one of {sorted(SOURCES)}, got {name!r}")
    return importlib.import_module(SOURCES[name])


@dataclass(frozen=True)
class _Job:
    ref: EpisodeRef
    module: str
    staging: str
    cfg: IngestConfig


def _work(job: _Job, beat) -> dict:
    """Runs in a worker process: load one raw episode, stage it. Raises only when our output is full."""
    ref, cfg = job.ref, job.cfg
    dest = Path(job.staging) / ref.uid
    try:
        if dest.exists():  # staged by a worker that was stopped before it could report
            return {"uid": ref.uid, "frames": load_summary(dest)["length"]}
        mod = importlib.import_module(job.module)
        ep = mod.load(ref, cfg.source_options)
        fps = cfg.fps or ep.meta.get("fps") or mod.DEFAULT_FPS
        summary = stage_episode(ep, dest, float(fps), cfg.video, before_encode=beat.encoder_call)
        return {"uid": ref.uid, "frames": summary["length"]}
    except EpisodeError as e:
        return {"uid": ref.uid, "error": e.to_dict()}
    except Exception as e:  # an adapter bug or a format surprise: still name the episode
        if isinstance(e, OSError) and output_full(e, dest, "") is not None:
            raise  # our output is full: not this episode's fault (the child stops the ingest)
        return {"uid": ref.uid, "error": EpisodeError(ref.file, ref.episode, "?", f"{type(e).__name__}: {e}")
                .to_dict()}


def _consistent(summaries: list[dict]) -> list[tuple[int, str, str]]:
    """Episodes whose features or fps differ from the first episode's: (position, key, message)."""
    ref = summaries[0]
    bad = []
    for i, s in enumerate(summaries[1:], 1):
        if s["fps"] != ref["fps"]:
            bad.append((i, "fps", f"fps {s['fps']} differs from the dataset's {ref['fps']}"))
            continue
        for k in ref["features"].keys() | s["features"].keys():
            a, b = ref["features"].get(k), s["features"].get(k)
            if a is None or b is None or a["shape"] != b["shape"] or a["dtype"] != b["dtype"]:
                bad.append((i, k, f"feature {k!r} is {b} here but {a} in the first episode"))
                break
    return bad


def _unique_paths(paths: list[str | Path]) -> list[Path]:
    """Inputs resolved (symlinks, `..`, relative spellings) and deduplicated, first occurrence kept."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise WamdataError(f"input path does not exist: {p}")
        r = p.resolve()
        if r not in out:
            out.append(r)
    return out


def _unique_refs(refs: list[EpisodeRef]) -> list[EpisodeRef]:
    """One ref per (file identity, episode): a file reached through two inputs (a folder and a file in it,
    a hard link) is ingested once."""
    seen, out = set(), []
    for r in refs:
        try:
            st = os.stat(r.file)
            ident = (st.st_dev, st.st_ino, r.episode)
        except OSError:
            ident = (r.file, r.episode)
        if ident not in seen:
            seen.add(ident)
            out.append(r)
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _differences(old: dict, new: dict) -> str:
    old, new = _flat(old), _flat(new)
    out = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if k == "episodes":
            out.append(f"the input episodes ({len(a or [])} there, {len(b or [])} now)")
        else:
            out.append(f"{k} ({a!r} there, {b!r} now)")
    return ", ".join(out)


def _finished(out: Path, request: dict) -> dict | None:
    """The report of a complete dataset at `out` made from the same request; None when there is none.
    A complete dataset made differently is refused, naming what differs."""
    if not ((out / keys.INFO_PATH).exists() and not (out / keys.STAGING_DIR).exists()):
        return None
    try:
        old = json.loads((out / keys.INGEST_CONFIG).read_text()).get("request")
    except (OSError, ValueError):
        old = None
    if old != json.loads(json.dumps(request)):
        what = _differences(old, request) if old else "no record of how it was made"
        raise WamdataError(f"{out} already holds a complete dataset made differently: {what}; "
                           "pass --overwrite to replace it")
    return json.loads((out / keys.INGEST_REPORT).read_text())


def _clean_leftovers(out: Path) -> None:
    """What a killed run can leave: the renamed staging area being deleted, half-written top-level files."""
    shutil.rmtree(out / keys.STAGING_TRASH, ignore_errors=True)
    for f in out.glob("*.tmp"):
        f.unlink(missing_ok=True)


def _prepare_out(out: Path, cfg: IngestConfig) -> Path:
    if cfg.overwrite:
        for p in out.iterdir():
            if p.name != keys.INGEST_LOCK:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    staging = out / keys.STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    ident = staging / "config.json"
    if ident.exists() and json.loads(ident.read_text()) != json.loads(json.dumps(cfg.identity())):
        raise WamdataError(f"{out} holds an unfinished ingest with a different config ({ident}): "
                           f"{_differences(json.loads(ident.read_text()), cfg.identity())}; "
                           "rerun with the same options or pass --overwrite")
    write_json(ident, cfg.identity())
    for d in staging.iterdir():  # half-written episodes of a killed run
        if ".tmp" in d.name:
            shutil.rmtree(d, ignore_errors=True)
    return staging


def ingest(paths: list[str | Path], out: str | Path, cfg: IngestConfig = IngestConfig(),
           progress: bool = True) -> dict:
    """Run the whole ingest; returns the report (also written to OUT/ingest_report.json). A rerun on a
    complete dataset made from the same inputs and config returns its report with `nothing_to_do`."""
    from pipelines.sources.detect import SOURCES, detect

    paths = _unique_paths(paths)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WamdataError(f"output {out} exists and is not a directory")
    name = cfg.source or detect(paths)
    module = SOURCES.get(name) or source_module(name).__name__
    refs = _unique_refs(importlib.import_module(module).discover(paths, cfg.source_options))
    if not refs:
        raise WamdataError(f"no {name} episodes found under {[str(p) for p in paths]}")
    request = {"paths": [str(p) for p in paths], "source": name, "episodes": [r.uid for r in refs],
               **{k: v for k, v in cfg.identity().items() if k != "source"}}
    with OutputLock(out) as lock:
        try:
            _clean_leftovers(out)
            if not cfg.overwrite and (done := _finished(out, request)) is not None:
                return {**done, "nothing_to_do": True}
            staging = _prepare_out(out, cfg)
            return _run(refs, name, module, out, staging, cfg, request, progress, lock.fd)
        except OSError as e:
            full = output_full(e, out, "what is staged so far is kept")
            if full is None:
                raise
            raise full from None


def _run(refs, name, module, out, staging, cfg, request, progress, lock_fd) -> dict:
    todo = [r for r in refs if not (staging / r.uid).exists()]
    jobs = [_Job(r, module, str(staging), cfg) for r in todo]
    workers = min(cfg.workers or os.cpu_count() or 1, max(len(jobs), 1))
    errors: dict[str, dict] = {}
    t0, frames = time.perf_counter(), 0
    bar = _Bar(total=len(refs), initial=len(refs) - len(todo), unit="ep", desc=f"ingest {name}",
               disable=not progress, dynamic_ncols=True)
    try:
        for r in run_jobs(_work, jobs, workers, cfg.watch(), close_fds=(lock_fd,), log=tqdm.write,
                          tmp_dirs=lambda j, pid: [tmp_dir(Path(j.staging) / j.ref.uid, pid)]):
            if "error" in r:
                errors[r["uid"]] = r["error"]
                tqdm.write(f"skipped: {r['error']['file']} [episode {r['error']['episode']}] "
                           f"key {r['error']['key']!r}: {r['error']['error']}")
            else:
                frames += r["frames"]
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{frames / (time.perf_counter() - t0):.0f}", failed=len(errors))
    finally:
        bar.close()

    staged = [staging / r.uid for r in refs if (staging / r.uid).exists()]
    summaries = [load_summary(d) for d in staged]
    if not summaries:
        _write_report(out, refs, errors, 0)
        raise WamdataError(f"every episode failed; see {out / keys.INGEST_REPORT}")
    for i, key, msg in reversed(_consistent(summaries)):
        s = summaries.pop(i)
        errors[staged.pop(i).name] = EpisodeError(s["source_file"], s["episode_id"], key, msg).to_dict()
    robot = cfg.robot_type or summaries[0]["meta"].get("robot_type")
    with _Bar(total=len(staged), unit="ep", desc="finalize", disable=not progress) as fbar:
        info = finalize(out, staged, summaries, summaries[0]["fps"], cfg.video, cfg.format, robot,
                        progress=fbar.update)
    resolved = replace(cfg, source=name, fps=summaries[0]["fps"], robot_type=robot)
    write_json(out / keys.INGEST_CONFIG, {"paths": request["paths"], **asdict(resolved), "request": request})
    report = _write_report(out, refs, errors, info.total_episodes)
    os.rename(staging, out / keys.STAGING_TRASH)  # the dataset is complete from here on
    shutil.rmtree(out / keys.STAGING_TRASH)
    return report


class _Bar(tqdm):
    monitor_interval = 0  # no tqdm monitor thread: the parent stays single-threaded, so forking it is safe


def _write_report(out: Path, refs: list[EpisodeRef], errors: dict, n_ok: int) -> dict:
    report = {"episodes_found": len(refs), "episodes_written": n_ok, "episodes_failed": len(errors),
              "failed": list(errors.values())}
    write_json(out / keys.INGEST_REPORT, report)
    return report
