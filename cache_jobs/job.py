"""`wamdata cache`: LeRobot dataset -> latent cache, as dask.distributed batch jobs.

    driver:  read metadata -> plan work units (whole episodes, shard-aligned rows) -> config hash
             -> create/validate CACHE -> text task (one per run, unique prompts) -> one task per unit
             not yet done -> tqdm over chunks (rate, ETA) -> manifest (checksums) + cache_report.json
    worker:  per unit: for each episode decode every camera once, tile the frames the chunks use,
             cut 9-frame chunks, VAE-encode in batches, write the unit's shards, hash, done marker.
             Models and readers live in a per-process cache (loaded once per worker, never pickled).

A failed episode (bad video, wrong length, missing key) is reported and its rows left invalid; the rest of
its unit and every other unit is unaffected.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cache_jobs import store as S
from cache_jobs.chunking import EpisodeChunker, needed_frames
from cache_jobs.config import CacheJobConfig, load_reader_class, package_version
from cache_jobs.models import TextEncoder, VaeEncoder, _cached, resolve_dtype, text_digest
from cache_jobs.tiling import Tiler, load_layout
from schemas import cache as C
from schemas.errors import EpisodeError, SchemaError, WamdataError

log = logging.getLogger(__name__)


def open_reader(cfg: CacheJobConfig):
    return _cached(("reader", cfg.dataset.reader, str(Path(cfg.dataset.root).resolve())),
                   lambda: load_reader_class(cfg.dataset.reader)(cfg.dataset.root))


def dataset_fingerprint(root: str) -> str:
    """sha256 of the dataset's meta/ files (info, episodes, tasks, stats): a changed dataset is a new cache."""
    import hashlib

    h = hashlib.sha256()
    meta = Path(root) / "meta"
    for p in sorted(meta.rglob("*")) if meta.is_dir() else []:
        if p.is_file():
            h.update(str(p.relative_to(meta)).encode())
            h.update(S.sha256_file(p).encode())
    return h.hexdigest()


def feature_dim(reader, key: str) -> int:
    feats = reader.info.features
    if key not in feats:
        raise SchemaError(f"{reader_root(reader)}: dataset has no feature {key!r} (has {sorted(feats)})")
    shape = feats[key].shape
    return int(np.prod(shape))


def reader_root(reader) -> str:
    return str(getattr(reader, "root", "?"))


def _stats_of(reader, key: str) -> dict:
    st = (reader.stats or {}).get(key, {})
    return {k: np.asarray(v, np.float64).reshape(-1).tolist() for k, v in st.items() if k != "count"}


def encode_unit(cfg: CacheJobConfig, unit: S.UnitPlan) -> dict:
    """Worker task: encode one work unit and write its shards. Returns the unit's done marker."""
    root = Path(cfg.out)
    reader = open_reader(cfg)
    vae = VaeEncoder.get(cfg.vae)
    tiler = Tiler(load_layout(cfg.tiling.layout))
    chunker = EpisodeChunker(cfg.chunks)
    g = S.zarr.open_group(str(root), mode="r")
    bufs = S.unit_buffers(unit, g)
    failed: list[dict] = []
    B = cfg.vae.batch_size
    for ep in unit.episodes:
        r = ep.row0 - unit.row0
        try:
            cols = reader.episode_columns(ep.episode)
            for k in (cfg.dataset.action_key, cfg.dataset.state_key):
                if k not in cols:
                    raise EpisodeError(reader_root(reader), ep.episode, k, "column missing")
            action = np.asarray(cols[cfg.dataset.action_key], np.float32).reshape(ep.length, -1)
            state = np.asarray(cols[cfg.dataset.state_key], np.float32).reshape(ep.length, -1)
            need = needed_frames(ep.length, cfg.chunks)
            raw = {}
            for cam in tiler.layout.cameras:
                fr = reader.episode_frames(ep.episode, cam)   # decoded once per episode
                if len(fr) != ep.length:
                    raise EpisodeError(reader_root(reader), ep.episode, cam,
                                       f"video has {len(fr)} frames, episode length is {ep.length}")
                raw[cam] = fr[need]
            tiled = tiler(raw)                                 # (len(need), 3, H, W)
            del raw
            lookup = np.full(ep.length, -1, np.int64)
            lookup[need] = np.arange(len(need))
            chunks = list(chunker(ep.episode, tiled, action, state, lookup))
            lat = np.empty((len(chunks), *bufs[C.ARR_LATENTS].shape[1:]), np.uint16)
            for i in range(0, len(chunks), B):
                px = np.stack([c["frames"].transpose(1, 0, 2, 3) for c in chunks[i:i + B]])  # (b, 3, 9, H, W)
                lat[i:i + B] = vae.encode(px)
            sl = slice(r, r + len(chunks))
            bufs[C.ARR_LATENTS][sl] = lat
            bufs[C.ARR_ACTIONS][sl] = np.stack([c["actions"] for c in chunks])
            bufs[C.ARR_STATE][sl] = np.stack([c["state"] for c in chunks])
            bufs[C.ARR_ACTION_IS_PAD][sl] = np.stack([c["action_is_pad"] for c in chunks])
            bufs[C.ARR_FRAME_IS_PAD][sl] = np.stack([c["frame_is_pad"] for c in chunks])
            bufs[C.ARR_EPISODE][sl] = ep.episode
            bufs[C.ARR_T][sl] = [c["frame_index"] for c in chunks]
            bufs[C.ARR_PROMPT][sl] = ep.prompt_index
            bufs[S.ARR_VALID][sl] = True
        except Exception as e:  # noqa: BLE001 - any per-episode failure is reported and skipped
            sl = slice(r, r + ep.num_chunks)
            for name in S.ROW_ARRAYS:
                bufs[name][sl] = g[name].fill_value
            err = e.to_dict() if isinstance(e, EpisodeError) else {
                "file": reader_root(reader), "episode": str(ep.episode), "key": "?",
                "error": f"{type(e).__name__}: {e}"}
            failed.append(err)
            log.warning("episode %s failed: %s", ep.episode, err["error"])
    return S.write_unit(root, unit, bufs, cfg.store.rows_per_shard, failed)


def encode_text(cfg: CacheJobConfig, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return TextEncoder.get(cfg.text).encode(prompts)


def plan_job(cfg: CacheJobConfig) -> dict:
    """Everything the driver derives from metadata (no video decoding, no model weights run)."""
    reader = open_reader(cfg)
    resolved = load_layout(cfg.tiling.layout)
    missing = [c for c in resolved.layout.cameras if c not in reader.video_keys]
    if missing:
        raise SchemaError(f"{cfg.dataset.root}: layout {resolved.layout.name!r} needs cameras {missing}; "
                          f"the dataset has {reader.video_keys}")
    prompts: list[str] = []
    eps = []
    for e in reader.episodes:
        p = C.prompt_for(reader.episode_task(int(e["episode_index"])))
        if p not in prompts:
            prompts.append(p)
        eps.append((int(e["episode_index"]), int(e["length"]), prompts.index(p)))
    units, n_rows = S.make_plan(eps, cfg.chunks, cfg.store.rows_per_shard, cfg.store.unit_rows)
    from cache_jobs.weights.component import open_component
    from cache_jobs.weights.resolve import find_tokenizer

    vae = open_component(cfg.vae.model_dir, "vae").verify()       # opened and checked once: config + digest
    vcfg = vae.config
    tok_dir = cfg.text.tokenizer_dir or str(find_tokenizer(Path(cfg.text.model_dir)))
    sp = int(vcfg["scale_factor_spatial"])
    lay = resolved.layout
    if lay.height % sp or lay.width % sp:
        raise SchemaError(f"layout {lay.name!r} {lay.height}x{lay.width} is not divisible by the VAE's x{sp}")
    latent_shape = (int(vcfg["z_dim"]), cfg.chunks.num_latent_frames, lay.height // sp, lay.width // sp)
    hash_inputs = {
        "vae_digest": vae.digest(), "text_digest": text_digest(cfg.text.model_dir, tok_dir),
        "vae_dtype": str(resolve_dtype(cfg.vae.dtype, cfg.vae.device)), "vae_batch_size": cfg.vae.batch_size,
        "text_dtype": str(resolve_dtype(cfg.text.dtype, cfg.text.device)), "text_len": cfg.text.max_length,
        "layout": resolved.to_dict(), "chunks": asdict(cfg.chunks), "prompt_template": C.PROMPT_TEMPLATE,
        "store": asdict(cfg.store), "package_version": package_version(),
        "dataset": dataset_fingerprint(cfg.dataset.root), "action_key": cfg.dataset.action_key,
        "state_key": cfg.dataset.state_key,
    }
    import hashlib

    config_hash = hashlib.sha256(json.dumps(hash_inputs, sort_keys=True).encode()).hexdigest()
    manifest = {
        "format": "wamdata-latent-cache/1", "hash_inputs": hash_inputs, "dataset_root": str(cfg.dataset.root),
        "vae_dir": str(cfg.vae.model_dir), "text_dir": str(cfg.text.model_dir), "tokenizer_dir": tok_dir,
        "fps": float(reader.fps),
        "num_rows": n_rows, "rows_per_shard": cfg.store.rows_per_shard, "latent_shape": list(latent_shape),
        "action_dim": feature_dim(reader, cfg.dataset.action_key),
        "state_dim": feature_dim(reader, cfg.dataset.state_key),
        "stats": {"action": _stats_of(reader, cfg.dataset.action_key),
                  "state": _stats_of(reader, cfg.dataset.state_key)},
        "prompts": prompts, "prompt_keys": [C.prompt_key(p) for p in prompts],
        "units": S.plan_to_dicts(units), "num_chunks": sum(u.num_chunks for u in units),
    }
    return {"units": units, "config_hash": config_hash, "manifest": manifest}


def run_cache(cfg: CacheJobConfig, progress: bool = True) -> dict:
    """Build (or resume) the cache at cfg.out. Returns a summary dict."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    root = Path(cfg.out)
    plan = plan_job(cfg)
    units: list[S.UnitPlan] = plan["units"]
    man = plan["manifest"]
    resumed = S.prepare_dir(root, plan["config_hash"], man)
    if not resumed or not S.arrays_exist(root):   # killed before the arrays existed: no unit is done yet
        S.create_arrays(root, man["num_rows"], cfg.store.rows_per_shard, tuple(man["latent_shape"]), cfg.chunks,
                        man["action_dim"], man["state_dim"])
    S.write_json_atomic(root / C.CACHE_CONFIG, cfg.to_dict())
    done = {u.index: m for u in units if (m := S.read_marker(root, u)) is not None}
    todo = [u for u in units if u.index not in done]
    text_marker = _read_json(root / S.UNITS_DIR / S.TEXT_MARKER)
    bar = tqdm(total=sum(u.num_chunks for u in todo), unit="chunk", disable=not progress, smoothing=0.1,
               desc="cache")
    with _executor(cfg) as ex:
        if text_marker is None or text_marker.get("keys") != man["prompt_keys"]:
            emb, mask = ex.call(encode_text, cfg, man["prompts"])
            text_marker = S.write_text(root, man["prompt_keys"], emb, mask)
        for unit, marker in ex.map_unordered(encode_unit, cfg, todo):
            done[unit.index] = marker
            bar.update(unit.num_chunks)
    bar.close()
    markers = [done[u.index] for u in units]
    final = S.finish_manifest(root, markers, text_marker)
    failed = [f for m in markers for f in m["failed"]]
    report = {"cache": str(root), "config_hash": plan["config_hash"], "num_chunks": final["num_valid"],
              "failed_episodes": failed, "units_run": len(todo), "units_skipped": len(units) - len(todo)}
    S.write_json_atomic(root / C.CACHE_REPORT, report)
    return {**report, "seconds": time.perf_counter() - t0}


def _lost_errors() -> tuple[type[BaseException], ...]:
    """What a task's result raises when its worker (or the connection to it) is lost for good; any other error
    of a task is the task's own and propagates."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return (FutureCancelledError, CommClosedError, KilledWorker)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


def _stall_error(items, bound: float, key) -> WamdataError:
    names = sorted(key(it) for it in items)
    return WamdataError(f"no task finished in {bound:.0f} s ({len(names)} pending: {', '.join(names[:5])}"
                        f"{' …' if len(names) > 5 else ''}); finished units are kept, rerun to resume")


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def worker_environ(n_workers: int):
    """dask config for worker processes that run torch: dask's defaults (OMP/MKL/OpenBLAS threads = 1 and
    MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's dynamic mmap threshold) made the full VAE
    ~1.7x slower in a worker than in-process on CPU. Use the cores per worker and glibc's defaults instead.
    Start the workers of an external cluster (--scheduler) with the same environment."""
    import dask

    n = str(max(1, (os.cpu_count() or 1) // max(1, n_workers)))
    return dask.config.set({"distributed.nanny.pre-spawn-environ": {
        "MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}})


class _executor:
    """In-process (workers=0) or dask.distributed (LocalCluster or --scheduler) execution of the tasks."""

    def __init__(self, cfg: CacheJobConfig):
        self.cfg = cfg
        self.client = self.cluster = None

    def __enter__(self):
        cc = self.cfg.cluster
        if cc.workers == 0 and not cc.scheduler:
            return self
        from dask.distributed import Client, LocalCluster

        from cache_jobs.dask_plugin import ModelPlugin

        if cc.scheduler:
            self.client = Client(cc.scheduler)
        else:
            import torch

            n = cc.workers or max(1, torch.cuda.device_count())
            with worker_environ(n):
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=cc.threads_per_worker,
                                            processes=True, dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        nthreads = max(1, (os.cpu_count() or 1) // max(1, len(self.client.scheduler_info()["workers"])))
        self.client.register_plugin(ModelPlugin(self.cfg.vae, nthreads), name="wamdata-models")
        return self

    def call(self, fn, *args):
        if self.client is None:
            return fn(*args)
        cc = self.cfg.cluster
        fut = self.client.submit(fn, *args, pure=False, retries=cc.retries)
        try:
            return fut.result(timeout=cc.stall_timeout_s)
        except TimeoutError as e:
            raise _stall_error([fn.__name__], cc.stall_timeout_s, str) from e
        except _lost_errors() as e:
            raise WamdataError(f"{fn.__name__} failed after retries on other workers: {_one_line(e)}") from e

    def map_unordered(self, fn, cfg, items, key=lambda u: f"unit-{u.index}"):
        """Yield (item, fn(cfg, item)) as they finish. On dask: nothing is scattered (a task whose worker dies
        is recomputed elsewhere: the scheduler reruns it up to `allowed-failures` times, `retries` covers errors
        raised in it); an item that still fails, or a wait past the stall bound, ends in a WamdataError that
        names it after every other item has finished (their results are kept, a rerun resumes)."""
        if self.client is None:
            for u in items:
                yield u, fn(cfg, u)
            return
        from dask.distributed import wait

        cc = self.cfg.cluster
        submit = {}
        for it in items:
            submit[self.client.submit(fn, cfg, it, pure=False, retries=cc.retries,
                                      key=f"{key(it)}-{time.time_ns()}")] = it
        pending, failed, slowest, t_last = dict(submit), [], 0.0, time.monotonic()
        while pending:
            bound = cc.stall_timeout_s if not slowest else max(60.0, cc.stall_factor * slowest)
            try:
                done = wait(list(pending), timeout=bound, return_when="FIRST_COMPLETED").done
            except TimeoutError as e:
                raise _stall_error(pending.values(), bound, key) from e
            now = time.monotonic()
            slowest, t_last = max(slowest, now - t_last), now
            for fut in done:
                it = pending.pop(fut)
                try:
                    res = fut.result(timeout=cc.stall_timeout_s)
                except _lost_errors() as e:
                    failed.append(f"{key(it)}: {_one_line(e)}")
                    log.error("%s failed: %s", key(it), failed[-1])
                    continue
                yield it, res
        if failed:
            raise WamdataError(f"{len(failed)} task(s) failed after retries on other workers ({'; '.join(failed)}); "
                               f"finished units are kept, rerun the same command to resume")

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False
