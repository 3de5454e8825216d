"""`deepmlf backbones list` and `deepmlf backbones show NAME`: which LMs resolve offline, and what they are."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from . import backbones_app
from .common import console, err_console, friendly_errors

_STATUS_STYLE = {True: "green", False: "yellow"}


@backbones_app.command("list")
@friendly_errors
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """Backbones that resolve offline now: built-ins, supported causal LMs in the HF cache, cached GGUF files."""
    from dataclasses import asdict

    from ..backbones import hf_cache_dir, list_backbones

    rows = list_backbones()
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table(title="Backbones that resolve offline", title_justify="left")
    for column in ("name", "kind", "status", "model_type", "location"):
        table.add_column(column, overflow="fold")
    for r in rows:
        style = _STATUS_STYLE[r.ready]
        table.add_row(r.name, r.kind, f"[{style}]{r.status}[/]", r.model_type or "?", r.location or "-")
    console.print(table)
    console.print(
        f"Also accepted: a model directory with config.json, or a .gguf file. HF cache searched: {hf_cache_dir()}",
        highlight=False,
    )


@backbones_app.command("show")
@friendly_errors
def show_cmd(
    name: str = typer.Argument(..., help="Built-in name, model directory, .gguf file or HF-cache repo id."),
    dtype: str = typer.Option("float32", help="Load the weights in this dtype: float32, bfloat16 or float16."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
) -> None:
    """Load a backbone and show its layers, width, parameters, vocabulary, family and source."""
    from ..backbones import describe_backbone

    with err_console.status(f"loading {name} ..."):
        info = describe_backbone(name, dtype=dtype)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(title=f"backbone {info['name']}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    family = info["family"]
    rows = [
        ("kind", info["kind"]),
        ("source", info["source"]),
        ("model_type", info["model_type"]),
        ("family", f"{family['mlp']} MLP, {family['norm']}, layers at {family['layers_path']}"),
        ("layers", f"{info['n_layers']} (valid model.mm_layers: 0..{info['n_layers'] - 1})"),
        ("width D", str(info["hidden_size"])),
        ("parameters", f"{info['n_parameters']:,}"),
        ("vocab", str(info["vocab_size"])),
        ("dtype", info["dtype"]),
        ("tokenizer", f"{info['tokenizer']} ({info['tokenizer_size']} tokens)"),
        ("eos / pad", f"{info['eos_token']!r} / {info['pad_token']!r} (padding {info['padding_side']})"),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table, highlight=False)
