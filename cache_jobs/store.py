"""The latent cache on disk: one zarr v3 group of sharded arrays + manifest + per-unit done markers.

    CACHE/
      zarr.json, latents/ actions/ state/ action_is_pad/ frame_is_pad/ episode_index/ frame_index/
      prompt_index/ valid/                    [N, ...], sharded along rows: R rows per shard file
      text/{embeddings,mask,keys}             [P, ...], one shard, written once by the driver
      manifest.json                           config + config_hash + layout of rows + shard sha256s
      _units/unit-000007.json                 done marker of a work unit: its shard sha256s + failures
      cache_report.json                       failed episodes;  wamdata_cache_config.json  resolved config

Rows: whole episodes are grouped into work units; every unit starts on a shard boundary and is padded to
one (pad rows have valid=False, episode_index=-1), so each shard file has exactly one writer. A unit is
written whole (every array), then its shard files are hashed and its marker is written atomically: a unit
without a marker is redone from scratch (its shard files deleted first); one with a marker is skipped.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zarr

from schemas import cache as C
from schemas import checksums
from schemas.chunks import ChunkSpec
from schemas.errors import WamdataError, output_full

ARR_VALID = "valid"  # [N] bool: False for pad rows and rows of failed episodes
UNITS_DIR = "_units"
TEXT_MARKER = "text.json"
ROW_ARRAYS = (C.ARR_LATENTS, C.ARR_ACTIONS, C.ARR_STATE, C.ARR_ACTION_IS_PAD, C.ARR_FRAME_IS_PAD, C.ARR_EPISODE,
              C.ARR_T, C.ARR_PROMPT, ARR_VALID)
TEXT_ARRAYS = (C.ARR_TEXT_EMB, C.ARR_TEXT_MASK, C.ARR_TEXT_KEYS)


class CacheMismatchError(WamdataError):
    """The output dir holds a cache built with another config: never mixed, never overwritten silently."""


@dataclass(frozen=True)
class EpisodePlan:
    episode: int
    length: int
    row0: int          # first row of this episode in the cache
    num_chunks: int
    prompt_index: int


@dataclass(frozen=True)
class UnitPlan:
    index: int
    row0: int
    rows: int          # multiple of rows_per_shard
    episodes: tuple[EpisodePlan, ...]

    def shards(self, rows_per_shard: int) -> list[int]:
        return list(range(self.row0 // rows_per_shard, (self.row0 + self.rows) // rows_per_shard))

    @property
    def num_chunks(self) -> int:
        return sum(e.num_chunks for e in self.episodes)

    @classmethod
    def from_dict(cls, d: dict) -> UnitPlan:
        return cls(d["index"], d["row0"], d["rows"], tuple(EpisodePlan(**e) for e in d["episodes"]))


def make_plan(episodes: list[tuple[int, int, int]], spec: ChunkSpec, rows_per_shard: int, unit_rows: int
              ) -> tuple[list[UnitPlan], int]:
    """[(episode, length, prompt_index)] -> work units of whole episodes, and the padded row count N."""
    from cache_jobs.chunking import num_chunks

    units: list[UnitPlan] = []
    row, cur, cur_rows = 0, [], 0

    def close():
        nonlocal row, cur, cur_rows
        if cur:
            padded = -(-cur_rows // rows_per_shard) * rows_per_shard
            units.append(UnitPlan(len(units), row, padded, tuple(cur)))
            row += padded
        cur, cur_rows = [], 0

    for ep, length, pidx in episodes:
        n = num_chunks(length, spec)
        if cur and cur_rows + n > unit_rows:
            close()
        cur.append(EpisodePlan(ep, length, row + cur_rows, n, pidx))
        cur_rows += n
    close()
    return units, row


def output_writes(fn):
    """A write to the cache that fails for lack of space raises `OutputFullError` (one line: which path,
    how much space), not a per-episode failure nor a raw traceback; completed units are kept for the rerun."""
    @functools.wraps(fn)
    def wrapped(root, *a, **k):
        try:
            return fn(root, *a, **k)
        except OSError as e:
            full = output_full(e, root, "completed work units are kept")
            if full is None:
                raise
            raise full from None
    return wrapped


def sha256_file(path: Path) -> str | None:
    """sha256 of a file; None when absent (zarr does not write a shard that holds only fill values)."""
    return checksums.sha256_file(path) if path.is_file() else None


@output_writes
def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_relpath(group: zarr.Group, name: str, shard: int) -> str:
    arr = group[name]
    return f"{name}/" + arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))


@output_writes
def create_arrays(root: Path, n_rows: int, rows_per_shard: int, latent_shape: tuple[int, ...], spec: ChunkSpec,
                  action_dim: int, state_dim: int) -> zarr.Group:
    g = zarr.open_group(str(root), mode="a")
    R, H = rows_per_shard, spec.action_horizon
    specs = {
        C.ARR_LATENTS: ((n_rows, *latent_shape), "uint16", (1, *latent_shape), 0),
        C.ARR_ACTIONS: ((n_rows, H, action_dim), "float32", None, 0.0),
        C.ARR_STATE: ((n_rows, state_dim), "float32", None, 0.0),
        C.ARR_ACTION_IS_PAD: ((n_rows, H), "bool", None, False),
        C.ARR_FRAME_IS_PAD: ((n_rows, spec.num_video_frames), "bool", None, False),
        C.ARR_EPISODE: ((n_rows,), "int64", None, -1),
        C.ARR_T: ((n_rows,), "int64", None, -1),
        C.ARR_PROMPT: ((n_rows,), "int64", None, -1),
        ARR_VALID: ((n_rows,), "bool", None, False),
    }
    for name, (shape, dtype, inner, fill) in specs.items():
        shard = (R, *shape[1:])
        g.create_array(name, shape=shape, dtype=dtype, shards=shard, chunks=inner or shard, fill_value=fill,
                       config={"write_empty_chunks": True}, overwrite=True)
    return g


def arrays_exist(root: Path) -> bool:
    return all((root / name / "zarr.json").is_file() for name in ROW_ARRAYS)


def unit_buffers(unit: UnitPlan, g: zarr.Group) -> dict[str, np.ndarray]:
    out = {}
    for name in ROW_ARRAYS:
        a = g[name]
        out[name] = np.full((unit.rows, *a.shape[1:]), a.fill_value, dtype=a.dtype)
    return out


@output_writes
def write_unit(root: Path, unit: UnitPlan, bufs: dict[str, np.ndarray], rows_per_shard: int, failed: list[dict]
               ) -> dict:
    """Write a unit's shards (whole), hash them, then write its done marker atomically."""
    g = zarr.open_group(str(root), mode="r+")
    clear_unit(root, unit, rows_per_shard)
    for name in ROW_ARRAYS:
        g[name][unit.row0:unit.row0 + unit.rows] = bufs[name]
    sums = {name: {str(k): sha256_file(root / shard_relpath(g, name, k)) for k in unit.shards(rows_per_shard)}
            for name in ROW_ARRAYS}
    marker = {"unit": unit.index, "num_chunks": int(bufs[ARR_VALID].sum()), "failed": failed, "shards": sums}
    (root / UNITS_DIR).mkdir(exist_ok=True)
    write_json_atomic(root / UNITS_DIR / f"unit-{unit.index:06d}.json", marker)
    return marker


def clear_unit(root: Path, unit: UnitPlan, rows_per_shard: int) -> None:
    """Delete a unit's marker and shard files (a partial write from a killed run is never reused)."""
    (root / UNITS_DIR / f"unit-{unit.index:06d}.json").unlink(missing_ok=True)
    g = zarr.open_group(str(root), mode="r")
    for name in ROW_ARRAYS:
        for k in unit.shards(rows_per_shard):
            (root / shard_relpath(g, name, k)).unlink(missing_ok=True)


def read_marker(root: Path, unit: UnitPlan) -> dict | None:
    p = root / UNITS_DIR / f"unit-{unit.index:06d}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@output_writes
def write_text(root: Path, keys: list[str], emb: np.ndarray, mask: np.ndarray) -> dict:
    g = zarr.open_group(str(root), mode="a")
    P = max(len(keys), 1)
    g.create_array(C.ARR_TEXT_EMB, shape=emb.shape, dtype="uint16", chunks=(P, *emb.shape[1:]), fill_value=0,
                   config={"write_empty_chunks": True}, overwrite=True)
    g.create_array(C.ARR_TEXT_MASK, shape=mask.shape, dtype="bool", chunks=(P, mask.shape[1]), fill_value=False,
                   config={"write_empty_chunks": True}, overwrite=True)
    g.create_array(C.ARR_TEXT_KEYS, shape=(len(keys),), dtype=str, chunks=(P,), overwrite=True)
    g[C.ARR_TEXT_EMB][:] = emb
    g[C.ARR_TEXT_MASK][:] = mask
    g[C.ARR_TEXT_KEYS][:] = np.asarray(keys, dtype=str)
    sums = {name: {"0": sha256_file(root / shard_relpath(g, name, 0))} for name in TEXT_ARRAYS}
    marker = {"keys": keys, "shards": sums}
    (root / UNITS_DIR).mkdir(exist_ok=True)
    write_json_atomic(root / UNITS_DIR / TEXT_MARKER, marker)
    return marker


def metadata_checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("zarr.json"))}


@output_writes
def prepare_dir(root: Path, config_hash: str, manifest_base: dict) -> bool:
    """Create a new cache dir, or accept one built with the same config hash. Returns True when resuming."""
    man = root / C.CACHE_MANIFEST
    if man.is_file():
        old = json.loads(man.read_text())
        if old.get("config_hash") != config_hash:
            raise CacheMismatchError(
                f"{root}: holds a cache built with config hash {old.get('config_hash')}, this run has "
                f"{config_hash} (different VAE weights, layout, sizes, stride, prompt template, dataset or "
                f"package version); caches are never mixed: write to a new -o directory")
        return True
    if root.exists() and any(root.iterdir()):
        raise CacheMismatchError(f"{root}: exists, is not empty and has no {C.CACHE_MANIFEST}; refusing to write")
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(man, {**manifest_base, "config_hash": config_hash, "status": "building"})
    return False


@output_writes
def finish_manifest(root: Path, markers: list[dict], text_marker: dict) -> dict:
    man = json.loads((root / C.CACHE_MANIFEST).read_text())
    shards: dict[str, dict[str, str]] = {}
    for m in [text_marker, *markers]:
        for name, d in m["shards"].items():
            shards.setdefault(name, {}).update(d)
    man.update(status="complete", shards=shards, metadata=metadata_checksums(root),
               num_valid=int(sum(m["num_chunks"] for m in markers)))
    write_json_atomic(root / C.CACHE_MANIFEST, man)
    return man


def verify(root: str | Path) -> dict:
    """Recompute every shard and metadata checksum of a finished cache: {"ok": bool, "errors": [...]}."""
    root = Path(root)
    errors: list[str] = []
    try:
        man = json.loads((root / C.CACHE_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"ok": False, "errors": [f"{root / C.CACHE_MANIFEST}: unreadable manifest: {e}"], "checked": 0}
    if man.get("status") != "complete":
        errors.append(f"{root}: cache is not complete (status {man.get('status')!r}); rerun `wamdata cache`")
    checked = 0
    try:
        g = zarr.open_group(str(root), mode="r")
    except Exception as e:  # noqa: BLE001 - any unreadable group is a verify failure
        return {"ok": False, "errors": [*errors, f"{root}: not a zarr group: {e}"], "checked": 0}
    for rel, want in man.get("metadata", {}).items():
        checked += 1
        p = root / rel
        got = sha256_file(p)
        if got != want:
            errors.append(f"{p}: {'missing' if got is None else 'checksum mismatch (metadata)'}")
    for name, shards in man.get("shards", {}).items():
        for k, want in shards.items():
            checked += 1
            p = root / shard_relpath(g, name, int(k))
            got = sha256_file(p)
            if got != want:
                what = "missing" if got is None else "unexpected" if want is None else "checksum mismatch in"
                errors.append(f"{p}: {what} shard {k} of {name!r}")
    return {"ok": not errors, "errors": errors, "checked": checked}


def plan_to_dicts(units: list[UnitPlan]) -> list[dict]:
    return [asdict(u) for u in units]

