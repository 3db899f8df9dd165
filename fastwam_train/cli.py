"""Click shell for `wamdata train`, `wamdata predict`, `wamdata latency` (logic lives in loop/infer)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from fastwam_train.config import VARIANTS, TrainConfig
from schemas.cli_errors import out_dir, out_file


def _load_config(path: str | None) -> TrainConfig:
    return TrainConfig.load(path) if path else TrainConfig()


@click.command("train")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "run", required=True, type=click.Path(file_okay=False), callback=out_dir,
              help="run directory")
@click.option("--variant", type=click.Choice(VARIANTS), default=None, help="overrides model.variant")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TrainConfig JSON")
@click.option("--steps", type=int, default=None, help="overrides loop.steps (schedule length)")
@click.option("--resume", is_flag=True, help="continue RUN from its checkpoint")
@click.option("--wan-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Wan2.2 TI2V-5B DiT for the video expert: the Wan release dir or a diffusers transformer/ dir")
@click.option("--action-backbone", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Fast-WAM preprocessed ActionDiT_*.pt backbone for the action expert")
@click.option("--init-official", type=click.Path(exists=True, dir_okay=False), default=None,
              help="start from a Fast-WAM weights checkpoint ({'mot': ...}; fine-tuning)")
@click.option("--stop-at", type=int, default=None, help="stop after this step (checkpointed; schedule unchanged)")
@click.option("--dry-run", is_flag=True, help="print the per-GPU memory estimate (meta device) and exit")
@click.option("--world-size", type=int, default=None, help="--dry-run: processes (default $WORLD_SIZE or 1)")
def train_cmd(shards, run, variant, config_path, steps, resume, wan_dir, action_backbone, init_official, stop_at,
              dry_run, world_size):
    """Co-train a Fast-WAM variant on packed latent SHARDS into RUN (torchrun for several GPUs)."""
    cfg = _load_config(config_path)
    if variant:
        cfg = cfg.override("model", variant=variant)
    for key, val in (("wan_dir", wan_dir), ("action_backbone", action_backbone), ("init_checkpoint", init_official)):
        if val:
            cfg = cfg.override("model", **{key: str(Path(val).resolve())})
    if steps:
        cfg = cfg.override("loop", steps=steps)
    if dry_run:
        from fastwam_train.loop import resolve_config
        from fastwam_train.memory import estimate, format_estimate
        from schemas.cache import PACK_META
        from schemas.pack import PackMeta

        meta = PackMeta.load(Path(shards) / PACK_META)
        world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
        click.echo(format_estimate(estimate(resolve_config(cfg, meta), tuple(meta.latent_shape), world)))
        return
    from fastwam_train.loop import train

    recs = train(shards, run, cfg, resume=resume, stop_at=stop_at)
    if recs:
        last = recs[-1]
        click.echo(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in last.items()}))


@click.command("predict")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--shards", required=True, type=click.Path(exists=True, file_okay=False),
              help="packed shards to take observations from")
@click.option("-n", "--num", default=4, show_default=True, help="samples to predict")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), callback=out_file, help="write keys/pred/gt (.npz)")
def predict_cmd(run, shards, num, seed, device, output):
    """Predict 32-step action chunks (raw units) for the first samples of SHARDS with RUN."""
    from fastwam_train.infer import predict_shards

    res = predict_shards(run, shards, n=num, seed=seed, device=device)
    if output:
        out = Path(output)
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez(tmp, keys=np.array(res["keys"]), pred=res["pred"], gt=res["gt"])
        tmp.replace(out)
    click.echo(json.dumps({"variant": res["variant"], "samples": len(res["keys"]), "mse_raw": res["mse_raw"],
                           "chunk_shape": list(res["pred"].shape[1:])}))


@click.command("latency")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TrainConfig JSON")
@click.option("--latent", default="3x14x28", show_default=True, help="latent F x h x w (LIBERO 224x448)")
@click.option("--batch", default=1, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--device", default="auto", show_default=True)
def latency_cmd(config_path, latent, batch, repeats, device):
    """Milliseconds per action chunk for fastwam / joint / idm / novideo and ratios to fastwam."""
    from fastwam_train.infer import format_latency, latency

    try:
        f, h, w = (int(x) for x in latent.lower().split("x"))
    except ValueError as e:
        raise click.BadParameter(f"--latent must be FxHxW, got {latent!r}") from e
    ms = latency(_load_config(config_path), (f, h, w), batch=batch, repeats=repeats, device=device)
    click.echo(format_latency(ms))


@click.command("export-official")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=out_file,
              help="Fast-WAM weights .pt")
@click.option("--dtype", type=click.Choice(["bfloat16", "float32"]), default="bfloat16", show_default=True)
def export_official_cmd(run, output, dtype):
    """Write RUN's model as a Fast-WAM weights checkpoint ({'mot', 'step', 'torch_dtype', 'proprio_encoder'})."""
    import torch

    from fastwam_train.infer import load_run
    from fastwam_train.official import save_official
    from fastwam_train.parallel import TRAINER_STATE, find_checkpoint

    model, _, _ = load_run(run)
    step = torch.load(find_checkpoint(Path(run)) / TRAINER_STATE, weights_only=False)["step"]
    save_official(model, output, step=step, dtype=getattr(torch, dtype))
    click.echo(json.dumps({"output": str(output), "step": step, "dtype": dtype}))


@click.command("import-official")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--shards", required=True, type=click.Path(exists=True, file_okay=False),
              help="packed shards the model is for (dims, normalization)")
@click.option("-o", "--output", "run", required=True, type=click.Path(file_okay=False), callback=out_dir,
              help="new run directory")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TrainConfig JSON")
@click.option("--variant", type=click.Choice(VARIANTS), default=None, help="overrides model.variant")
def import_official_cmd(checkpoint, shards, run, config_path, variant):
    """Make RUN (step 0) from a Fast-WAM weights checkpoint: `predict` it, or `train --resume` to fine-tune."""
    from fastwam_train.infer import import_official_run

    cfg = _load_config(config_path)
    if variant:
        cfg = cfg.override("model", variant=variant)
    step = import_official_run(checkpoint, shards, run, cfg)
    click.echo(json.dumps({"run": str(run), "official_step": step}))
