"""Errors that name where bad input came from: file, episode and key."""

from __future__ import annotations


class WamdataError(Exception):
    """Base class for errors a user can act on."""


class EpisodeError(WamdataError):
    """Bad raw or dataset input. `str(err)` names file, episode and key."""

    def __init__(self, file: object, episode: object, key: object, message: str):
        self.file, self.episode, self.key, self.message = str(file), str(episode), str(key), message
        super().__init__(f"{self.file} [episode {self.episode}] key {self.key!r}: {message}")

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "episode": self.episode, "key": self.key, "error": self.message}


class SchemaError(WamdataError, ValueError):
    """A metadata value does not satisfy its contract; the message names the field."""


class OutputFullError(WamdataError):
    """Writing our own output failed for lack of space: not bad input, so the batch stops (and resumes)."""


def output_full(err: OSError, where: object, kept: str) -> OutputFullError | None:
    """An `OutputFullError` naming the path and the free space when `err` is ENOSPC/EDQUOT, else None."""
    import errno
    import shutil
    from pathlib import Path

    if err.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    path = Path(err.filename or where)
    probe = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    try:
        u = shutil.disk_usage(probe)
        space = f"{_size(u.free)} free of {_size(u.total)} there"
    except OSError:
        space = "free space unknown"
    return OutputFullError(f"no space left on the device writing {path} ({space}); {kept}: free some space "
                           "and rerun the same command to resume")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n // 1024} KiB"
