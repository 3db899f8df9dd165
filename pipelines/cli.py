"""The `wamdata` command line: a thin click shell over the stage functions and their configs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipelines.sources.base import ROBOTWIN_ACTIONS, ROBOTWIN_TASK_CHOICES
from schemas import keys
from schemas.cli_errors import OneLineErrorGroup, debug_option, out_dir, out_file


@click.group(cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@debug_option
def main(debug):
    """wamdata: raw robot episodes -> LeRobot -> cached Wan2.2 latents -> Fast-WAM training."""


@main.command()
@click.argument("raw", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), callback=out_dir,
              help="output dataset directory")
@click.option("--source", type=click.Choice(["libero", "robotwin", "aloha", "mcap", "rosbag", "lerobot"]),
              help="raw format (detected when omitted)")
@click.option("--format", "fmt", type=click.Choice(list(keys.CODEBASE_VERSIONS)), default=keys.V30,
              show_default=True, help="LeRobot format (v2.1 is what the Fast-WAM reader consumes)")
@click.option("--fps", type=float, help="frame rate (default: the source's own / documented default)")
@click.option("--workers", type=int, default=0, show_default=True, help="worker processes (0 = one per core)")
@click.option("--vcodec", type=click.Choice(list(keys.VCODEC_CHOICES)), default=keys.DEFAULT_VCODEC,
              show_default=True)
@click.option("--crf", type=int, default=keys.DEFAULT_CRF, show_default=True)
@click.option("--preset", type=int, default=keys.DEFAULT_SVTAV1_PRESET, show_default=True,
              help=f"libsvtav1 preset (lerobot uses {keys.LEROBOT_SVTAV1_PRESET}, which drops small frame changes)")
@click.option("--svtav1-params", default=keys.DEFAULT_SVTAV1_PARAMS, show_default=True,
              help="extra libsvtav1 parameters, ':'-separated key=value ('' = the library's defaults)")
@click.option("--task", help="task instruction for sources that store none (ALOHA, ROS)")
@click.option("--cameras", help="comma-separated camera names to keep (default: all)")
@click.option("--robotwin-task", type=click.Choice(list(ROBOTWIN_TASK_CHOICES)), default="first_seen",
              show_default=True, help="which RoboTwin instruction becomes the episode's task")
@click.option("--robotwin-action", type=click.Choice(list(ROBOTWIN_ACTIONS)), default="next_state",
              show_default=True, help="RoboTwin action[t]: joint vector[t+1] (next_state) or [t]")
@click.option("--robot-type", help="robot_type written to info.json")
@click.option("--overwrite", is_flag=True, help="replace an existing dataset at OUT")
def ingest(raw, out, source, fmt, fps, workers, vcodec, crf, preset, svtav1_params, task, cameras, robotwin_task,
           robotwin_action, robot_type, overwrite):
    """Convert RAW files/folders into one LeRobot dataset at OUT (resumable: rerun after a crash)."""
    from pipelines.ingest import IngestConfig
    from pipelines.ingest import ingest as run
    from pipelines.lerobot_io.staging import VideoConfig
    from pipelines.sources.base import SourceOptions

    opts = SourceOptions(task=task, robotwin_task_choice=robotwin_task, robotwin_action=robotwin_action,
                         cameras=tuple(c.strip() for c in cameras.split(",")) if cameras else None)
    cfg = IngestConfig(source=source, format=fmt, fps=fps, workers=workers, robot_type=robot_type,
                       overwrite=overwrite, video=VideoConfig(vcodec=vcodec, crf=crf, preset=preset,
                                                                svtav1_params=svtav1_params),
                       source_options=opts)
    report = run(list(raw), out, cfg)
    if report.get("nothing_to_do"):
        click.echo(f"nothing to do: {out} already holds this dataset ({report['episodes_written']} episodes, "
                   "same inputs and config)")
        return
    click.echo(f"wrote {report['episodes_written']}/{report['episodes_found']} episodes to {out}"
               + (f"; {report['episodes_failed']} failed (see {out / keys.INGEST_REPORT})"
                  if report["episodes_failed"] else ""))


@main.command()
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.option("--no-videos", is_flag=True, help="skip counting video frames")
@click.option("--checksums/--no-checksums", default=None,
              help="require / skip the sha256 check of every file against meta/checksums.json "
                   "[default: check when the dataset has one]")
def validate(dataset, no_videos, checksums):
    """Exit 0 only when DATASET is a valid LeRobot dataset (schema, counts, timestamps, videos, stats, checksums)."""
    from pipelines.validate import validate as run

    problems = run(dataset, check_videos=not no_videos, checksums=checksums)
    for p in problems:
        click.echo(f"INVALID: {p}")
    if problems:
        raise click.ClickException(f"{dataset}: not a valid dataset ({len(problems)} problem(s), first: {problems[0]})")
    click.echo(f"{dataset}: valid")


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), callback=out_file, help="PNG to write")
@click.option("--episode", type=int, default=0, show_default=True)
@click.option("--frames", type=int, default=8, show_default=True, help="frames per camera row")
def inspect(path, out, episode, frames):
    """Draw a PNG: a dataset episode's contact sheet + action/state plots, or a cache's decoded latents."""
    from schemas.cache import CACHE_MANIFEST

    if (path / CACHE_MANIFEST).exists():
        from cache_jobs.inspect_cache import inspect_cache

        inspect_cache(path, out, n=frames)
    else:
        from pipelines.inspect_png import inspect_dataset

        inspect_dataset(path, out, episode=episode, n_frames=frames)
    click.echo(f"wrote {out}")


@main.command()
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), callback=out_dir,
              help="demo output directory")
@click.option("--episodes", type=int, default=4, show_default=True, help="LIBERO demos to generate")
@click.option("--steps", type=int, default=40, show_default=True, help="training steps of the tiny model")
@click.option("--stride", type=int, default=8, show_default=True, help="chunk start stride of the demo cache")
def demo(out, episodes, steps, stride):
    """Generate a small raw set in the real formats and run every stage on it (no downloads)."""
    from pipelines.demo import run_demo

    summary = run_demo(out, n_episodes=episodes, train_steps=steps, stride=stride)
    click.echo(json.dumps(summary, indent=2))


# -- later stages register here -------------------------------------------------------------------
def _register():
    from cache_jobs.cli import cache_cmd, convert_cmd, export_fastwam_cmd, pack_cmd, verify_cmd
    from fastwam_train.cli import export_official_cmd, import_official_cmd, latency_cmd, predict_cmd, train_cmd

    for cmd in (cache_cmd, verify_cmd, pack_cmd, export_fastwam_cmd, convert_cmd, train_cmd, predict_cmd, latency_cmd,
                export_official_cmd, import_official_cmd):
        main.add_command(cmd)


_register()


def run():
    main(standalone_mode=True)
