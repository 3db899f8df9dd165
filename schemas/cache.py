"""The latent cache (zarr v3, sharded) and the packed webdataset sample: names shared by
`cache_jobs/` (writer), `wamdata pack` (reader + writer) and `fastwam_train/` (reader).

Text prompts follow Fast-WAM: the template below, umT5 length 128, padded positions zeroed,
one embedding per unique prompt keyed by sha256(prompt).
"""

from __future__ import annotations

import hashlib

PROMPT_TEMPLATE = "A video recorded from a robot's point of view executing the following instruction: {task}"
TEXT_LEN = 128


def prompt_for(task: str) -> str:
    return PROMPT_TEMPLATE.format(task=task)


def prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


# -- zarr cache (CACHE/ is one zarr v3 group) ----------------------------------------------------
CACHE_MANIFEST = "manifest.json"      # config + config_hash + shard list/checksums
CACHE_REPORT = "cache_report.json"    # failed episodes
CACHE_CONFIG = "wamdata_cache_config.json"
ARR_LATENTS = "latents"               # [N, 48, F_lat, h, w] uint16 (bf16 bits), normalized mean
ARR_ACTIONS = "actions"               # [N, 32, A] float32 raw units
ARR_STATE = "state"                   # [N, S] float32 raw units
ARR_ACTION_IS_PAD = "action_is_pad"   # [N, 32] bool
ARR_FRAME_IS_PAD = "frame_is_pad"     # [N, 9] bool (raw video frames)
ARR_EPISODE = "episode_index"         # [N] int64
ARR_T = "frame_index"                 # [N] int64 (chunk start t)
ARR_PROMPT = "prompt_index"           # [N] int64 -> row of the text arrays
ARR_TEXT_EMB = "text/embeddings"      # [P, 128, D] uint16 (bf16 bits), padded rows zero
ARR_TEXT_MASK = "text/mask"           # [P, 128] bool
ARR_TEXT_KEYS = "text/keys"           # P sha256 hex strings (also in the manifest)

# -- packed webdataset samples ------------------------------------------------------------------
# __key__ = f"{episode:06d}/{t:06d}"; packed from several caches: f"{cache:02d}_{episode:06d}/{t:06d}"
SAMPLE_LATENTS = "latents.npy"        # uint16 bf16 bits [48, F_lat, h, w]; [:, 0] = first frame
SAMPLE_ACTIONS = "actions.npy"        # float32 [32, A] normalized
SAMPLE_STATE = "state.npy"            # float32 [S] normalized
SAMPLE_ACTION_IS_PAD = "action_is_pad.npy"
SAMPLE_FRAME_IS_PAD = "frame_is_pad.npy"
SAMPLE_PROMPT = "prompt.txt"          # sha256 key into the text embeddings beside the shards
PACK_META = "pack_meta.json"          # normalization mode + stats, shapes, counts, config hash
PACK_TEXT = "text_embeddings.safetensors"  # {sha256: bf16 [128, D]} + {sha256 + ".mask": bool}
SHARD_PATTERN = "shard-%06d.tar"
PACK_VAL_DIR = "val"                  # the val split of a pack: itself a complete pack dir


def sample_key(episode: int, t: int) -> str:
    return f"{episode:06d}/{t:06d}"
