"""Robustness curves: every metric of a trained run against the rate at which a modality is missing.

For each finished seed's best.pt, each modality set M (default text, audio, vision, audio+vision)
and each rate P (default 0, 0.1, ..., 1): drop M from each test sample independently with
probability P (`deepmlf.data.missing`, seeded), score with the run's task. Rate 0 is the complete
data, scored once per seed. The curves average over seeds (MultiBench's robustness plots, one line
per modality). Written to RUN_DIR/robustness.{csv,json,png}; `deepmlf report` shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data.missing import apply_missing, check_rate, parse_missing
from ..errors import RunDirError
from ..io import atomic_path, write_json, write_text
from ..rundir import seed_dirs

ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_PNG = "robustness.png"
DEFAULT_MODALITIES = ("text", "audio", "vision", "audio+vision")
DEFAULT_RATES = tuple(round(0.1 * i, 1) for i in range(11))


def robustness(run_dir: str | Path, data_path: str | Path, *, modalities: Sequence[str] = DEFAULT_MODALITIES,
               rates: Sequence[float] = DEFAULT_RATES, split: str = "test", seed: int = 0,
               progress: Any = None) -> pd.DataFrame:
    """Score every finished seed of `run_dir` at each (modality set, rate); write the CSV/JSON/PNG.

    Returns one row per (modality, rate, seed) plus the seed means (seed = "mean")."""
    from .run import _checkpoint_split, _predict_split, load_model_from_checkpoint
    from ..tasks import MSATask

    run_dir = Path(run_dir)
    mods = ["+".join(parse_missing(m, option="--modalities")) for m in modalities]
    rates = sorted({check_rate(r, option="--rates") for r in rates})
    if not rates:
        raise RunDirError("robustness: --rates is empty")
    ckpts = {s: d / "best.pt" for s, d in seed_dirs(run_dir).items() if (d / "DONE").is_file() and (d / "best.pt").is_file()}
    if not ckpts:
        raise RunDirError(f"{run_dir}: no finished seed (seed-<S>/DONE and best.pt) to evaluate")
    rows: list[dict[str, Any]] = []
    task = None
    for s, ckpt in ckpts.items():
        loaded = load_model_from_checkpoint(ckpt)
        task = MSATask.of_config(loaded.cfg)
        base = _checkpoint_split(loaded, data_path, split, require_labels=True)
        complete = task.score(_predict_split(loaded, base), with_loss_terms=False) if 0.0 in rates else None
        for m in mods:
            for r in rates:
                if r == 0.0:
                    metrics = complete
                else:
                    metrics = task.score(_predict_split(loaded, apply_missing(base, m, rate=r, seed=seed)),
                                         with_loss_terms=False)
                rows.append({"modality": m, "rate": r, "seed": str(s), **metrics})
                if progress is not None:
                    progress(f"seed {s} · {m} missing at {r:g}: MAE {metrics.get('MAE', float('nan')):.4f}")
    frame = pd.DataFrame(rows)
    metric_cols = [c for c in frame.columns if c not in ("modality", "rate", "seed")]
    means = frame.groupby(["modality", "rate"], sort=False)[metric_cols].mean().reset_index()
    means.insert(2, "seed", "mean")
    frame = pd.concat([frame, means], ignore_index=True)
    write_text(run_dir / ROBUSTNESS_CSV, frame.to_csv(index=False))
    write_json(run_dir / ROBUSTNESS_JSON, {
        "data": str(data_path), "split": split, "missing_seed": seed, "modalities": mods, "rates": rates,
        "seeds": sorted(ckpts), "metrics": [c for c in metric_cols if c != "Loss"], "task": task.spec(),
        "semantics": "docs/missing-modalities.md: text = empty transcript, audio/vision = one all-zero frame",
    })
    plot_robustness(frame, run_dir / ROBUSTNESS_PNG, metrics=[c for c in metric_cols if c != "Loss"])
    return frame


def read_robustness(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """(the CSV, the JSON) of a run dir, or None when `deepmlf robustness` has not run on it."""
    import json

    run_dir = Path(run_dir)
    if not (run_dir / ROBUSTNESS_CSV).is_file() or not (run_dir / ROBUSTNESS_JSON).is_file():
        return None
    frame = pd.read_csv(run_dir / ROBUSTNESS_CSV, dtype={"seed": str})
    return frame, json.loads((run_dir / ROBUSTNESS_JSON).read_text())


def plot_robustness(frame: pd.DataFrame, path: Path, *, metrics: Sequence[str]) -> bool:
    """One panel per metric: the seed-mean value against the missing rate, one line per modality set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mean = frame[frame["seed"] == "mean"]
    metrics = [m for m in metrics if m in mean.columns and mean[m].notna().any()]
    if mean.empty or not metrics:
        return False
    cols = min(4, len(metrics))
    nrows = int(np.ceil(len(metrics) / cols))
    fig = Figure(figsize=(3.4 * cols, 2.8 * nrows), dpi=110)
    FigureCanvasAgg(fig)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, cols, k + 1)
        for m, part in mean.groupby("modality", sort=False):
            ax.plot(part["rate"], part[metric], marker="o", ms=3, label=f"{m} missing")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("missing rate", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return True


def robustness_markdown(frame: pd.DataFrame, info: dict[str, Any], *, key: str = "MAE") -> list[str]:
    """Markdown lines: the key metric (seed mean) per modality set (rows) and rate (columns)."""
    mean = frame[frame["seed"] == "mean"]
    if key not in mean.columns:
        key = info["metrics"][0]
    rates = sorted(mean["rate"].unique())
    lines = [f"| {key} by missing rate | " + " | ".join(f"{r:g}" for r in rates) + " |",
             "|---|" + "---:|" * len(rates)]
    for m, part in mean.groupby("modality", sort=False):
        by_rate = dict(zip(part["rate"], part[key]))
        lines.append(f"| {m} missing | " + " | ".join(f"{by_rate.get(r, float('nan')):.4f}" for r in rates) + " |")
    return lines
