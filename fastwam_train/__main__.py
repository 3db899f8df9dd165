"""`python -m fastwam_train train|predict|latency ...` (also the torchrun entry:
`torchrun --nproc_per_node 8 -m fastwam_train train SHARDS -o RUN`)."""

import sys

import click

from fastwam_train.cli import export_official_cmd, import_official_cmd, latency_cmd, predict_cmd, train_cmd
from schemas.errors import WamdataError


@click.group()
def main():
    """Fast-WAM co-training on packed latents."""


main.add_command(train_cmd)
main.add_command(predict_cmd)
main.add_command(latency_cmd)
main.add_command(export_official_cmd)
main.add_command(import_official_cmd)

if __name__ == "__main__":
    try:
        main(standalone_mode=True)
    except WamdataError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
