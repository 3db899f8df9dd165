"""Lazy, read-only views of weight files: names and shapes without loading, one tensor at a time on demand.

    TensorFile(paths)   .safetensors (safe_open, memory-mapped) | .pth/.pt/.bin (torch.load mmap=True)
      .names()          sorted tensor names (a "model_state"/"state_dict" wrapper and a common "model."
                        prefix, as DiffSynth/Fast-WAM write them, are looked through)
      .shape(name)      torch.Size, no data read
      .get(name)        the tensor (a copy for safetensors, a page-cache-backed view for mmap'd .pth)
      forget(paths)     drop the cached views of these files (their mapped pages leave the RSS)
      .origin(name)     the file holding it (error messages name it)

Several files (sharded checkpoints) are one view; a name in two files is an error.
"""

from __future__ import annotations

from pathlib import Path

import torch

from schemas.errors import SchemaError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
_WRAPPERS = ("model_state", "state_dict", "module", "model")


def _load_pickle(path: Path) -> dict:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:    # legacy (non-zip) torch.save files cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:      # noqa: BLE001 - any unreadable file is one clear line
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise SchemaError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {msg})") from None
    for _ in range(2):
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in _WRAPPERS \
                and isinstance(next(iter(obj.values())), dict):
            obj = next(iter(obj.values()))
        elif isinstance(obj, dict) and "model_state" in obj and isinstance(obj["model_state"], dict):
            obj = obj["model_state"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SchemaError(f"{path}: holds no state dict of tensors")
    return obj


class TensorFile:
    def __init__(self, paths: list[Path] | Path):
        from safetensors import safe_open

        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not self.paths:
            raise SchemaError("no weight files given")
        self._where: dict[str, tuple[Path, object]] = {}
        for p in self.paths:
            if p.suffix == ".safetensors":
                try:            # names + shapes from the header; the file is opened again per tensor (get)
                    with safe_open(str(p), framework="pt") as st:
                        items = [(k, torch.Size(st.get_slice(k).get_shape())) for k in st.keys()]
                except Exception as e:  # noqa: BLE001
                    raise SchemaError(f"{p}: not a readable safetensors file ({e})") from None
            elif p.suffix in WEIGHT_SUFFIXES:
                sd = _load_pickle(p)
                items = [(k, sd) for k in sd]
            else:
                raise SchemaError(f"{p}: not a weight file (expected one of {', '.join(WEIGHT_SUFFIXES)})")
            for k, src in items:
                if k in self._where:
                    raise SchemaError(f"{p}: tensor {k!r} is also in {self._where[k][0]}")
                self._where[k] = (p, src)
        if not self._where:
            raise SchemaError(f"{self.paths[0]}: holds no tensors")
        names = list(self._where)
        # DiffSynth / Fast-WAM wrap the Wan VAE as `model.<name>`; look through a prefix every name shares
        self._prefix = "model." if all(n.startswith("model.") for n in names) else ""
        self._names = sorted(n[len(self._prefix):] for n in names)

    def names(self) -> list[str]:
        return self._names

    def origin(self, name: str) -> Path:
        return self._where[self._prefix + name][0]

    def shape(self, name: str) -> torch.Size:
        _, src = self._where[self._prefix + name]
        return src[self._prefix + name].shape if isinstance(src, dict) else src

    def get(self, name: str) -> torch.Tensor:
        """The tensor: a view of the memory-mapped .pth, or a copy read from the .safetensors file, whose
        mapping is closed again at once (its pages do not stay in this process's RSS)."""
        from safetensors import safe_open

        path, src = self._where[self._prefix + name]
        if isinstance(src, dict):
            return src[self._prefix + name]
        with safe_open(str(path), framework="pt") as st:
            return st.get_tensor(self._prefix + name)

    def describe(self) -> str:
        return str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0].parent}/ ({len(self.paths)} files)"


def weight_files(d: Path) -> list[Path]:
    """The weight files directly in dir d (not recursive), sorted."""
    return sorted(p for p in Path(d).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def prefer_safetensors(files: list[Path]) -> list[Path]:
    """Files holding one component: the .safetensors ones when there are any (HF repos may carry the same
    weights twice, as .safetensors and .bin)."""
    st = [p for p in files if p.suffix == ".safetensors"]
    return st or files
