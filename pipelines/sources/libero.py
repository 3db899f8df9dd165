"""LIBERO demo HDF5 -> RawEpisode (original 128² files and openvla `no_noops` 256² files).

    <suite>/<task>_demo.hdf5  data/demo_<i>/{actions (T,7), obs/agentview_rgb, obs/eye_in_hand_rgb (T,H,W,3),
                                            obs/ee_states (T,6), obs/gripper_states (T,2)}
      -> frames: image (agentview), wrist_image (eye_in_hand), rotated 180° (stored OpenGL upside down)
         state 8-D = ee_states(6) + gripper_states(2);  action 7-D;  task from problem_info or file name

Demo groups are taken in numeric order (`demo_2` before `demo_10`; gaps allowed). 20 Hz.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np

from pipelines.sources.base import EpisodeRef, SourceOptions
from schemas.episode import RawEpisode
from schemas.errors import EpisodeError

NAME = "libero"
DEFAULT_FPS = 20.0
CAMERAS = {"image": "obs/agentview_rgb", "wrist_image": "obs/eye_in_hand_rgb"}
STATE_NAMES = ["eef_x", "eef_y", "eef_z", "eef_ax", "eef_ay", "eef_az", "gripper_l", "gripper_r"]
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
_DEMO = re.compile(r"^demo_(\d+)$")


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out.extend(sorted(p.rglob("*.hdf5")) if p.is_dir() else [p])
    return out


def discover(paths: list[Path], opts: SourceOptions) -> list[EpisodeRef]:
    refs = []
    for f in _files(paths):
        try:
            with h5py.File(f, "r") as h:
                demos = sorted((int(m.group(1)), k) for k in h["data"] if (m := _DEMO.match(k)))
        except Exception:  # unreadable file: one ref whose load() reports the error
            refs.append(EpisodeRef(NAME, str(f), "*"))
            continue
        # a file without demos is one ref too: its load() reports it, so it shows in the ingest report
        refs.extend([EpisodeRef(NAME, str(f), k) for _, k in demos] or [EpisodeRef(NAME, str(f), "*")])
    return refs


def task_from_file_name(path: str | Path) -> str:
    """`KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5` -> `turn on the stove` (scene prefix dropped)."""
    stem = Path(path).name.removesuffix(".hdf5").removesuffix("_demo")
    words = stem.split("_")
    while words and (words[0].isupper() or any(c.isdigit() for c in words[0])):
        words = words[1:]  # LIBERO scene prefixes are upper case: KITCHEN_SCENE3, LIVING_ROOM_SCENE2
    return " ".join(words)


def _task(h: h5py.File, ref: EpisodeRef) -> str:
    info = h["data"].attrs.get("problem_info")
    if info is None:
        return task_from_file_name(ref.file)
    try:
        return json.loads(info)["language_instruction"].strip()
    except (ValueError, KeyError) as e:
        raise EpisodeError(ref.file, ref.episode, "data.attrs.problem_info",
                           f"no language_instruction: {e}") from e


def _read(grp: h5py.Group, key: str, ref: EpisodeRef) -> np.ndarray:
    if key not in grp:
        raise EpisodeError(ref.file, ref.episode, key, "missing dataset")
    try:
        return grp[key][()]
    except Exception as e:  # truncated chunk, bad filter, ...
        raise EpisodeError(ref.file, ref.episode, key, f"unreadable: {e}") from e


def load(ref: EpisodeRef, opts: SourceOptions) -> RawEpisode:
    try:
        h = h5py.File(ref.file, "r")
    except Exception as e:
        raise EpisodeError(ref.file, ref.episode, "file", f"cannot open HDF5: {e}") from e
    with h:
        if ref.episode == "*" and "data" in h and not any(_DEMO.match(k) for k in h["data"]):
            raise EpisodeError(ref.file, ref.episode, "data", "the file holds no demos (no data/demo_<i> group)")
        if ref.episode == "*" or "data" not in h or ref.episode not in h["data"]:
            raise EpisodeError(ref.file, ref.episode, "data", "no such demo group (file unreadable or empty)")
        grp = h["data"][ref.episode]
        task = _task(h, ref)
        cams = {name: _read(grp, key, ref)[:, ::-1, ::-1] for name, key in CAMERAS.items()
                if opts.cameras is None or name in opts.cameras}
        ee, grip = _read(grp, "obs/ee_states", ref), _read(grp, "obs/gripper_states", ref)
        if len(ee) != len(grip):
            raise EpisodeError(ref.file, ref.episode, "obs/gripper_states",
                               f"length mismatch: {len(grip)} gripper states for {len(ee)} ee states")
        state = np.concatenate([ee, grip], 1)
        action = _read(grp, "actions", ref)
    return RawEpisode(ref.file, ref.episode, task, {k: np.ascontiguousarray(v) for k, v in cams.items()},
                      state, action, state_names=STATE_NAMES, action_names=ACTION_NAMES,
                      meta={"suite": Path(ref.file).parent.name, "fps": DEFAULT_FPS})
