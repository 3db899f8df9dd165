"""Checksums end to end (issue 11, item 8): one flipped byte anywhere is caught, never trained on.

    dataset files  meta/checksums.json written by ingest, checked by `wamdata validate`
    cache shards   `wamdata pack` checks them (as `wamdata verify`) before reading
    packed samples a `sha256` member per sample + per-shard counts in pack_meta.json, checked by the trainer's reader
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from _factories_cache import job_config, layout_file, tiny_models, write_npz_dataset
from click.testing import CliRunner

from cache_jobs.job import run_cache
from cache_jobs.pack import PackConfig, pack
from fastwam_train.config import DataConfig
from fastwam_train.data import PackedShards
from pipelines.cli import main
from pipelines.ingest import IngestConfig, ingest
from pipelines.lerobot_io.staging import VideoConfig
from pipelines.validate import validate
from schemas.errors import EpisodeError, WamdataError


def flip(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x01
    path.write_bytes(bytes(b))


# -- dataset files -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from pipelines.synth.libero import write_libero_file

    t = tmp_path_factory.mktemp("sums")
    write_libero_file(t / "raw", n_demos=2, T=8, size=64, demo_ids=[0, 1], instruction="pick", variant="original")
    ingest([t / "raw"], t / "ds", IngestConfig(workers=1, video=VideoConfig(vcodec="h264")), progress=False)
    return t / "ds"


def test_ingest_records_sha256_of_every_data_video_meta_file(dataset):
    man = json.loads((dataset / "meta/checksums.json").read_text())
    want = {p.relative_to(dataset).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ("data", "videos", "meta") for p in (dataset / d).rglob("*") if p.is_file()}
    del want["meta/checksums.json"], want["meta/info.json"]
    assert man["files"] == want
    assert any(k.endswith(".parquet") and k.startswith("data/") for k in want)
    assert sum(k.endswith(".mp4") for k in want) == 2          # two cameras, one v3.0 file each
    assert validate(dataset, checksums=True) == []


@pytest.mark.parametrize("pick", ["data/*/*.parquet", "videos/*/*/*.mp4", "meta/episodes/*/*.parquet"])
def test_validate_catches_one_flipped_byte(dataset, tmp_path, pick):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    victim = sorted(ds.glob(pick))[0]
    flip(victim, victim.stat().st_size // 2)
    problems = validate(ds)                                     # default: checked since the manifest exists
    assert f"{victim}: sha256 mismatch with meta/checksums.json (file corrupted or changed)" in problems
    res = CliRunner().invoke(main, ["validate", str(ds), "--checksums"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{victim}: sha256 mismatch" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert validate(ds, checksums=False) == [] or all("sha256" not in p for p in validate(ds, checksums=False))


def test_validate_checksums_flag_requires_a_manifest(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    (ds / "meta/checksums.json").unlink()
    assert validate(ds) == []                                   # nothing recorded: nothing to check
    assert validate(ds, checksums=True) == [f"{ds / 'meta/checksums.json'}: missing (no checksums recorded; "
                                            f"re-ingest to record them)"]


# -- cache shards and packed samples -------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    t = tmp_path_factory.mktemp("sums_cache")
    vae, text = tiny_models(t)
    data = write_npz_dataset(t / "data", [9, 6])
    run_cache(job_config(data, t / "cache", vae, text, layout_file(t)), progress=False)
    return t / "cache"


@pytest.fixture(scope="module")
def packed(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("sums_pack") / "shards"
    pack(cache, out, PackConfig(maxcount=8))
    return out


def test_pack_refuses_a_corrupted_cache(cache, tmp_path):
    c = tmp_path / "cache"
    shutil.copytree(cache, c)
    victim = sorted(p for p in (c / "latents").rglob("*") if p.is_file() and p.name != "zarr.json")[0]
    flip(victim, victim.stat().st_size // 2)
    with pytest.raises(WamdataError, match="cache failed its checksums .*checksum mismatch in shard"):
        pack(c, tmp_path / "p")
    assert not (tmp_path / "p").exists()
    res = CliRunner().invoke(main, ["pack", str(c), "-o", str(tmp_path / "p2")])
    assert res.exit_code == 1 and res.stderr.startswith(f"Error: {c}: cache failed its checksums")
    assert len(res.stderr.strip().splitlines()) == 1


def _members(tar: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar) as tf:
        return tf.getmembers()


def test_every_packed_sample_carries_its_sha256(packed):
    meta = json.loads((packed / "pack_meta.json").read_text())
    assert meta["sample_checksum"] == "sha256" and sum(meta["shard_samples"].values()) == 15
    for name, n in meta["shard_samples"].items():
        with tarfile.open(packed / name) as tf:
            by_key: dict[str, dict[str, bytes]] = {}
            for m in tf.getmembers():
                key, _, member = m.name.partition(".")
                by_key.setdefault(key, {})[member] = tf.extractfile(m).read()
        assert len(by_key) == n
        for key, mem in by_key.items():
            h = hashlib.sha256(b"__key__\0" + key.encode() + b"\0")   # the documented definition, by hand
            for k in sorted(k for k in mem if k != "sha256"):
                h.update(k.encode() + b"\0" + str(len(mem[k])).encode() + b"\0" + mem[k])
            assert mem["sha256"].decode() == h.hexdigest()


def _read_all(shards: Path, on_corrupt: str = "raise") -> tuple[list[str], PackedShards]:
    ps = PackedShards(shards, DataConfig(batch_size=1, shuffle_buffer=0, prefetch=0, on_corrupt=on_corrupt))
    keys = [s["key"] for s, (epoch, _) in _one_epoch(ps)]
    return keys, ps


def _one_epoch(ps):
    for s, pos in ps.samples((0, 0)):
        if pos[0] != 0:
            return
        yield s, pos
        if pos[1] == ps.meta.num_samples:
            return


def _copy(packed, tmp_path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(packed, out)
    return out


def test_reader_rejects_a_flipped_payload_byte_naming_shard_and_key(packed, tmp_path):
    shards = _copy(packed, tmp_path)
    tar = shards / "shard-000001.tar"
    m = next(m for m in _members(tar) if m.name.endswith(".actions.npy"))
    flip(tar, m.offset_data + m.size - 3)                       # a float32 payload byte, npy header intact
    key = m.name.split(".")[0]
    with pytest.raises(EpisodeError, match=rf"shard-000001.tar \[episode {key.split('/')[0]}\] key 'sha256': "
                                           rf"sample {key}: sha256 mismatch"):
        _read_all(shards)
    keys, ps = _read_all(shards, on_corrupt="skip")
    assert len(keys) == 14 and key not in keys and ps.skipped == {"shard-000001.tar": 1}


def test_reader_does_not_silently_read_fewer_samples_after_a_flipped_header(packed, tmp_path):
    shards = _copy(packed, tmp_path)
    tar = shards / "shard-000000.tar"
    ms = _members(tar)
    m = ms[len(ms) // 2]                                        # a member header in the middle of the shard
    flip(tar, m.offset + 3)                                      # a byte of its name: tarfile sees "end of archive"
    with pytest.raises(EpisodeError, match=r"shard-000000.tar \[episode -\] key 'shard': read \d+ samples of 8 "
                                           r"\(pack_meta.json\)"):
        _read_all(shards)
    keys, ps = _read_all(shards, on_corrupt="skip")
    assert len(keys) + ps.skipped["shard-000000.tar"] == 15 and len(keys) < 15


def test_clean_pack_reads_every_sample_once(packed):
    keys, ps = _read_all(packed)
    assert len(keys) == len(set(keys)) == 15 and ps.skipped == {}


def test_skip_mode_with_nothing_usable_raises_instead_of_spinning(packed, tmp_path):
    """on_corrupt='skip' over shards whose every sample is corrupt: an error after one epoch, never an endless
    loop over empty epochs."""
    shards = _copy(packed, tmp_path)
    for tar in sorted(shards.glob("*.tar")):
        for m in _members(tar):
            if m.name.endswith(".actions.npy"):
                flip(tar, m.offset_data + m.size - 3)
    ps = PackedShards(shards, DataConfig(batch_size=1, shuffle_buffer=0, prefetch=0, on_corrupt="skip"))
    with pytest.raises(EpisodeError, match=r"rank 0 received no usable sample in epoch 0"):
        next(ps.samples((0, 0)))
    assert sum(ps.skipped.values()) == 15
