"""Open a `--format v2.1` dataset the way Fast-WAM's vendored lerobot reader does (runs in `.venv-fastwam`).

    python tests/_fastwam_load.py ROOT OUT.npz
      per episode: datasets.load_dataset("parquet", data_files=[its parquet], split="train")
                   (LeRobotDataset.load_hf_dataset with an episode list), and pyarrow.parquet.read_table +
                   to_numpy (MultiLeRobotDataset.get_episode_data, what its get_dataset_stats reads)
      whole:       datasets.load_dataset("parquet", data_dir=ROOT/data, split="train") (no episode list)
      -> OUT.npz: "<key>" = column of the whole load (numeric columns), "ep<i>/<key>" = get_episode_data's
         arrays, "__meta__" = JSON (datasets version, num_rows, features as datasets names them)

Standalone on purpose: the side venv has datasets 3.6.0 and no wamdata.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(root: str, out: str) -> None:
    import datasets
    import pyarrow.parquet as pq
    from datasets import load_dataset

    root_p = Path(root)
    info = json.loads((root_p / "meta" / "info.json").read_text())
    arrays: dict[str, np.ndarray] = {}
    rows = 0
    for ep in range(info["total_episodes"]):
        path = root_p / info["data_path"].format(episode_chunk=ep // info["chunks_size"], episode_index=ep)
        one = load_dataset("parquet", data_files=[str(path)], split="train")
        rows += one.num_rows
        table = pq.read_table(str(path))
        for name in table.column_names:
            col = table[name]
            try:
                arr = col.to_numpy(zero_copy_only=True)
            except Exception:  # noqa: BLE001 - the reader's own fallback
                raw = col.to_numpy()
                arr = np.stack(raw) if raw.dtype == object else raw
            arrays[f"ep{ep}/{name}"] = arr
    whole = load_dataset("parquet", data_dir=str(root_p / "data"), split="train").with_format("numpy")
    for name in whole.column_names:
        arrays[name] = np.asarray(whole[name])
    meta = {"datasets": datasets.__version__, "num_rows": whole.num_rows, "episode_rows": rows,
            "features": {k: type(v).__name__ for k, v in whole.features.items()},
            "lengths": {k: getattr(v, "length", None) for k, v in whole.features.items()}}
    np.savez(out, __meta__=np.asarray(json.dumps(meta)), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
