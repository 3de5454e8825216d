"""`deepmlf sweep`, `deepmlf results`, `deepmlf tune`: paper-scale experiments (docs/experiments.md)."""

from __future__ import annotations

import os
import shlex
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import ConfigError
from ..experiments import results as results_mod
from ..experiments import sweep as sweep_mod
from ..experiments.spec import parse_backbone_map
from . import app
from .common import console, err_console, friendly_errors


class DatasetChoice(str, Enum):
    mosi = "mosi"
    mosei = "mosei"
    sims = "sims"
    simsv2 = "simsv2"


_STATE_STYLE = {"done": "green", "partial": "yellow", "todo": "dim"}

SET_HELP = "Override a config key in every cell, e.g. --set train.max_epochs=3 (repeatable; not a sweep axis)."
DATA_HELP = "The MMSA pickle for every cell (sets data.path)."
BACKBONE_HELP = "Map a backbone name used in the spec to a local path, e.g. --backbone gpt2-large=/models/gpt2-large (repeatable)."


def _say(text: str) -> None:
    typer.echo(text)  # plain: commands and paths must stay copy-pasteable (no wrapping)


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]} ({len(seeds)})"
    return " ".join(str(s) for s in seeds)


def _plan_table(plan: sweep_mod.SweepPlan, selected: list[sweep_mod.PlannedCell]) -> Table:
    chosen = {c.name for c in selected}
    title = f"{plan.spec.name}: {plan.spec.paper}" if plan.spec.paper else plan.spec.name
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column(f"cell (run dir under {plan.out})", overflow="fold", ratio=3)
    table.add_column("overrides", overflow="fold", ratio=3)
    table.add_column("seeds", overflow="fold", ratio=2)
    table.add_column("status", overflow="fold", ratio=2)
    for c in plan.cells:
        if c.name not in chosen:
            continue
        over = ", ".join(f"{k}={results_mod.format_key_value(v)}" for k, v in c.cell.overrides.items()) or "(base)"
        status = f"[{_STATE_STYLE[c.state]}]{c.state}[/] {c.n_done}/{len(c.seeds)}"
        if c.changed:
            status += " [red](config changed)[/]"
        table.add_row(str(c.index), c.name, over, _seeds_text(c.seeds), status)
    return table


def _one_process(command: str) -> None:
    from ..train.distributed import process_info

    if process_info()[1] > 1:
        raise ConfigError(
            f"deepmlf {command} runs as one process per worker, not under torchrun / accelerate launch with "
            "several processes: start one worker per GPU (--shard i/n or --cell; docs/multi-gpu.md), or "
            "train a single setting over several GPUs with `deepmlf train`"
        )


@app.command("sweep")
@friendly_errors
def sweep(
    spec: Path = typer.Argument(..., help="Sweep spec YAML (see experiments/*.yaml)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and their status; train nothing."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: the spec's `out:`, else runs/<name>)."),
    backbone: list[str] = typer.Option([], "--backbone", help=BACKBONE_HELP),
    cell: list[str] = typer.Option([], "--cell", help="Run only this cell (by name; repeatable): one worker per cell."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Run every n-th cell: i/n with 0 <= i < n (cell index % n == i)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="If a cell fails, note it and train the others."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train every cell of a sweep spec (resumable: finished seeds are skipped), then aggregate the table."""
    _one_process("sweep")
    backbones = parse_backbone_map(backbone)
    plan = sweep_mod.plan_sweep(spec, overrides=set_, data=data, out=out, backbones=backbones)
    selected = sweep_mod.select_cells(plan, names=cell or None, shard=sweep_mod.parse_shard(shard) if shard else None)
    for name in plan.unused_backbones:
        err_console.print(f"warning: --backbone {name}=... matches no cell's model.backbone", highlight=False)
    if dry_run:
        console.print(_plan_table(plan, selected))
        counts = {s: sum(c.state == s for c in selected) for s in ("done", "partial", "todo")}
        _say(f"{len(selected)} of {len(plan.cells)} cells selected: "
             + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; output {plan.out}")
        return
    if not selected:
        _say("no cell selected (the shard is empty); nothing to do")
        return
    outcome = sweep_mod.run_sweep(plan, selected, progress=not quiet, keep_going=keep_going, announce=_say)
    if outcome.table is not None and outcome.table.rows:
        _say("\n" + results_mod.to_markdown(outcome.table, plan.title))
        _say(f"aggregated {len(outcome.table.rows)} cells -> " + ", ".join(str(p) for p in outcome.written))
    if outcome.failed:
        for name, msg in outcome.failed.items():
            err_console.print(f"[bold red]cell {name} failed:[/] {msg}", highlight=False)
        raise typer.Exit(code=1)


@app.command("results")
@friendly_errors
def results(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories (as written by `deepmlf train` / `deepmlf sweep`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where results.md/results.csv/plots go (default: the runs' common parent)."),
    dataset: Optional[DatasetChoice] = typer.Option(None, "--dataset", help="Dataset of the runs (default: from their config.yaml)."),
) -> None:
    """One row per run dir: mean ± std over finished seeds of every MMSA metric; plus the paper's plots."""
    table = results_mod.collect(run_dirs, dataset=dataset.value if dataset else None)
    if not table.rows:
        raise ConfigError("none of the run dirs has a finished seed (seed-*/DONE); nothing to aggregate")
    out_dir = out or Path(os.path.commonpath([p.resolve() for p in run_dirs]))
    if len(run_dirs) == 1 and out is None:
        out_dir = run_dirs[0].resolve().parent
    if any(out_dir.resolve() == p.resolve() for p in run_dirs):
        raise ConfigError(f"--out {out_dir} is one of the run dirs (it has its own results.csv); choose another folder")
    written = results_mod.write_results(table, out_dir)
    _say(results_mod.to_markdown(table))  # the table of results.md: plain text stays readable when wide
    _say("wrote " + ", ".join(str(p) for p in written))


@app.command("tune")
@friendly_errors
def tune(
    spec: Path = typer.Argument(..., help="Tuning spec YAML with a `search:` section (see experiments/tune-*.yaml)."),
    storage: str = typer.Option(..., "--storage", help="journal:///path/study.log (one machine) or sqlite:///path.db, postgresql://... (several)."),
    study: str = typer.Option(..., "--study", help="Study name; every worker passing the same storage and name joins it."),
    n_trials: int = typer.Option(..., "--n-trials", min=1, help="Trials this worker runs."),
    total_trials: Optional[int] = typer.Option(None, "--total-trials", min=1, help="Stop once the study holds this many finished trials (all workers)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key in every trial (not a searched key)."),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Trial run dirs go to OUT/trial-<n> (default: the spec's `out:`)."),
    backbone: list[str] = typer.Option([], "--backbone", help=BACKBONE_HELP),
    sampler_seed: Optional[int] = typer.Option(None, "--sampler-seed", help="Seed of this worker's TPE sampler."),
    workers_note: bool = typer.Option(False, "--workers-note", help="Print how to start more workers on this study, and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Optuna search: this process is one worker; run the same command elsewhere to add workers."""
    _one_process("tune")
    from ..experiments import tune as tune_mod

    ctx = tune_mod.prepare(spec, data=data, out=out, overrides=set_, backbones=parse_backbone_map(backbone))
    if workers_note:
        argv = ["deepmlf", "tune", str(spec), "--storage", storage, "--study", study, "--n-trials", str(n_trials)]
        for s in set_:
            argv += ["--set", s]
        if data:
            argv += ["--data", data]
        for b in backbone:
            argv += ["--backbone", b]
        argv += ["--out", str(ctx.out)]
        cmd = shlex.join(argv)
        _say(f"Every process running this command joins study {study!r} (load_if_exists):\n\n  {cmd}\n")
        _say("One machine, one GPU per worker:\n\n  " + f"for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i {cmd} & done; wait\n")
        if storage.startswith("journal:"):
            _say("A journal file is shared by processes on this machine (or a shared file system). "
                 "For workers on several machines use an RDB URL, e.g. --storage postgresql://user:pass@host/optuna.")
        return
    study_obj = tune_mod.run_worker(ctx, storage_url=storage, study_name=study, n_trials=n_trials,
                                    total_trials=total_trials, sampler_seed=sampler_seed, progress=not quiet, announce=_say)
    summary = tune_mod.summary_markdown(study_obj, ctx)
    from ..io import atomic_path, write_text

    path = ctx.out / "tune-summary.md"
    write_text(path, summary)
    with atomic_path(ctx.out / "trials.csv") as tmp:
        study_obj.trials_dataframe().to_csv(tmp, index=False)
    _say(summary)
    _say(f"wrote {path}")
