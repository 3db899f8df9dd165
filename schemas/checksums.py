"""sha256 checksums carried end to end: dataset files, packed webdataset samples.

    dataset   DATASET/meta/checksums.json  {"format", "algorithm": "sha256", "files": {relpath: hex}}
              every file under data/, videos/, meta/ except meta/info.json (written after it, as the dataset's
              completion marker, and checked by `validate` field by field) and the manifest itself;
              written atomically by ingest's finalize just before meta/info.json; `wamdata validate` checks it.
    sample    one extra member SAMPLE_CHECKSUM (hex text) per packed sample =
              sha256 over "__key__" NUL key NUL, then for each other member in sorted name order:
              name NUL decimal-length NUL bytes            (the bytes exactly as stored in the tar)
              written by `wamdata pack` (seal_sample), checked by the trainer's reader (sample_problem).

The latent cache carries its own per-shard sha256s in its manifest (cache_jobs/store.py, `wamdata verify`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from schemas.keys import DATASET_CHECKSUMS, INFO_PATH

CHECKSUMS_FORMAT = "wamdata-checksums/1"
DATASET_DIRS = ("data", "videos", "meta")
SAMPLE_CHECKSUM = "sha256"          # member name (no extension: stored and read as raw bytes)
_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


# -- dataset files ---------------------------------------------------------------------------------
def dataset_files(root: str | Path) -> list[str]:
    """Relative paths of the files the manifest covers (sorted)."""
    root = Path(root)
    skip = {DATASET_CHECKSUMS, INFO_PATH}
    out = []
    for d in DATASET_DIRS:
        for p in (root / d).rglob("*") if (root / d).is_dir() else []:
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel not in skip and not p.name.endswith(".tmp"):
                out.append(rel)
    return sorted(out)


def write_dataset_checksums(root: str | Path) -> dict:
    """Hash every covered file of the dataset at `root` and write the manifest atomically (temp + rename)."""
    root = Path(root)
    man = {"format": CHECKSUMS_FORMAT, "algorithm": "sha256",
           "files": {rel: sha256_file(root / rel) for rel in dataset_files(root)}}
    path = root / DATASET_CHECKSUMS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(man, indent=1))
    os.replace(tmp, path)
    return man


def check_dataset_checksums(root: str | Path, require: bool = True) -> list[str]:
    """Problems (empty = intact): a file missing, changed, or not in the manifest; a missing manifest when
    `require` (without `require` a dataset with no manifest has nothing to check)."""
    root = Path(root)
    path = root / DATASET_CHECKSUMS
    if not path.is_file():
        return [f"{path}: missing (no checksums recorded; re-ingest to record them)"] if require else []
    try:
        man = json.loads(path.read_text())
        files = man["files"]
        if man.get("algorithm") != "sha256" or not isinstance(files, dict):
            raise ValueError(f"unsupported algorithm {man.get('algorithm')!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"{path}: unreadable checksums manifest ({type(e).__name__}: {e})"]
    problems = []
    for rel, want in sorted(files.items()):
        p = root / rel
        if not p.is_file():
            problems.append(f"{p}: missing (listed in {DATASET_CHECKSUMS})")
        elif sha256_file(p) != want:
            problems.append(f"{p}: sha256 mismatch with {DATASET_CHECKSUMS} (file corrupted or changed)")
    for rel in dataset_files(root):
        if rel not in files:
            problems.append(f"{root / rel}: not listed in {DATASET_CHECKSUMS}")
    return problems


# -- packed samples --------------------------------------------------------------------------------
def encode_member(name: str, value) -> bytes:
    """A sample member as stored in the tar: .npy arrays in numpy's npy format (what webdataset writes),
    text as utf-8, bytes unchanged."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.ndarray) and name.endswith(".npy"):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, value)
        return buf.getvalue()
    raise TypeError(f"sample member {name!r}: cannot encode {type(value).__name__}")


def sample_digest(key: str, members: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    h.update(b"__key__\0" + key.encode("utf-8") + b"\0")
    for name in sorted(members):
        data = members[name]
        h.update(name.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def seal_sample(sample: dict) -> dict:
    """Encode a sample's members to bytes and add its SAMPLE_CHECKSUM member."""
    key = sample["__key__"]
    members = {k: encode_member(k, v) for k, v in sample.items() if not k.startswith("_")}
    if SAMPLE_CHECKSUM in members:
        raise ValueError(f"sample {key}: member name {SAMPLE_CHECKSUM!r} is reserved")
    return {"__key__": key, **members, SAMPLE_CHECKSUM: sample_digest(key, members).encode()}


def sample_problem(sample: dict) -> str | None:
    """None when a raw (undecoded) sample's members match its checksum member; else what is wrong."""
    key = sample.get("__key__", "?")
    if SAMPLE_CHECKSUM not in sample:
        return f"sample {key} has no {SAMPLE_CHECKSUM} member"
    members = {k: v for k, v in sample.items() if not k.startswith("_") and k != SAMPLE_CHECKSUM}
    want = bytes(sample[SAMPLE_CHECKSUM]).decode("ascii", "replace").strip()
    if sample_digest(key, members) != want:
        return f"sample {key}: sha256 mismatch (members {sorted(members)})"
    return None
