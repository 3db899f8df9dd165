"""Click shell for `wamdata train`, `wamdata predict`, `wamdata latency` (logic lives in loop/infer)."""

from __future__ import annotations

import json
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
              help="diffusers-format Wan2.2 TI2V-5B transformer dir for the video expert")
def train_cmd(shards, run, variant, config_path, steps, resume, wan_dir):
    """Co-train a Fast-WAM variant on packed latent SHARDS into RUN (torchrun for several GPUs)."""
    from fastwam_train.loop import train

    cfg = _load_config(config_path)
    if variant:
        cfg = cfg.override("model", variant=variant)
    if wan_dir:
        cfg = cfg.override("model", wan_dir=wan_dir)
    if steps:
        cfg = cfg.override("loop", steps=steps)
    recs = train(shards, run, cfg, resume=resume)
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
