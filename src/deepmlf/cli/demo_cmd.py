"""`deepmlf demo [NAME]` (`make demo` = `deepmlf demo` = the DeepMLF demo): embedded demos, no data, no download.

Each demo is one entry of `DEMOS`: its function (imported only when it runs) is called as
`run(out_dir, *, n, fast, overrides, progress, console)` and prints its own table. A new demo is
one line here (docs/contracts.md, "Demos").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from ..errors import ConfigError
from . import app
from .common import console, friendly_errors


@dataclass(frozen=True)
class Demo:
    target: str  # "module:function" called as run(out_dir, *, n, fast, overrides, progress, console)
    summary: str  # one line for --help
    out: str  # default output dir

    def load(self) -> Callable[..., Any]:
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


DEFAULT_DEMO = "deepmlf"
DEMOS: dict[str, Demo] = {
    "deepmlf": Demo("deepmlf.demo:run_demo", "DeepMLF vs text-only vs AV-only on the fusion probe (~10 min)", "runs/demo"),
    "missing": Demo("deepmlf.demo.missing:run", "complete vs text-missing on the echo probe: DeepMLF, text dropout, "
                    "double flow (+MIA, +RnC), UMCA, oracles", "runs/demo-missing"),
    "erc": Demo("deepmlf.demo.erc:run_demo_erc", "MAGTKD on the dialogue probe: text / audio / KD / Concat / MAGT / oracle (~2 min)", "runs/demo-erc"),
    "rationale": Demo("deepmlf.demo.rationale_demo:run", "a generated rationale beside every score: assistant, text-only control, distilled student on the fusion probe (symbolic teacher; ~5 min; does not yet learn the format, RESULTS.md)", "runs/demo-rationale"),
}


def get_demo(name: str) -> Demo:
    if name not in DEMOS:
        raise ConfigError(f"unknown demo {name!r}; known demos: {', '.join(DEMOS)}")
    return DEMOS[name]


def _names_help() -> str:
    return "Which demo (default deepmlf): " + "; ".join(f"{k}: {d.summary}" for k, d in DEMOS.items()) + "."


@app.command("demo")
@friendly_errors
def demo(
    name: str = typer.Argument(DEFAULT_DEMO, help=_names_help(), show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Output dir: data, models, report.md (default runs/demo for deepmlf, runs/demo-NAME otherwise)."),
    n: Optional[int] = typer.Option(None, "--n", help="Synthetic samples in all (deepmlf: probe clips, split 70/15/15; default 2000, --fast 1000)."),
    fast: bool = typer.Option(False, "--fast", help="A shorter run, a rougher result (deepmlf: 1000 clips, 5 stage-2 epochs instead of 10, 15 stage-1 epochs instead of 30)."),
    overrides: Optional[List[str]] = typer.Option(
        None, "--set", help="Config override on the demo's preset, KEY=VALUE (repeatable), e.g. --set train.max_epochs=4."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run an embedded demo end to end and print its comparison table. The default (deepmlf)
    generates the fusion probe, trains DeepMLF (stage 1 + 2) and its text-only / AV-only
    references and writes OUT/report.md; no data, no download; ~10 min on 2 CPU cores."""
    entry = get_demo(name)
    run = entry.load()
    run(out if out is not None else Path(entry.out), n=n, fast=fast, overrides=overrides, progress=progress,
        console=console)
