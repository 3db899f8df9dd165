"""Video with PyAV, with lerobot's encoder settings (libsvtav1, yuv420p, g=2, crf=30; preset 10, see keys).

    encode_frames((T, H, W, 3) uint8 RGB, path, fps)  -> mp4, frame i at pts i/fps
    concat_videos([mp4, ...], out)                      -> one mp4 by remuxing packets (no re-encode);
                                                          episode k starts at sum(len_j for j < k) / fps
    decode_frames(mp4, start_s, n, fps)                -> (n, H, W, 3) uint8 RGB
"""

from __future__ import annotations

import ctypes
import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from schemas import keys

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only (it prints its banner per encoder)

CODEC_NAMES = {"libsvtav1": "av1", "h264": "h264"}   # info.json `video.codec` (what lerobot probes)
ENCODERS = {"libsvtav1": "libsvtav1", "h264": "libx264"}


_CAP_SYS_NICE = 23
_local = threading.local()


def drop_realtime_privilege() -> None:
    """Run SVT-AV1 at normal priority even as root.

    SVT-AV1 (4.1, bundled with PyAV 18) switches its threads *and the calling thread* to SCHED_FIFO 99 when
    it may, i.e. as root. On small machines that starves everything else, triggers RT throttling, and we
    saw whole ingests hang in the encoder. Removing CAP_SYS_NICE from this thread's effective set (threads
    it creates inherit it) makes SVT's priority calls fail harmlessly. A no-op for non-root users."""
    if getattr(_local, "dropped", False) or os.geteuid() != 0 or not hasattr(os, "sched_getscheduler"):
        return
    _local.dropped = True

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        hdr, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
        if libc.capget(ctypes.byref(hdr), data) == 0:
            data[0].effective &= ~(1 << _CAP_SYS_NICE)
            libc.capset(ctypes.byref(hdr), data)
    except (OSError, AttributeError):  # not Linux: nothing to drop
        pass


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def encode_frames(frames: np.ndarray, path: str | Path, fps: float, vcodec: str = keys.DEFAULT_VCODEC,
                  crf: int = keys.DEFAULT_CRF, g: int = keys.DEFAULT_GOP,
                  pix_fmt: str = keys.DEFAULT_PIX_FMT, preset: int | None = keys.DEFAULT_SVTAV1_PRESET,
                  svtav1_params: str = keys.DEFAULT_SVTAV1_PARAMS, before_call=None) -> None:
    """Encode `frames`. `before_call(frames, pixels)`, if given, is called before every encoder call with
    the most frames that call may process (1, or all at the final flush): a liveness beat for a watchdog."""
    if vcodec not in ENCODERS:
        raise ValueError(f"vcodec must be one of {list(ENCODERS)}, got {vcodec!r}")
    drop_realtime_privilege()
    T, H, W, _ = frames.shape
    rate = fps_fraction(fps)
    options = {"g": str(g), "crf": str(crf)}
    if vcodec == "libsvtav1" and preset is not None:
        options["preset"] = str(preset)
    if vcodec == "libsvtav1" and svtav1_params:
        options["svtav1-params"] = svtav1_params
    if vcodec == "h264":
        options["bf"] = "0"  # no B-frames: pts == dts, so episodes concatenate by plain remux
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(ENCODERS[vcodec], rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.codec_context.time_base = 1 / rate
        for i in range(T):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            if before_call:
                before_call(1, H * W)
            out.mux(stream.encode(frame))
        if before_call:
            before_call(T, H * W)
        out.mux(stream.encode(None))


def concat_videos(inputs: list[str | Path], out_path: str | Path, lengths: list[int], fps: float) -> None:
    """Remux episode videos into one file; each input's timestamps are shifted by the frames before it."""
    rate = fps_fraction(fps)
    tmp = f"{out_path}.{os.getpid()}.tmp"
    with av.open(str(inputs[0])) as first, av.open(tmp, "w", format="mp4") as out:
        ost = out.add_stream_from_template(first.streams.video[0], opaque=True)
        offset_frames = 0
        for src, n in zip(inputs, lengths, strict=True):
            with av.open(str(src)) as inp:
                ist = inp.streams.video[0]
                shift = int(round(Fraction(offset_frames) / rate / ist.time_base))
                for pkt in inp.demux(ist):
                    if pkt.dts is None:
                        continue
                    pkt.pts += shift
                    pkt.dts += shift
                    pkt.stream = ost
                    out.mux(pkt)
            offset_frames += n
    os.replace(tmp, out_path)


def decode_frames(path: str | Path, start_s: float = 0.0, n: int | None = None, fps: float | None = None
                  ) -> np.ndarray:
    """Decode `n` frames starting at `start_s` (all frames when n is None) as RGB uint8."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        half = 0.5 / fps if fps else 1e-4
        if start_s > 0:
            c.seek(int((start_s - half) / s.time_base), stream=s, backward=True, any_frame=False)
        for frame in c.decode(s):
            ts = float(frame.pts * s.time_base)
            if ts < start_s - half:
                continue
            out.append(frame.to_ndarray(format="rgb24"))
            if n is not None and len(out) == n:
                break
    if n is not None and len(out) != n:
        raise ValueError(f"{path}: expected {n} frames from {start_s:.4f}s, decoded {len(out)}")
    if not out:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(out)


def count_frames(path: str | Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(c.streams.video[0]) if _.size)


def probe(path: str | Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return {"codec": s.codec_context.name, "width": s.codec_context.width,
                "height": s.codec_context.height, "pix_fmt": s.codec_context.pix_fmt,
                "fps": float(s.average_rate) if s.average_rate else None}
