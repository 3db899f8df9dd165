"""Click commands `cache`, `verify`, `pack`, `convert` (wired into `wamdata` by pipelines/cli.py)."""

from __future__ import annotations

import json

import click

from schemas.cli_errors import out_dir


@click.command("cache")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), callback=out_dir,
              help="Cache directory (zarr v3).")
@click.option("--layout", default="libero", show_default=True, help="libero | robotwin | layout JSON file.")
@click.option("--model", "model_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Wan2.2 weights root: diffusers repo (Wan2.2-TI2V-5B-Diffusers/), Wan release dir "
              "(Wan2.2-TI2V-5B/) or DiffSynth's converted dir (+ --tokenizer). Found by content.")
@click.option("--vae", "vae_dir", default=None, type=click.Path(exists=True),
              help="Override: Wan2.2 VAE file or dir (Wan2.2_VAE.pth, Wan2.2_VAE.safetensors, diffusers vae/).")
@click.option("--text-encoder", "text_dir", default=None, type=click.Path(exists=True),
              help="Override: umT5 encoder file or dir (models_t5_umt5-xxl-enc-bf16.pth/.safetensors, diffusers "
              "text_encoder/).")
@click.option("--tokenizer", "tokenizer_dir", default=None, type=click.Path(exists=True),
              help="umT5 tokenizer dir [default: next to the text encoder: tokenizer/ or google/umt5-xxl/].")
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
def cache_cmd(dataset, out, layout, model_dir, vae_dir, text_dir, tokenizer_dir, stride, workers, scheduler,
              batch_size, dtype, device, rows_per_shard, unit_rows, reader, stall_timeout, no_progress):
    """Encode DATASET's 9-frame chunks with the Wan2.2 VAE (+ umT5 prompts) into a resumable zarr cache."""
    from cache_jobs.config import DEFAULT_READER, CacheJobConfig, ClusterConfig, DatasetConfig, StoreConfig
    from cache_jobs.job import run_cache
    from cache_jobs.models import TextConfig, VaeConfig
    from cache_jobs.tiling import TilingConfig
    from cache_jobs.weights.resolve import resolve_paths
    from schemas.chunks import ChunkSpec

    paths = resolve_paths(model_dir, vae_dir, text_dir, tokenizer_dir)
    cfg = CacheJobConfig(
        dataset=DatasetConfig(dataset, reader=reader or DEFAULT_READER), out=out,
        vae=VaeConfig(paths.vae, dtype=dtype, device=device, batch_size=batch_size),
        text=TextConfig(paths.text, dtype=dtype, device=device, tokenizer_dir=paths.tokenizer),
        tiling=TilingConfig(layout), chunks=ChunkSpec(start_stride=stride),
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
@click.argument("caches", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), callback=out_dir,
              help="Output shard directory.")
@click.option("--seed", default=0, show_default=True, type=int, help="Shuffle seed (deterministic).")
@click.option("--norm", "normalization", default="min_max", show_default=True,
              type=click.Choice(["min_max", "mean_std", "quantile", "none"]),
              help="Fast-WAM: min_max (its min/max, LIBERO), mean_std (z-score, RoboTwin), quantile (q01/q99).")
@click.option("--stats", "stats_mode", default="fastwam", show_default=True,
              type=click.Choice(["fastwam", "frames", "dataset"]),
              help="fastwam: Fast-WAM's get_dataset_stats (32-step action windows of every sample, episodes "
              "weighted equally); frames: exact per-frame stats of the train episodes; dataset: the source "
              "dataset's meta/stats.json recorded in the cache (one cache, no val split).")
@click.option("--stats-file", type=click.Path(exists=True, dir_okay=False),
              help="Normalize with a Fast-WAM dataset_stats.json (e.g. its pretrained_norm_stats) instead.")
@click.option("--stats-key", default="default", show_default=True, help="Action/state key in --stats-file.")
@click.option("--val-proportion", default=0.0, show_default=True, type=float,
              help="Episodes per cache held out into OUT/val/ (Fast-WAM val_set_proportion; RoboTwin: 0.01).")
@click.option("--split-seed", default=42, show_default=True, type=int, help="Seed of the train/val split "
              "(Fast-WAM's is 42).")
@click.option("--delta-action-mask", default="auto", show_default=True,
              help="Action dims zeroed at padded steps before normalizing: auto (LIBERO's 0-5 for a libero-layout "
              "7-D action, else none) | none | dims like 0,1,2,3,4,5.")
@click.option("--clamp", default=5.0, show_default=True, type=float)
@click.option("--maxcount", default=10_000, show_default=True, type=int, help="Samples per shard.")
@click.option("--maxsize", default=1 << 30, show_default=True, type=int, help="Bytes per shard.")
@click.option("--no-verify-cache", is_flag=True, help="Skip checking the cache shards' sha256 before reading.")
def pack_cmd(caches, out, seed, normalization, stats_mode, stats_file, stats_key, val_proportion, split_seed,
             delta_action_mask, clamp, maxcount, maxsize, no_verify_cache):
    """Write CACHES (one or more of the same dims) as shuffled webdataset shards + text embeddings +
    pack_meta.json + dataset_stats.json, the val split in OUT/val/."""
    from cache_jobs.pack import PackConfig, SplitConfig, StatsConfig, pack

    cfg = PackConfig(seed=seed, normalization=normalization, clamp=clamp, maxcount=maxcount, maxsize=maxsize,
                     stats=StatsConfig(stats_mode, stats_file, stats_key),
                     split=SplitConfig(val_proportion, split_seed),
                     delta_action_mask=delta_action_mask, verify_cache=not no_verify_cache)
    res = pack(list(caches), out, cfg)
    click.echo(json.dumps(res, indent=1))


@click.command("export-fastwam")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), callback=out_dir,
              help="Directory: OUT/dataset_stats.json and OUT/text_embeds_cache/*.pt")
@click.option("--encoder-id", default="wan22ti2v5b", show_default=True,
              help="Text-encoder id in Fast-WAM's cache file names ({sha256}.t5_len{L}.{id}.pt).")
def export_fastwam_cmd(shards, out, encoder_id):
    """Hand SHARDS (a `wamdata pack` output) to the official Fast-WAM trainer: its text-embedding cache files
    (point text_embedding_cache_dir at OUT/text_embeds_cache) and its dataset_stats.json (pretrained_norm_stats)."""
    from cache_jobs.export_fastwam import export_fastwam

    res = export_fastwam(shards, out, encoder_id=encoder_id)
    click.echo(json.dumps(res, indent=1))


@click.command("convert")
@click.argument("src", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), callback=out_dir,
              help="New diffusers-format dir to write.")
@click.option("--vae", default=None, type=click.Path(exists=True), help="Override: VAE file or dir.")
@click.option("--text-encoder", "text", default=None, type=click.Path(exists=True), help="Override: umT5 file or dir.")
@click.option("--tokenizer", default=None, type=click.Path(exists=True, file_okay=False), help="umT5 tokenizer dir.")
@click.option("--dit", default=None, type=click.Path(exists=True), help="Wan DiT dir or shard [default: found in SRC].")
@click.option("--shard-gb", default=2.0, show_default=True, type=float, help="Largest weight file written.")
def convert_cmd(src, out, vae, text, tokenizer, dit, shard_gb):
    """Write SRC's Wan2.2 weights (any supported layout) once as a diffusers-format dir (vae/ text_encoder/
    tokenizer/ [transformer/]), checked tensor by tensor against the source; loads faster on a cluster."""
    from cache_jobs.weights.convert import convert

    res = convert(out, src, vae, text, tokenizer, dit, max_shard_bytes=int(shard_gb * (1 << 30)))
    click.echo(json.dumps(res, indent=1))
