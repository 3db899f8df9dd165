"""Temporal chunks: 9 frames every 4, 32 actions, state at t, padding past the end."""

import numpy as np
import pytest

from cache_jobs.chunking import EpisodeChunker, chunk_indices, chunk_starts, needed_frames, num_chunks
from schemas.chunks import ChunkSpec
from schemas.errors import SchemaError


def test_indices_and_pad_flags_at_the_end():
    spec = ChunkSpec()
    fi, fpad, ai, apad = chunk_indices(0, 10, spec)
    assert fi.tolist() == [0, 4, 8, 9, 9, 9, 9, 9, 9]
    assert fpad.tolist() == [False] * 3 + [True] * 6
    assert ai.tolist() == list(range(10)) + [9] * 22
    assert apad.tolist() == [False] * 10 + [True] * 22
    fi, fpad, ai, apad = chunk_indices(3, 100, spec)
    assert fi.tolist() == list(range(3, 36, 4)) and not fpad.any()
    assert ai.tolist() == list(range(3, 35)) and not apad.any()
    with pytest.raises(SchemaError, match="outside"):
        chunk_indices(10, 10, spec)


def test_start_stride_counts():
    assert chunk_starts(10, ChunkSpec(start_stride=3)) == [0, 3, 6, 9]
    assert num_chunks(10, ChunkSpec(start_stride=3)) == 4
    assert num_chunks(7, ChunkSpec()) == 7
    assert needed_frames(10, ChunkSpec(start_stride=5)).tolist() == [0, 4, 5, 8, 9]


def test_chunker_uses_decoded_frames_once_with_lookup():
    T = 12
    action = np.arange(T * 2, dtype=np.float32).reshape(T, 2)
    state = np.arange(T * 3, dtype=np.float32).reshape(T, 3) + 100
    spec = ChunkSpec(start_stride=5)
    need = needed_frames(T, spec)
    frames = need.astype(np.float32)[:, None]        # row i holds raw frame need[i]
    lookup = np.full(T, -1)
    lookup[need] = np.arange(len(need))
    chunks = list(EpisodeChunker(spec)(7, frames, action, state, lookup))
    assert [c["frame_index"] for c in chunks] == [0, 5, 10]
    c = chunks[2]
    assert c["episode_index"] == 7
    assert c["frames"][:, 0].tolist() == [10, 11, 11, 11, 11, 11, 11, 11, 11]
    assert c["frame_is_pad"].tolist() == [False] + [True] * 8
    np.testing.assert_array_equal(c["actions"][:2], action[10:12])
    np.testing.assert_array_equal(c["actions"][2:], np.repeat(action[11:12], 30, 0))
    assert c["action_is_pad"].sum() == 30
    np.testing.assert_array_equal(c["state"], state[10])


def test_chunker_rejects_mismatched_columns():
    with pytest.raises(SchemaError, match="state has 3"):
        list(EpisodeChunker(ChunkSpec())(0, np.zeros((4, 1)), np.zeros((4, 2)), np.zeros((3, 2))))
