"""Feature keys, file names and path templates: every constant that two stages share.

LeRobot layouts follow huggingface/lerobot `datasets/utils.py` (v3.0, lerobot 0.4) and lerobot 0.3
(v2.1, the layout the Fast-WAM reader consumes).
"""

from __future__ import annotations

# -- versions -----------------------------------------------------------------------------------
V30 = "v3.0"
V21 = "v2.1"
CODEBASE_VERSIONS = (V30, V21)

# -- per-frame feature keys ---------------------------------------------------------------------
ACTION = "action"
STATE = "observation.state"
IMAGES_PREFIX = "observation.images."
TIMESTAMP = "timestamp"
FRAME_INDEX = "frame_index"
EPISODE_INDEX = "episode_index"
INDEX = "index"
TASK_INDEX = "task_index"
DEFAULT_FEATURE_KEYS = (TIMESTAMP, FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX)


def camera_key(name: str) -> str:
    """`head` -> `observation.images.head`; an already-prefixed key is returned unchanged."""
    return name if name.startswith(IMAGES_PREFIX) else IMAGES_PREFIX + name


# -- stats ----------------------------------------------------------------------------------------
STAT_NAMES = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}

# -- meta files ----------------------------------------------------------------------------------
INFO_PATH = "meta/info.json"
DATASET_CHECKSUMS = "meta/checksums.json"   # ours: sha256 per data/video/meta file (schemas/checksums.py)
STATS_PATH = "meta/stats.json"
# v3.0
TASKS_PARQUET_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE_TEMPLATE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH_V30 = EPISODES_DIR + "/" + CHUNK_FILE_TEMPLATE + ".parquet"
DATA_PATH_V30 = "data/" + CHUNK_FILE_TEMPLATE + ".parquet"
VIDEO_PATH_V30 = "videos/{video_key}/" + CHUNK_FILE_TEMPLATE + ".mp4"
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_MB = 100
DEFAULT_VIDEO_FILE_SIZE_MB = 200
# v2.1
EPISODES_JSONL_PATH = "meta/episodes.jsonl"
EPISODES_STATS_JSONL_PATH = "meta/episodes_stats.jsonl"
TASKS_JSONL_PATH = "meta/tasks.jsonl"
DATA_PATH_V21 = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH_V21 = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

# -- video encoding defaults (lerobot's encode_video_frames) --------------------------------------
DEFAULT_VCODEC = "libsvtav1"
DEFAULT_PIX_FMT = "yuv420p"
DEFAULT_GOP = 2
DEFAULT_CRF = 30
# libsvtav1 preset. lerobot 0.4.4 hardcodes "12" (`_get_codec_options`); at 12 (and 11) with g=2, SVT-AV1 shows
# the previous frame for small inter-frame changes (measured: 16 of 40 marker frames decoded as their predecessor,
# mean abs error 3.6), while 10 keeps every frame (error 0.4) at ~1.25x the encode time of 12.
DEFAULT_SVTAV1_PRESET = 10
LEROBOT_SVTAV1_PRESET = 12
# extra SVT-AV1 parameters (`svtav1-params`; "" = the library's own). lp=1 (level of parallelism 1): 20 encoder
# threads instead of 45 on a 2-core machine, same output bytes, 0.92x the CPU time, 1.1x the wall time of one
# encode; zero stalls in bench/bench_svt_stress.py (figures in README.md, ingest section).
DEFAULT_SVTAV1_PARAMS = "lp=1"
VCODEC_CHOICES = ("libsvtav1", "h264")  # h264 is encoded with libx264

# -- ingest side files (ours, not lerobot's) -----------------------------------------------------
INGEST_REPORT = "ingest_report.json"
INGEST_CONFIG = "wamdata_ingest_config.json"
STAGING_DIR = ".wamdata_staging"
STAGING_TRASH = ".wamdata_staging.done"  # the staging area renamed once the dataset is complete, then deleted
INGEST_LOCK = ".wamdata_ingest.lock"
