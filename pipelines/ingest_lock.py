"""An exclusive lock on an ingest output directory: one writer at a time, stale locks taken over safely.

    OUT/.wamdata_ingest.lock   flock(LOCK_EX) held by the running ingest; holds {"pid", "host", "started"}

The kernel releases a flock when its holder dies (kill -9 included), so a lock file left by a dead process
is simply taken over; no pid guessing. A second ingest refuses at once, naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from schemas import keys
from schemas.errors import WamdataError


class OutputLockedError(WamdataError):
    """Another ingest is writing the same output directory."""


class OutputLock:
    def __init__(self, out: Path):
        self.path = Path(out) / keys.INGEST_LOCK
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WamdataError(f"cannot create the output directory {self.path.parent}: {e.strerror}") from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise OutputLockedError(
                    f"{self.path.parent} is being written by another ingest (pid {holder.get('pid', '?')} on "
                    f"host {holder.get('host', '?')}, started {holder.get('started', '?')}); wait for it "
                    "or stop it first") from None
            try:  # the holder may have unlinked the file between our open and our flock: lock the live one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
