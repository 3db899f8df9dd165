"""What `wamdata ingest --format v2.1` writes opens in Fast-WAM's reader environment (datasets==3.6.0, its pin):
the parquet `huggingface` features metadata uses the datasets 3.x type names (`Sequence` with `length`), while
v3.0 output keeps what lerobot 0.4.4 writes (`List`).

datasets 3.6.0 runs in its own venv (`.venv-fastwam`, built by `.ci/setup_fastwam_env.sh`) through
`tests/_fastwam_load.py`; skipped only on a developer machine without that venv, never in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import require_side_venv

from pipelines.ingest import IngestConfig, ingest
from pipelines.lerobot_io.staging import VideoConfig
from pipelines.synth.libero import libero_arrays, write_libero_file
from schemas import keys

REPO = Path(__file__).resolve().parents[1]
FASTWAM_PY = REPO / ".venv-fastwam" / "bin" / "python"
LOADER = REPO / "tests" / "_fastwam_load.py"
LENGTHS = [5, 7]


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("raw") / "libero_spatial"
    write_libero_file(d, T=LENGTHS, size=64, instruction="open the top drawer", demo_ids=[0, 1])
    return d


def _ingest(raw_dir: Path, out: Path, fmt: str) -> Path:
    report = ingest([raw_dir], out, IngestConfig(format=fmt, workers=1, video=VideoConfig(vcodec="h264")))
    assert report["episodes_failed"] == 0, report
    return out


def _hf_meta(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"huggingface"])["info"]["features"]


def _run_loader(root: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp / "hf")}
    return subprocess.run([str(FASTWAM_PY), str(LOADER), str(root), str(tmp / "items.npz")], env=env,
                          capture_output=True, text=True, timeout=300)


def test_feature_type_names_per_format(raw_dir, tmp_path):
    v21 = _ingest(raw_dir, tmp_path / "v21", keys.V21)
    v30 = _ingest(raw_dir, tmp_path / "v30", keys.V30)
    f21 = _hf_meta(v21 / keys.DATA_PATH_V21.format(episode_chunk=0, episode_index=0))
    f30 = _hf_meta(v30 / keys.DATA_PATH_V30.format(chunk_index=0, file_index=0))
    # datasets 3.x: Sequence(feature=Value("float32"), length=7); datasets 4: List(Value("float32"), length=7)
    assert f21["action"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 7, "_type": "Sequence"}
    assert f21["observation.state"]["_type"] == "Sequence" and f21["observation.state"]["length"] == 8
    assert f30["action"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 7, "_type": "List"}
    assert f21["frame_index"] == f30["frame_index"] == {"dtype": "int64", "_type": "Value"}


def test_fastwam_reader_env_opens_v21(raw_dir, tmp_path):
    require_side_venv(FASTWAM_PY, ".ci/setup_fastwam_env.sh")
    root = _ingest(raw_dir, tmp_path / "ds", keys.V21)
    proc = _run_loader(root, tmp_path)
    assert proc.returncode == 0, f"datasets 3.6.0 failed on {root}:\n{proc.stderr[-4000:]}"
    with np.load(tmp_path / "items.npz") as d:
        got = {k: d[k] for k in d.files}
    meta = json.loads(str(got.pop("__meta__")))
    assert meta["datasets"] == "3.6.0"
    assert meta["num_rows"] == meta["episode_rows"] == sum(LENGTHS)
    assert meta["features"]["action"] == "Sequence" and meta["lengths"]["action"] == 7
    assert meta["features"]["observation.state"] == "Sequence" and meta["lengths"]["observation.state"] == 8
    starts = np.cumsum([0, *LENGTHS])
    for ep, T in enumerate(LENGTHS):
        arr = libero_arrays(ep, T)   # demo ids 0, 1 -> episodes 0, 1
        want_a = arr["actions"].astype(np.float32)
        want_s = np.concatenate([arr["ee_states"], arr["gripper_states"]], 1).astype(np.float32)
        for a, s in ((got[f"ep{ep}/action"], got[f"ep{ep}/observation.state"]),
                     (got["action"][starts[ep]:starts[ep + 1]], got["observation.state"][starts[ep]:starts[ep + 1]])):
            assert a.dtype == np.float32 and a.shape == (T, 7)
            np.testing.assert_array_equal(a, want_a)
            np.testing.assert_array_equal(s, want_s)
        np.testing.assert_array_equal(got[f"ep{ep}/frame_index"], np.arange(T))
        np.testing.assert_array_equal(got[f"ep{ep}/episode_index"], np.full(T, ep))


def test_fastwam_reader_env_rejects_datasets4_names(raw_dir, tmp_path):
    """The side venv is a real datasets 3.x reader: the `List` name (datasets >= 4) fails there as reported."""
    require_side_venv(FASTWAM_PY, ".ci/setup_fastwam_env.sh")
    root = _ingest(raw_dir, tmp_path / "ds", keys.V21)
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    for p in (bad / "data").rglob("*.parquet"):
        t = pq.read_table(p)
        meta = t.schema.metadata[b"huggingface"].replace(b'"Sequence"', b'"List"')
        pq.write_table(t.replace_schema_metadata({b"huggingface": meta}), p)
    proc = _run_loader(bad, tmp_path)
    assert proc.returncode != 0 and "Feature type 'List' not found" in proc.stderr
