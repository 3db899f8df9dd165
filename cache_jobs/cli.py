"""Click commands `cache`, `verify`, `pack` (wired into `wamdata` by pipelines/cli.py)."""

from __future__ import annotations

import json

import click

from schemas.cli_errors import out_dir


@click.command("cache")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), callback=out_dir,
              help="Cache directory (zarr v3).")
@click.option("--layout", default="libero", show_default=True, help="libero | robotwin | layout JSON file.")
@click.option("--vae", "vae_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="AutoencoderKLWan dir (from_pretrained), e.g. Wan2.2-TI2V-5B-Diffusers/vae.")
@click.option("--text-encoder", "text_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="UMT5EncoderModel + tokenizer dir (from_pretrained).")
@click.option("--stride", default=1, show_default=True, type=int, help="Distance between chunk starts.")
@click.option("--workers", default=None, type=int, help="LocalCluster workers [default: one per GPU, else 1]; "
              "0 = run in this process without dask.")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler, tcp://HOST:PORT (its "
              "workers must see DATASET, CACHE and the model dirs at the same paths; start them with "
              "OMP_NUM_THREADS=<cores per worker> and without MALLOC_TRIM_THRESHOLD_ for CPU encoding).")
@click.option("--batch-size", default=4, show_default=True, type=int, help="Chunks per VAE forward.")
@click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on GPU, fp32 on CPU) | bfloat16 | "
              "float32.")
@click.option("--device", default="auto", show_default=True)
@click.option("--rows-per-shard", default=64, show_default=True, type=int)
@click.option("--unit-rows", default=256, show_default=True, type=int, help="Rows per work unit (task).")
@click.option("--reader", default=None, help="Dataset reader 'module:Class' (default: the LeRobot reader).")
@click.option("--stall-timeout", default=3600.0, show_default=True, type=float, help="Seconds to wait for the "
              "first unit before giving up (then 20x the slowest gap between finished units).")
@click.option("--no-progress", is_flag=True)
def cache_cmd(dataset, out, layout, vae_dir, text_dir, stride, workers, scheduler, batch_size, dtype, device,
              rows_per_shard, unit_rows, reader, stall_timeout, no_progress):
    """Encode DATASET's 9-frame chunks with the Wan2.2 VAE (+ umT5 prompts) into a resumable zarr cache."""
    from cache_jobs.config import DEFAULT_READER, CacheJobConfig, ClusterConfig, DatasetConfig, StoreConfig
    from cache_jobs.job import run_cache
    from cache_jobs.models import TextConfig, VaeConfig
    from cache_jobs.tiling import TilingConfig
    from schemas.chunks import ChunkSpec

    cfg = CacheJobConfig(
        dataset=DatasetConfig(dataset, reader=reader or DEFAULT_READER), out=out,
        vae=VaeConfig(vae_dir, dtype=dtype, device=device, batch_size=batch_size),
        text=TextConfig(text_dir, dtype=dtype, device=device), tiling=TilingConfig(layout),
        chunks=ChunkSpec(start_stride=stride),
        store=StoreConfig(rows_per_shard=rows_per_shard, unit_rows=unit_rows),
        cluster=ClusterConfig(workers=workers, scheduler=scheduler, stall_timeout_s=stall_timeout))
    summary = run_cache(cfg, progress=not no_progress)
    click.echo(json.dumps(summary, indent=1))
    if summary["failed_episodes"]:
        click.echo(f"{len(summary['failed_episodes'])} episode(s) failed; see {out}/cache_report.json", err=True)


@click.command("verify")
@click.argument("cache", type=click.Path(exists=True, file_okay=False))
def verify_cmd(cache):
    """Recompute every shard checksum of CACHE; exit 0 only when the cache is complete and intact."""
    from cache_jobs.store import verify

    res = verify(cache)
    click.echo(json.dumps(res, indent=1))
    if not res["ok"]:
        raise click.ClickException(f"{cache}: {len(res['errors'])} problem(s), first: {res['errors'][0]}")


@click.command("pack")
@click.argument("cache", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), callback=out_dir,
              help="Output shard directory.")
@click.option("--seed", default=0, show_default=True, type=int, help="Shuffle seed (deterministic).")
@click.option("--norm", "normalization", default="min_max", show_default=True,
              type=click.Choice(["min_max", "mean_std", "quantile", "none"]))
@click.option("--clamp", default=5.0, show_default=True, type=float)
@click.option("--maxcount", default=10_000, show_default=True, type=int, help="Samples per shard.")
@click.option("--maxsize", default=1 << 30, show_default=True, type=int, help="Bytes per shard.")
@click.option("--no-verify-cache", is_flag=True, help="Skip checking the cache shards' sha256 before reading.")
def pack_cmd(cache, out, seed, normalization, clamp, maxcount, maxsize, no_verify_cache):
    """Write CACHE as shuffled webdataset shards + text embeddings + pack_meta.json."""
    from cache_jobs.pack import PackConfig, pack

    res = pack(cache, out, PackConfig(seed=seed, normalization=normalization, clamp=clamp, maxcount=maxcount,
                                      maxsize=maxsize, verify_cache=not no_verify_cache))
    click.echo(json.dumps(res, indent=1))
