#!/usr/bin/env bash
# Build `.venv-fastwam`: the `datasets` side of Fast-WAM's pinned environment (its pyproject.toml:
# datasets==3.6.0, huggingface-hub==0.29.2, numpy==1.26.4, pandas==2.2.3, pyarrow==23.0.0), kept apart from the
# main `.venv` (datasets 4). tests/test_fastwam_compat.py opens our `--format v2.1` datasets in it the way
# Fast-WAM's vendored lerobot reader does (`datasets.load_dataset("parquet", ...)`, `pyarrow.parquet.read_table`).
# Idempotent: a venv whose stamp matches this script's pins is left alone (re-run after editing the pins).
#
# Why only this (measured on Python 3.11 / Debian 12): the reader's failure mode is the parquet `huggingface`
# features metadata, which only `datasets` parses. lerobot 0.3.x's own LeRobotDataset is not added: 0.3.3 (the last
# 0.3) requires torch<2.8 and torchvision<0.23 (their compiled ops do not load with the project's torch 2.13.0) and
# huggingface-hub>=0.34.2 (Fast-WAM pins 0.29.2); with `--no-deps` on torch 2.13.0 its import stops at torchvision,
# after +80 s and +1.2 GB of install. This venv: ~30 s fresh, ~380 MB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FASTWAM_VENV:-$ROOT/.venv-fastwam}"
PYTHON="${PYTHON:-python3.11}"

# Fast-WAM's own pins first, then every transitive dependency pinned to what pip resolved for them.
PINS=(
  "datasets==3.6.0" "huggingface-hub==0.29.2" "numpy==1.26.4" "pandas==2.2.3" "pyarrow==23.0.0"
  "packaging==25.0" "tqdm==4.66.5"
  "aiohappyeyeballs==2.7.1" "aiohttp==3.14.5" "aiosignal==1.4.0" "attrs==26.1.0" "certifi==2026.10.19.post1"
  "charset-normalizer==3.5.3" "dill==0.3.8" "filelock==4.3.1" "frozenlist==1.8.0" "fsspec==2025.3.0"
  "idna==3.20" "multidict==7.2.1" "multiprocess==0.70.16" "propcache==0.5.4" "python-dateutil==4.0.0"
  "pytz==2026.6" "PyYAML==6.0.4" "requests==2.34.2" "typing_extensions==4.16.0" "tzdata==2026.6"
  "urllib3==2.8.0" "xxhash==4.1.0" "yarl==1.25.1"
)
STAMP_TEXT="${PINS[*]}"

log() { echo "[setup_fastwam_env] $*"; }

probe() {
  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import datasets
import pyarrow

assert datasets.__version__ == "3.6.0", datasets.__version__
assert pyarrow.__version__ == "23.0.0", pyarrow.__version__
print(f"datasets {datasets.__version__}, pyarrow {pyarrow.__version__}: ok")
PY
}

if [[ -f "$VENV/.wamdata_stamp" && "$(cat "$VENV/.wamdata_stamp")" == "$STAMP_TEXT" ]] && probe; then
  log "up to date: $VENV"
  exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
log "installing ${PINS[*]:0:5}"
start=$SECONDS
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "${PINS[@]}"
"$VENV/bin/pip" check --disable-pip-version-check >/dev/null   # the pins are a complete, consistent set
probe
echo "$STAMP_TEXT" > "$VENV/.wamdata_stamp"
log "ready: $VENV ($((SECONDS - start)) s)"
