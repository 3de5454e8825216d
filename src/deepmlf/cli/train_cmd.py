"""`deepmlf pretrain-av | train | evaluate | predict`: the training area's commands.

Configuration comes from a preset and/or a YAML file, then `--set key=value` overrides, then the
shortcuts `--data` (= data.path) and `--seeds` (= train.seeds). With `--resume` and no config
options, the run directory's own `config.yaml` is the starting point.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..config import Config, config_from_dict, load_config, read_yaml, apply_overrides
from ..errors import ConfigError
from ..io import check_output_file, write_json, write_text
from . import app
from .common import console, friendly_errors

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (may name `preset:` itself).")
PresetOpt = typer.Option(None, "--preset", "-p", help="Built-in preset: mosi, mosei-base, mosei-large, sims, simsv2, demo.")
SetOpt = typer.Option(None, "--set", "-s", help="Override one config key, e.g. --set model.n_fusion=16 (repeatable).")
DataOpt = typer.Option(None, "--data", "-d", help="MMSA pickle (aligned_50.pkl / unaligned_50.pkl / unaligned_39.pkl) = data.path.")
SeedsOpt = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 1111,1112,1113 (overrides train.seeds).")
ResumeOpt = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its last.pt files.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Start over: remove the run already in --out (seed-*, stage1, "
                            "results, config) first. Without it (or --resume), unfinished work there is refused.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. 1111,1112") from None
    if not seeds:
        raise ConfigError(f"--seeds {text!r}: expected at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: a seed appears twice")
    return seeds


def resolve_config(
    config: Optional[Path],
    preset: Optional[str],
    sets: Optional[list[str]],
    data: Optional[str],
    seeds: Optional[str],
    *,
    resume_dir: Optional[Path] = None,
) -> Config:
    """The resolved Config of a command line (see module docstring)."""
    overrides = list(sets or [])
    if data is not None:
        overrides.append(f"data.path={data}")
    if seeds is not None:
        overrides.append(f"train.seeds={parse_seeds(seeds)}")
    stored = resume_dir / "config.yaml" if resume_dir is not None else None
    if config is None and preset is None and stored is not None and stored.exists():
        tree = read_yaml(stored)
        apply_overrides(tree, overrides)
        return config_from_dict(tree, f"{stored}" + (" + " + " ".join(overrides) if overrides else ""))
    return load_config(config, preset=preset, overrides=overrides)


def _default_out(cfg: Config) -> Path:
    backbone = Path(cfg.model.backbone).name or "backbone"
    dataset = cfg.data.dataset if cfg.data.dataset != "infer" else "run"  # the file decides it later
    return Path("runs") / f"{dataset}-{backbone}-{time.strftime('%Y%m%d-%H%M%S')}"


def _out_dir(out: Optional[Path], resume: bool, cfg_factory, *, overwrite: bool = False) -> tuple[Config, Path]:
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run, or start it over")
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN_DIR: the run directory to continue")
    if resume:
        _check_resumable(out)
    cfg = cfg_factory(out if resume else None)
    run_dir = out if out is not None else _default_out(cfg)
    if resume:
        from ..rundir import run_state

        if run_state(run_dir, list(cfg.train.seeds))[0] == "done":
            console.print(f"nothing to resume: every seed of {run_dir} is done (results are re-read)")
    return cfg, run_dir


def _check_resumable(out: Path) -> None:
    """--resume on a directory without a run is a mistake worth naming (a typo in --out, usually)."""
    from ..rundir import seed_dirs

    if not out.exists():
        raise ConfigError(f"--resume: {out} does not exist, so there is nothing to resume; "
                          "drop --resume to start a new run there")
    if not out.is_dir():
        raise ConfigError(f"--resume: {out} is a file, not a run directory")
    if not (out / "config.yaml").exists() and not seed_dirs(out) and not (out / "stage1").exists():
        raise ConfigError(f"--resume: {out} holds no run (no config.yaml, no seed-* folders), so there is nothing "
                          "to resume; drop --resume to start a new run there")


def metrics_table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    return table


@app.command("pretrain-av")
@friendly_errors
def pretrain_av_cmd(
    config: Optional[Path] = ConfigOpt,
    preset: Optional[str] = PresetOpt,
    set_: Optional[list[str]] = SetOpt,
    data: Optional[str] = DataOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<dataset>-<backbone>-<time>)."),
    seeds: Optional[str] = SeedsOpt,
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Stage 1: pre-train the AV encoder (AV regressor, L1) into RUN_DIR/seed-S/stage1/best.pt.

    A later `deepmlf train --out RUN_DIR` with the same settings reuses it.
    """
    from ..train import pretrain_av

    cfg, run_dir = _out_dir(out, resume, lambda d: resolve_config(config, preset, set_, data, seeds, resume_dir=d),
                            overwrite=overwrite)
    paths = pretrain_av(cfg, run_dir, resume=resume, overwrite=overwrite, progress=not quiet)
    for seed, path in paths.items():
        console.print(f"seed {seed}: pre-trained AV encoder -> {path}")


@app.command("train")
@friendly_errors
def train_cmd(
    config: Optional[Path] = ConfigOpt,
    preset: Optional[str] = PresetOpt,
    set_: Optional[list[str]] = SetOpt,
    data: Optional[str] = DataOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<dataset>-<backbone>-<time>)."),
    seeds: Optional[str] = SeedsOpt,
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train DeepMLF for every seed (stage 1 first when the AV encoder starts pre-trained), test the
    best checkpoint, and write results.csv / results.json (per seed, mean, std)."""
    from ..train import results_table, train_run

    cfg, run_dir = _out_dir(out, resume, lambda d: resolve_config(config, preset, set_, data, seeds, resume_dir=d),
                            overwrite=overwrite)
    console.print(f"run directory: {run_dir}")
    result = train_run(cfg, run_dir, resume=resume, overwrite=overwrite, progress=not quiet)
    if quiet:
        console.print(results_table(result))
    console.print(f"results: {run_dir / 'results.csv'}")


MISSING_HELP = ("Drop a modality first: text (empty transcript), audio or vision (one all-zero frame), or a "
                "'+'-joined set such as audio+vision (docs/missing-modalities.md).")
RATE_HELP = "With --missing: each sample loses each listed modality independently with this probability (default 1: all)."


def _missing_spec(missing: Optional[str], rate: float, seed: int):
    from ..data.missing import MissingSpec, check_rate

    if missing is None:
        if rate != 1.0:
            check_rate(rate)
            raise ConfigError("--missing-rate needs --missing MODALITY")
        return None
    return MissingSpec.parse(missing, rate, seed)


@app.command("evaluate")
@friendly_errors
def evaluate_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A best.pt written by `deepmlf train` or `pretrain-av`."),
    data: str = typer.Option(..., "--data", "-d", help="MMSA pickle to evaluate on."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Metrics JSON (default: eval_<split>.json next to the "
                                       "checkpoint; eval_<split>_missing-<spec>.json with --missing)."),
    missing: Optional[str] = typer.Option(None, "--missing", help=MISSING_HELP),
    missing_rate: float = typer.Option(1.0, "--missing-rate", help=RATE_HELP),
    missing_seed: int = typer.Option(0, "--missing-seed", help="Seed of the per-sample drops (with --missing-rate < 1)."),
) -> None:
    """MMSA metrics of a trained checkpoint on one split; printed and written as JSON."""
    from ..train import evaluate_checkpoint

    spec = _missing_spec(missing, missing_rate, missing_seed)
    suffix = f"_missing-{spec.name}" if spec is not None else ""
    path = out if out is not None else checkpoint.parent / f"eval_{split}{suffix}.json"
    check_output_file(path, "--out" if out is not None else "metrics file", example="eval.json")
    metrics = evaluate_checkpoint(checkpoint, data, split, missing=spec)
    write_json(path, metrics)
    what = f", {spec.name} missing" if spec is not None else ""
    console.print(metrics_table(metrics, f"{checkpoint} on {data} [{split}{what}]"))
    console.print(f"metrics: {path}")


@app.command("predict")
@friendly_errors
def predict_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A best.pt written by `deepmlf train` (or a run dir / export folder)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="MMSA pickle (labels optional)."),
    video: Optional[list[Path]] = typer.Option(None, "--video", "-v", help="A clip or a folder of clips (repeatable): "
                                               "extracted with the checkpoint's own feature set."),
    text: Optional[str] = typer.Option(None, "--text", help="Transcript of the (single) --video; default: speech recognition."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write: id, label, y_o, y_t, y_av, y_f "
                                       "(required with --data)."),
    split: str = typer.Option("test", "--split", help="train, valid or test (with --data)."),
    missing: Optional[str] = typer.Option(None, "--missing", help=MISSING_HELP + " With --data only."),
    missing_rate: float = typer.Option(1.0, "--missing-rate", help=RATE_HELP),
    missing_seed: int = typer.Option(0, "--missing-seed", help="Seed of the per-sample drops (with --missing-rate < 1)."),
) -> None:
    """Per-sample predictions of a trained checkpoint: the task head y_o and the text, AV and
    fusion heads (y_f = mean over fusion tokens), one row per id; on an MMSA pickle (--data) or on
    raw clips (--video), printed as a table with the transcript and, if the model has one, the rationale."""
    if (data is None) == (not video):
        raise ConfigError("pass either --data PICKLE (with --out CSV) or --video CLIP_OR_FOLDER")
    if missing is not None and data is None:
        raise ConfigError("--missing works with --data PICKLE (for a clip without speech, pass --text '')")
    if data is not None:
        from ..train import predict

        if out is None:
            raise ConfigError("--data needs --out CSV: where to write the predictions")
        check_output_file(out, "--out", example="predictions.csv")
        frame = predict(checkpoint, data, split, out, missing=_missing_spec(missing, missing_rate, missing_seed))
        console.print(f"{len(frame)} predictions -> {out}")
        return
    _predict_videos(checkpoint, video or [], text, out)


def _predict_videos(checkpoint: Path, sources: list[Path], text: Optional[str], out: Optional[Path]) -> None:
    import pandas as pd

    from .. import load
    from ..features.sources import discover

    if out is not None:
        check_output_file(out, "--out", example="predictions.csv")
    clips, _ = discover(sources)
    if text is not None and len(clips) != 1:
        raise ConfigError(f"--text gives one transcript, but --video names {len(clips)} clips")
    model = load(checkpoint)
    preds = model.predict_videos([c.path for c in clips], texts=[text] * len(clips))
    table = Table(title=f"{checkpoint} ({(model.feature_set or {}).get('id')}) on {len(preds)} clip(s)")
    heads = [h for h in ("y_t", "y_av", "y_f") if any(h in p.heads for p in preds)]
    for col in ("clip", "score", *heads, "faces", "transcript"):
        table.add_column(col, justify="right" if col not in ("clip", "transcript") else "left")
    rationale = any(p.rationale for p in preds)
    if rationale:
        table.add_column("rationale")
    for p in preds:
        found, total = p.face_frames or (0, 0)
        row = [p.id, f"{p.score:+.3f}", *(f"{p.heads[h]:+.3f}" for h in heads), f"{found}/{total}",
               f"{p.text} [{p.text_source}]"]
        table.add_row(*row, *([p.rationale or ""] if rationale else []))
    console.print(table)
    if out is not None:
        rows = [{"id": p.id, "score": p.score, **p.heads, "face_frames": (p.face_frames or (0, 0))[0],
                 "frames": (p.face_frames or (0, 0))[1], "duration_s": p.duration_s, "text": p.text,
                 "text_source": p.text_source, "rationale": p.rationale} for p in preds]
        write_text(out, pd.DataFrame(rows).to_csv(index=False))
        console.print(f"{len(rows)} predictions -> {out}")
