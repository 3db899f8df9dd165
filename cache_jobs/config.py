"""Nested configs of `wamdata cache` / `pack`; each component receives only its own sub-config.

    CacheJobConfig
      dataset  DatasetConfig   root, reader class, action/state keys
      tiling   TilingConfig    layout name or JSON file            (cache_jobs.tiling)
      chunks   ChunkSpec       9 frames / stride 4 / 32 actions / start stride (schemas.chunks)
      vae      VaeConfig       model dir, dtype, device, batch size (cache_jobs.models)
      text     TextConfig      model dir, dtype, device, length 128
      store    StoreConfig     rows per zarr shard, rows per work unit
      cluster  ClusterConfig   workers, scheduler address

The resolved config is written next to the cache as schemas.cache.CACHE_CONFIG.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path

from cache_jobs.models import TextConfig, VaeConfig
from cache_jobs.tiling import TilingConfig
from schemas import keys
from schemas.chunks import ChunkSpec
from schemas.errors import SchemaError

DEFAULT_READER = "pipelines.lerobot_io.reader:LeRobotReader"


def package_version() -> str:
    try:
        return metadata.version("wamdata")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        if pyproject.is_file():
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        return "0+unknown"


def load_reader_class(spec: str):
    mod, _, name = spec.partition(":")
    if not name:
        raise SchemaError(f"reader must be 'module:Class', got {spec!r}")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise SchemaError(f"reader {spec!r} cannot be loaded: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class DatasetConfig:
    root: str
    reader: str = DEFAULT_READER
    action_key: str = keys.ACTION
    state_key: str = keys.STATE


@dataclass(frozen=True)
class StoreConfig:
    rows_per_shard: int = 64      # rows of one zarr shard (one file per array); a writer owns whole shards
    unit_rows: int = 256          # whole episodes are grouped into work units of about this many rows

    def __post_init__(self):
        if self.rows_per_shard <= 0 or self.unit_rows <= 0:
            raise SchemaError(f"rows_per_shard and unit_rows must be positive, got "
                              f"{self.rows_per_shard}, {self.unit_rows}")


@dataclass(frozen=True)
class ClusterConfig:
    workers: int | None = None    # None: one per GPU, else 1 CPU worker; 0 = in-process (no dask)
    scheduler: str | None = None  # tcp://HOST:PORT of an existing dask scheduler
    threads_per_worker: int = 1
    retries: int = 2              # extra runs of a task that raised (a lost worker's task is rerun by the scheduler)
    stall_timeout_s: float = 3600.0   # longest wait for the first task; then stall_factor x the slowest gap seen
    stall_factor: float = 20.0

    def __post_init__(self):
        if self.workers is not None and self.workers < 0:
            raise SchemaError(f"workers must be >= 0, got {self.workers}")
        if self.retries < 0 or self.stall_timeout_s <= 0 or self.stall_factor <= 0:
            raise SchemaError(f"retries must be >= 0 and stall_timeout_s, stall_factor positive, got "
                              f"{self.retries}, {self.stall_timeout_s}, {self.stall_factor}")


@dataclass(frozen=True)
class CacheJobConfig:
    dataset: DatasetConfig
    out: str
    vae: VaeConfig
    text: TextConfig
    tiling: TilingConfig = field(default_factory=TilingConfig)
    chunks: ChunkSpec = field(default_factory=ChunkSpec)
    store: StoreConfig = field(default_factory=StoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CacheJobConfig:
        subs = {"dataset": DatasetConfig, "vae": VaeConfig, "text": TextConfig, "tiling": TilingConfig,
                "chunks": ChunkSpec, "store": StoreConfig, "cluster": ClusterConfig}
        kw = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            kw[f.name] = subs[f.name](**d[f.name]) if f.name in subs else d[f.name]
        return cls(**kw)
