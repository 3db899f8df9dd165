"""Process groups, FSDP2 / DDP wrapping, and sharded checkpoints (torch.distributed.checkpoint) with checksums.

    wrap(model)   world 1: the model itself; loop.parallel "fsdp": fully_shard every expert block (video and
                  action, their `pre`/`post` registered as forward methods) and then the root, with
                  MixedPrecisionPolicy(param_dtype=bf16 on CUDA, reduce fp32): fp32 master weights, grads and
                  AdamW states sharded 1/world, bf16 all-gathered one block at a time; "ddp": DDP
    RUN/checkpoint/             one complete checkpoint (renamed into place only when complete)
      .metadata, __<rank>_<i>.distcp   DCP: model + optimizer, sharded; loads on any number of processes
      trainer_state.pt          step, global data position, generator/RNG states, scheduler
      SHA256SUMS                sha256 of every file above; checked (split over ranks) before anything loads
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from schemas.checksums import sha256_file
from schemas.errors import WamdataError

# one process: DCP reads/writes without a process group, as intended here
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")

CKPT_DIR, TRAINER_STATE, SUMS = "checkpoint", "trainer_state.pt", "SHA256SUMS"
PARALLEL_MODES = ("fsdp", "ddp")


def init_dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))) if world > 1 else (0, 1, 0)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def gather_objects(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def wrap(model, mode: str, world: int, device: torch.device, bf16: bool):
    """The module the training step calls (the model's parameters may be sharded in place)."""
    if world == 1:
        return model
    if mode == "ddp":
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model.variant == "novideo")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(device.type, (world,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
    for expert in (model.mot.video, model.mot.action):
        for blk in expert.blocks:
            fully_shard(blk, mesh=mesh, mp_policy=mp)
            register_fsdp_forward_method(blk, "pre")
            register_fsdp_forward_method(blk, "post")
    fully_shard(model, mesh=mesh, mp_policy=mp)
    register_fsdp_forward_method(model, "sample_actions")
    return model


def grad_norm_value(gnorm) -> float:
    full = getattr(gnorm, "full_tensor", None)
    return float(full() if full else gnorm)


# -- checksums -----------------------------------------------------------------------------------------
def _read_sums(d: Path) -> dict[str, str]:
    f = d / SUMS
    if not f.is_file():
        raise WamdataError(f"{d}: no {SUMS} (incomplete or foreign checkpoint), refusing to load")
    out = {}
    for ln in f.read_text().splitlines():
        digest, _, name = ln.partition("  ")
        if len(digest) != 64 or not name:
            raise WamdataError(f"{f}: malformed line {ln[:80]!r}")
        out[name] = digest
    return out


def verify_checkpoint(d: Path, rank: int = 0, world: int = 1) -> None:
    """Every file listed and present, no file unlisted, every digest right (files split over ranks);
    raises one WamdataError naming the first bad file, on every rank."""
    err = None
    try:
        sums = _read_sums(d)
        present = {p.name for p in d.iterdir() if p.is_file() and p.name != SUMS}
        if present != set(sums):
            missing, extra = sorted(set(sums) - present), sorted(present - set(sums))
            raise WamdataError(f"{d}: files differ from {SUMS} (missing {missing[:3]}, unlisted {extra[:3]}), "
                               "refusing to load")
        for i, name in enumerate(sorted(sums)):
            if i % world == rank and sha256_file(d / name) != sums[name]:
                raise WamdataError(f"{d / name}: sha256 does not match {SUMS} (corrupt checkpoint), refusing to load")
    except WamdataError as e:
        err = str(e)
    except OSError as e:  # unreadable file: the same one line on every rank, no rank left waiting
        err = f"{d}: cannot read checkpoint ({e}), refusing to load"
    errs = [e for e in gather_objects(err, world) if e]
    if errs:
        raise WamdataError(errs[0])


def find_checkpoint(run: Path) -> Path | None:
    """RUN/checkpoint, or RUN/checkpoint.old when a crash hit between the two renames of a save."""
    for name in (CKPT_DIR, CKPT_DIR + ".old"):
        if (run / name).is_dir():
            return run / name
    return None


# -- save / load ----------------------------------------------------------------------------------------
_OPTS = StateDictOptions(full_state_dict=False)


def save_checkpoint(run: Path, model, opt, trainer_state: dict, rank: int, world: int) -> Path:
    """Sharded save into RUN/checkpoint.tmp, checksummed, then renamed to RUN/checkpoint (old one kept as
    checkpoint.old until the new one is in place)."""
    tmp, final, old = run / (CKPT_DIR + ".tmp"), run / CKPT_DIR, run / (CKPT_DIR + ".old")
    if rank == 0 and tmp.exists():
        shutil.rmtree(tmp)
    barrier(world)
    msd, osd = get_state_dict(model, [opt], options=_OPTS)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp), no_dist=world == 1)
    own = {p.name: sha256_file(p) for p in tmp.iterdir() if p.name.startswith(f"__{rank}_")}
    sums = {}
    for part in gather_objects(own, world):
        sums.update(part)
    if rank == 0:
        torch.save(trainer_state, tmp / TRAINER_STATE)
        for name in sorted(p.name for p in tmp.iterdir() if p.name not in sums):
            sums[name] = sha256_file(tmp / name)
        (tmp / SUMS).write_text("".join(f"{sums[n]}  {n}\n" for n in sorted(sums)))
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    barrier(world)
    return final


def load_checkpoint(d: Path, model, opt=None, rank: int = 0, world: int = 1) -> dict:
    """Verify checksums, then load model (+ optimizer) resharded to this world; returns trainer_state."""
    verify_checkpoint(d, rank, world)
    if opt is None:
        state = {"model": get_model_state_dict(model, options=_OPTS)}
    else:
        msd, osd = get_state_dict(model, [opt], options=_OPTS)
        state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=str(d), no_dist=world == 1)
    if opt is None:
        set_model_state_dict(model, state["model"], options=_OPTS)
    else:
        set_state_dict(model, [opt], model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=_OPTS)
    return torch.load(d / TRAINER_STATE, map_location="cpu", weights_only=False)
