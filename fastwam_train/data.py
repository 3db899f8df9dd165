"""Reader of `wamdata pack` output: webdataset shards -> ready training batches, resumable by position.

    SHARDS/shard-%06d.tar          one sample per (episode, t): latents.npy uint16 (bf16 bits) [48,F,h,w],
                                   actions.npy [32,A], state.npy [S], *_is_pad.npy, prompt.txt (sha256)
    SHARDS/text_embeddings.safetensors   {sha: bf16 [128, D], sha + ".mask": bool [128]}
    SHARDS/pack_meta.json          PackMeta (schemas/pack.py)
      -> batch {latents f32 [B,48,F,h,w], actions [B,32,A], state [B,S], action_is_pad [B,32],
                frame_is_pad [B,9], context f32 [B,128,D], context_mask [B,128], keys}

Order is deterministic and global: shard order shuffled per epoch with (seed, epoch), then a seeded
sample buffer, identical on every rank; rank r decodes the samples whose global index is r mod world.
A position is (epoch, samples of the global stream consumed in that epoch), the same on every rank, so
a run resumes on any number of processes (skipping that many raw samples before decoding).
Integrity: each sample's `sha256` member and each shard's sample count (pack_meta.json) are checked on read;
DataConfig.on_corrupt="raise" (default) names shard and key, "skip" drops and counts them in `skipped`.
"""

from __future__ import annotations

import io
import json
import queue
import random
import tarfile
import threading
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from safetensors.torch import load_file

from fastwam_train.config import DataConfig
from schemas.cache import (
    PACK_META,
    PACK_TEXT,
    SAMPLE_ACTION_IS_PAD,
    SAMPLE_ACTIONS,
    SAMPLE_FRAME_IS_PAD,
    SAMPLE_LATENTS,
    SAMPLE_PROMPT,
    SAMPLE_STATE,
)
from schemas.checksums import SAMPLE_CHECKSUM, sample_problem
from schemas.errors import EpisodeError, WamdataError
from schemas.pack import PackMeta

ARRAY_KEYS = (SAMPLE_LATENTS, SAMPLE_ACTIONS, SAMPLE_STATE, SAMPLE_ACTION_IS_PAD, SAMPLE_FRAME_IS_PAD)


def bf16_bits_to_float(bits: np.ndarray) -> torch.Tensor:
    if bits.dtype != np.uint16:
        raise TypeError(f"expected uint16 bf16 bits, got {bits.dtype}")
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.int16)).view(torch.bfloat16).float()


def float_to_bf16_bits(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.bfloat16).cpu().view(torch.int16).numpy().view(np.uint16)


class PackedShards:
    """The packed dataset: metadata, text table and a resumable, rank-aware batch stream."""

    def __init__(self, root: str | Path, cfg: DataConfig, rank: int = 0, world: int = 1):
        self.root, self.cfg, self.rank, self.world = Path(root), cfg, rank, world
        if not (self.root / PACK_META).is_file():
            raise WamdataError(f"{self.root}: no {PACK_META} (is this a `wamdata pack` output?)")
        self.meta = PackMeta.load(self.root / PACK_META)
        self.urls = sorted(str(p) for p in self.root.glob("shard-*.tar"))
        if not self.urls:
            raise WamdataError(f"{self.root}: no shard-*.tar files")
        self.text = load_file(str(self.root / PACK_TEXT))
        extra = json.loads((self.root / PACK_META).read_text())
        self.checksummed = extra.get("sample_checksum") == "sha256"      # packs before checksums: none to check
        self.shard_samples: dict[str, int] = extra.get("shard_samples") or {}
        self.skipped: dict[str, int] = {}      # on_corrupt="skip": what was dropped, by shard name

    # -- one sample -------------------------------------------------------------------------------------
    def decode(self, s: dict) -> dict:
        key, url = s.get("__key__", "?"), s.get("__url__", str(self.root))
        episode = key.split("/")[0]
        out: dict = {"key": key}
        m = self.meta
        expect = {SAMPLE_LATENTS: tuple(m.latent_shape), SAMPLE_ACTIONS: (m.action_horizon, m.action_dim),
                  SAMPLE_STATE: (m.state_dim,), SAMPLE_ACTION_IS_PAD: (m.action_horizon,),
                  SAMPLE_FRAME_IS_PAD: None}
        if self.checksummed and (problem := sample_problem(s)) is not None:
            raise EpisodeError(url, episode, SAMPLE_CHECKSUM, problem)
        for k in ARRAY_KEYS:
            if k not in s:
                raise EpisodeError(url, episode, k, f"sample {key} lacks {k}")
            try:
                arr = np.load(io.BytesIO(s[k]), allow_pickle=False)
            except ValueError as e:
                raise EpisodeError(url, episode, k, f"sample {key}: unreadable npy: {e}") from e
            if expect[k] is not None and tuple(arr.shape) != expect[k]:
                raise EpisodeError(url, episode, k, f"sample {key}: shape {arr.shape}, pack_meta says {expect[k]}")
            out[k] = arr
        if SAMPLE_PROMPT not in s:
            raise EpisodeError(url, episode, SAMPLE_PROMPT, f"sample {key} lacks {SAMPLE_PROMPT}")
        sha = s[SAMPLE_PROMPT].decode("utf-8").strip()
        if sha not in self.text or sha + ".mask" not in self.text:
            raise EpisodeError(url, episode, SAMPLE_PROMPT, f"prompt key {sha[:12]}… not in {PACK_TEXT}")
        return {
            "key": key,
            "latents": bf16_bits_to_float(out[SAMPLE_LATENTS]),
            "actions": torch.from_numpy(out[SAMPLE_ACTIONS].astype(np.float32)),
            "state": torch.from_numpy(out[SAMPLE_STATE].astype(np.float32)),
            "action_is_pad": torch.from_numpy(out[SAMPLE_ACTION_IS_PAD].astype(bool)),
            "frame_is_pad": torch.from_numpy(out[SAMPLE_FRAME_IS_PAD].astype(bool)),
            "context": self.text[sha].float(),
            "context_mask": self.text[sha + ".mask"].bool(),
        }

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "key"}
        batch["keys"] = [s["key"] for s in samples]
        return batch

    # -- streams ----------------------------------------------------------------------------------------
    def raw_epoch(self, epoch: int) -> Iterator[dict]:
        """Undecoded samples of one epoch in the deterministic GLOBAL order (the same on every rank)."""
        urls = list(self.urls)
        random.Random(self.cfg.seed * 100003 + epoch).shuffle(urls)
        it: Iterator[dict] = self._counted(urls)
        if self.cfg.shuffle_buffer > 1:
            rng = random.Random(self.cfg.seed * 7919 + epoch * 31)
            it = wds.shuffle(self.cfg.shuffle_buffer, self.cfg.shuffle_buffer, rng=rng)(it)
        return it

    @property
    def epoch_len(self) -> int:
        return self.meta.num_samples

    def position_at(self, global_index: int) -> tuple[int, int]:
        """Global sample index since the start of training -> (epoch, samples of that epoch consumed)."""
        return divmod(int(global_index), self.epoch_len)

    def _counted(self, urls: list[str]) -> Iterator[dict]:
        """Raw samples shard by shard; a shard that ends early or unreadably (e.g. a corrupted tar header, which
        tarfile takes for the end of the archive) against pack_meta's per-shard count is an error."""
        for url in urls:
            n, err = 0, None
            try:
                for s in wds.DataPipeline(wds.SimpleShardList([url]), wds.tarfile_to_samples()):
                    n += 1
                    yield s
            except (tarfile.TarError, OSError, ValueError) as e:
                err = f"{type(e).__name__}: {e}"
            want = self.shard_samples.get(Path(url).name)
            if err is None and (want is None or n == want):
                continue
            what = f"read {n} samples" + (f" of {want} (pack_meta.json)" if want is not None else "")
            self._corrupt(EpisodeError(url, "-", "shard", what + (f", then {err}" if err else "")),
                          url, (want - n) if want is not None and want > n else 1)

    def _corrupt(self, err: EpisodeError, url: str, n: int = 1) -> None:
        if self.cfg.on_corrupt == "raise":
            raise err
        name = Path(url).name
        self.skipped[name] = self.skipped.get(name, 0) + n

    def samples(self, position: tuple[int, int] = (0, 0)) -> Iterator[tuple[dict, tuple[int, int]]]:
        """Endless decoded samples of this rank from `position` (a GLOBAL position, the same on every rank),
        each with the global position after it. Rank r takes the samples whose global index is r mod world, so
        the union over ranks, and hence any global batch, does not depend on the number of processes."""
        epoch, skip = position
        n_ep = self.epoch_len
        while True:
            n, got = skip, False
            for raw in islice(self.raw_epoch(epoch), skip, None):
                n += 1
                if ((epoch * n_ep + n - 1) - self.rank) % self.world == 0:
                    try:
                        sample = self.decode(raw)
                    except EpisodeError as e:
                        if e.key != SAMPLE_CHECKSUM:
                            raise
                        self._corrupt(e, raw.get("__url__", str(self.root)))
                        continue
                    got = True
                    yield sample, (epoch, n)
            if not got and skip == 0:             # e.g. every sample skipped as corrupt: never spin forever
                raise EpisodeError(self.root, "-", "shards", f"rank {self.rank} received no usable sample in "
                                   f"epoch {epoch} (skipped: {self.skipped})")
            if n != n_ep and self.cfg.on_corrupt == "raise":
                raise EpisodeError(self.root, "-", PACK_META, f"epoch {epoch} holds {n} samples, "
                                   f"{PACK_META} says num_samples={n_ep}")
            epoch, skip = epoch + 1, 0

    def batches(self, position: tuple[int, int] = (0, 0)) -> Iterator[tuple[dict, tuple[int, int]]]:
        """Batches of `batch_size` samples of this rank; with each, the global position after the whole
        global batch (batch_size x world samples)."""
        per_step = self.cfg.batch_size * self.world

        def gen():
            it = self.samples(position)
            g = position[0] * self.epoch_len + position[1]
            while True:
                items = [next(it) for _ in range(self.cfg.batch_size)]
                g += per_step
                yield self.collate([s for s, _ in items]), self.position_at(g)

        return gen() if self.cfg.prefetch <= 0 else _prefetch(gen(), self.cfg.prefetch)


def _prefetch(it: Iterator, depth: int) -> Iterator:
    """Runs `it` in a daemon thread `depth` items ahead; re-raises its errors in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(("ok", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(("err", e))

    threading.Thread(target=work, daemon=True).start()
    try:
        while True:
            kind, item = q.get()
            if kind == "err":
                raise item
            yield item
    finally:
        stop.set()
