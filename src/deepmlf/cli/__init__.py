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
data_app = typer.Typer(help="Inspect MMSA pickles and generate the fusion probe dataset.", no_args_is_help=True)
backbones_app = typer.Typer(help="Language-model backbones that resolve offline.", no_args_is_help=True)
features_app = typer.Typer(help="Extract features from raw media (audio, faces, speech recognition).", no_args_is_help=True)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the full Python traceback of an error "
                                     "(also DEEPMLF_DEBUG=1).")) -> None:
    from .common import set_debug

    set_debug(debug)


app.add_typer(data_app, name="data")
app.add_typer(backbones_app, name="backbones")
app.add_typer(features_app, name="features")

# Importing these modules registers their commands (order = order in --help).
from . import data_cmd, synth_cmd, backbones_cmd, features_cmd, train_cmd, experiments_cmd, demo_cmd, report_cmd  # noqa: E402,F401,E501
from . import export_cmd, erc_cmd  # noqa: E402,F401
from . import rationale_cmd  # noqa: E402,F401
from . import robustness_cmd  # noqa: E402,F401


def main() -> None:
    from .common import debug_enabled, known_error_exit

    try:
        app()
    except Exception as e:  # an error outside any command (option parsing, imports): same one-line rule
        code = None if debug_enabled() else known_error_exit(e)
        if code is None:
            raise
        raise SystemExit(code) from None
