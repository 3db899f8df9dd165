"""One-line errors for every command line: a click group that turns any exception of a command into one line.

    wamdata [--debug] COMMAND ...   error in COMMAND -> stderr "Error: <one line>", exit 1 (2 for click usage)
                                    --debug (or WAMDATA_DEBUG=1) -> the exception propagates with its traceback

A WamdataError's message already names the file, episode and key; any other exception is shown as
"<Type>: <message>" with a pointer to --debug, since it may be a bug rather than bad input.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from schemas.errors import WamdataError

DEBUG_ENV = "WAMDATA_DEBUG"


def one_line(e: BaseException) -> str:
    """The exception as a single line (multi-line messages joined with ' | ')."""
    msg = " | ".join(ln.strip() for ln in str(e).strip().splitlines() if ln.strip())
    if isinstance(e, WamdataError):
        return msg
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class OneLineError(click.ClickException):
    exit_code = 1


def debug_requested(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


class OneLineErrorGroup(click.Group):
    """click.Group whose subcommands' exceptions end in one line on stderr (non-zero exit) unless --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            if debug_requested(ctx):
                raise
            hint = "" if isinstance(e, WamdataError) else " (rerun with --debug for the traceback)"
            raise OneLineError(one_line(e) + hint) from e


def debug_option(f):
    return click.option("--debug", is_flag=True, help=f"show Python tracebacks (also {DEBUG_ENV}=1)")(f)


def _blocking_file(p: Path) -> Path | None:
    """The path itself or the nearest existing ancestor when that is a file (so nothing can be created under it)."""
    for q in (p, *p.parents):
        if q.exists():
            return None if q.is_dir() else q
    return None


def out_dir(ctx: click.Context, param: click.Parameter, value):
    """click callback for an output directory option: refuse a file, or a path under a file, before any work."""
    if value is not None and (f := _blocking_file(Path(value))) is not None:
        what = "is a file" if f == Path(value) else f"is under {f}, which is a file"
        raise click.BadParameter(f"{value} {what}, not a directory", ctx=ctx, param=param)
    return value


def out_file(ctx: click.Context, param: click.Parameter, value):
    """click callback for an output file option: refuse a directory, or a path under a file."""
    if value is None:
        return value
    p = Path(value)
    if p.is_dir():
        raise click.BadParameter(f"{value} is a directory, not a file", ctx=ctx, param=param)
    if (f := _blocking_file(p.parent)) is not None:
        raise click.BadParameter(f"{value} is under {f}, which is a file", ctx=ctx, param=param)
    return value
