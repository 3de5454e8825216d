"""The `deepmlf` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="deepmlf",
    help="DeepMLF multimodal sentiment analysis: data, backbones, training, evaluation, experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Importing these modules registers their commands on `app` (order = order in --help).
from . import data_cmd, backbones_cmd, train_cmd, experiments_cmd, demo_cmd  # noqa: E402,F401


def main() -> None:
    app()
