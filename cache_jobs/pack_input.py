"""The caches `wamdata pack` reads: rows per episode, the per-frame action/state arrays statistics need.

    PackInput(CACHE)
      .man / .g                   manifest.json / zarr group (a complete cache, else WamdataError)
      .episodes                   every episode the cache planned (failed ones included: Fast-WAM splits over
                                  all episodes of a dataset), sorted
      .rows(episodes)             valid rows of those episodes
      .episode_arrays(episodes)   [(episode, action (T, A), state (T, S))] raw float32, per frame:
                                  from the cache rows when every frame starts a chunk (--stride 1), else read
                                  from the source dataset the cache records (its reader, action/state keys)
      .failed                     episodes with no valid rows (failed at cache time)
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr

from cache_jobs import store as S
from schemas import cache as C
from schemas.errors import SchemaError, WamdataError


class PackInput:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / C.CACHE_MANIFEST).is_file():
            raise WamdataError(f"{self.root}: no {C.CACHE_MANIFEST}; not a `wamdata cache` output")
        try:
            self.man = json.loads((self.root / C.CACHE_MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise WamdataError(f"{self.root / C.CACHE_MANIFEST}: cannot read the cache manifest: {e}") from e
        if self.man.get("status") != "complete":
            raise WamdataError(f"{self.root}: cache is not complete; finish `wamdata cache` first")
        self.g = zarr.open_group(str(self.root), mode="r")
        self.action_dim, self.state_dim = int(self.man["action_dim"]), int(self.man["state_dim"])

    @cached_property
    def index(self) -> dict[str, np.ndarray]:
        return {"episode": self.g[C.ARR_EPISODE][:], "t": self.g[C.ARR_T][:], "valid": self.g[S.ARR_VALID][:]}

    @property
    def episodes(self) -> list[int]:
        return sorted(int(e["episode"]) for u in self.man["units"] for e in u["episodes"])

    @property
    def lengths(self) -> dict[int, int]:
        return {int(e["episode"]): int(e["length"]) for u in self.man["units"] for e in u["episodes"]}

    @cached_property
    def failed(self) -> list[int]:
        have = set(np.unique(self.index["episode"][self.index["valid"]]).tolist())
        return [e for e in self.episodes if e not in have]

    @property
    def start_stride(self) -> int:
        return int(self.man["hash_inputs"]["chunks"]["start_stride"])

    @property
    def fps(self) -> float:
        return float(self.man["fps"])

    @property
    def layout_name(self) -> str:
        return str(self.man["hash_inputs"]["layout"].get("name", ""))

    def rows(self, episodes: list[int]) -> np.ndarray:
        ix = self.index
        return np.flatnonzero(ix["valid"] & np.isin(ix["episode"], np.asarray(episodes, np.int64)))

    def episode_arrays(self, episodes: list[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        failed = set(self.failed)
        want = [e for e in sorted(episodes) if e not in failed]
        if self.start_stride == 1:
            return self._from_rows(want)
        return self._from_dataset(want)

    def _from_rows(self, episodes: list[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        ix, lengths = self.index, self.lengths
        act0 = self.g[C.ARR_ACTIONS][:, 0, :]    # action t = first action of the chunk starting at t
        state = self.g[C.ARR_STATE][:]
        out = []
        for e in episodes:
            r = np.flatnonzero(ix["valid"] & (ix["episode"] == e))
            r = r[np.argsort(ix["t"][r], kind="stable")]
            if not np.array_equal(ix["t"][r], np.arange(lengths[e])):
                raise SchemaError(f"{self.root}: episode {e}: cache rows do not cover frames 0..{lengths[e] - 1}")
            out.append((e, np.asarray(act0[r], np.float32), np.asarray(state[r], np.float32)))
        return out

    def _from_dataset(self, episodes: list[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        from cache_jobs.config import load_reader_class

        cfg_path = self.root / C.CACHE_CONFIG
        try:
            ds = json.loads(cfg_path.read_text())["dataset"]
            reader = load_reader_class(ds["reader"])(ds["root"])
        except Exception as e:  # noqa: BLE001 - any failure to reopen the source dataset is one clear error
            raise WamdataError(f"{self.root}: chunks start every {self.start_stride} frames, so per-frame "
                               f"statistics need the source dataset recorded in {cfg_path}, which cannot be "
                               f"opened ({type(e).__name__}: {e}); use a --stride 1 cache, --stats dataset or "
                               "--stats-file") from e
        out = []
        for e in episodes:
            cols = reader.episode_columns(e)
            for k in (ds["action_key"], ds["state_key"]):
                if k not in cols:
                    raise SchemaError(f"{ds['root']}: episode {e}: column {k!r} missing")
            a = np.asarray(cols[ds["action_key"]], np.float32).reshape(len(cols[ds["action_key"]]), -1)
            s = np.asarray(cols[ds["state_key"]], np.float32).reshape(len(cols[ds["state_key"]]), -1)
            out.append((e, a, s))
        return out
