"""`python -m fastwam_train train|predict|latency ...` (also the torchrun entry:
`torchrun --nproc_per_node 8 -m fastwam_train train SHARDS -o RUN`)."""

import click

from fastwam_train.cli import export_official_cmd, import_official_cmd, latency_cmd, predict_cmd, train_cmd
from schemas.cli_errors import OneLineErrorGroup, debug_option


@click.group(cls=OneLineErrorGroup)
@debug_option
def main(debug):
    """Fast-WAM co-training on packed latents."""


for _cmd in (train_cmd, predict_cmd, latency_cmd, export_official_cmd, import_official_cmd):
    main.add_command(_cmd)

if __name__ == "__main__":
    main()
