"""Shared pytest setup: headless plotting, quiet encoders, and the LIBERO raw-file factory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SVT_LOG", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def require_side_venv(python: Path, setup_script: str) -> None:
    """A side venv's interpreter must exist: fail in CI (which builds it), skip locally with how to build it."""
    if python.exists():
        return
    msg = f"{python} is missing: run `bash {setup_script}`"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for this test only (the process-wide setting is restored afterwards, so tests that
    compare numbers computed in different processes keep the default thread count)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shared_dir() -> Path:
    """`../shared` beside the checkout (FORMATS.md, real fixtures); read-only."""
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: CI and developers have it beside the checkout")
    return SHARED


@pytest.fixture
def libero_raw(tmp_path):
    """Factory: write LIBERO task files under tmp/raw/<suite>/ and return the suite folder."""
    from pipelines.synth.libero import write_libero_file

    def make(tasks=(("put the black bowl on the plate", [0, 2, 10], 30),), variant="original", size=128,
             suite="libero_spatial"):
        root = tmp_path / "raw" / suite
        for instruction, ids, T in tasks:
            write_libero_file(root, n_demos=len(ids), T=T, size=size, demo_ids=ids, instruction=instruction,
                              variant=variant)
        return root

    return make
