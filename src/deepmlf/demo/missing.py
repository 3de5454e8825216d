"""`deepmlf demo missing`: complete vs text-missing MAE / Acc2 on the echo probe, for DeepMLF, DeepMLF
trained with random text dropout (the baseline without distillation), the double flow (+ MIA, + RnC),
UMCA, and the exact oracles (docs/missing-modalities.md).

The echo probe is the fusion probe whose audio also carries a noisy echo of the word's valence
(`deepmlf data synth --echo`), so text-missing prediction is possible, up to an exact floor.
Stage 1 (the AV encoder) is pre-trained once, by the plain DeepMLF run, and every DeepMLF variant
starts from that checkpoint: the rows differ only in their stage-2 recipe. Every model is scored
on the same test split, complete and with the transcript removed (`--missing text`: an empty
transcript). The recipe is its own preset, `demo-missing` (src/deepmlf/presets/demo-missing.yaml): the
first 4 decoder layers of SmolLM2-135M, MM blocks after layers 2-3, the frozen text-state cache
(`model.text_cache`, FFW on the fusion tokens only), sized so the seven rows fit in 8 minutes on 2 cores;
it does not follow the main `demo` preset.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..config import load_config
from ..data.mmsa import load_mmsa
from ..data.missing import apply_missing
from ..data.synth import echo_floor, make_probe, save_probe
from ..errors import ConfigError
from ..io import write_json, write_text

DEFAULT_OUT = Path("runs/demo-missing")
DEMO_N = 800
ECHO = 1.0  # ρ: the text-missing oracle's MAE is about 1.4x the complete oracle's (docs/missing-modalities.md)
PROBE_SEED = 0
TEXT_DROPOUT = 0.3
PRESET = "demo-missing"  # the demo's own recipe (not the main demo preset)
FAST = ["train.max_epochs=3", "pretrain.max_epochs=15"]
DF = ["model.double_flow.enabled=true"]
VARIANTS: dict[str, list[str]] = {
    "DeepMLF": [],
    f"DeepMLF + text dropout {TEXT_DROPOUT:g}": [f"data.text_dropout={TEXT_DROPOUT}"],
    "DeepMLF double flow": DF,
    "double flow + MIA": DF + ["model.double_flow.mia=true"],
    "double flow + MIA + RnC": DF + ["model.double_flow.mia=true", "model.double_flow.lambda_rnc=0.5"],
    "UMCA": ["model.arch=umca", "train.lr_parts={}"],  # the preset's gate lr factor is DeepMLF's
}
KEYS = ("MAE", "Has0_acc_2")


def run_missing_demo(out_dir: str | Path = DEFAULT_OUT, *, n: int | None = None, fast: bool = False,
                     overrides: list[str] | None = None, progress: bool = True,
                     console: Console | None = None, variants: list[str] | None = None) -> dict:
    """Train every variant, score complete and text-missing, print and write the table (missing.json/.md)."""
    from ..train.run import _predict_split, load_model_from_checkpoint, train_run
    from ..tasks import MSATask

    console = console or Console()
    out_dir = Path(out_dir)
    n = n or DEMO_N
    names = variants or list(VARIANTS)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    console.rule("[bold]echo probe")
    data_dict = make_probe(n=n, seed=PROBE_SEED, echo=ECHO)
    probe = save_probe(out_dir / "probe" / "echo.pkl", data_dict)
    floors = echo_floor(data_dict, n=n, seed=PROBE_SEED, echo=ECHO)
    test = load_mmsa(probe, dataset="mosi")["test"]
    console.print(f"{probe}: n={n}, echo ρ={ECHO:g}; exact floors: complete MAE {floors['oracle']['MAE']:.3f}, "
                  f"text missing MAE {floors['oracle_text_missing']['MAE']:.3f}")

    base = (FAST if fast else []) + list(overrides or []) + [f"data.path={probe}"]
    rows: dict[str, dict[str, dict[str, float]]] = {}
    stage1: Path | None = None
    for name in names:
        t0 = time.perf_counter()
        console.rule(f"[bold]{name}")
        extra = list(VARIANTS[name])
        if stage1 is not None and "model.arch=umca" not in extra:
            extra.append(f"model.av_encoder.checkpoint={stage1}")
        cfg = load_config(preset=PRESET, overrides=base + extra)
        run_dir = out_dir / _slug(name)
        shutil.rmtree(run_dir, ignore_errors=True)
        train_run(cfg, run_dir, resume=False, progress=progress)
        seed_dir = run_dir / f"seed-{cfg.train.seeds[0]}"
        if stage1 is None and (seed_dir / "stage1" / "best.pt").is_file():
            stage1 = seed_dir / "stage1" / "best.pt"  # shared by the later DeepMLF variants
        loaded = load_model_from_checkpoint(seed_dir / "best.pt")
        task = MSATask.of_config(loaded.cfg)
        rows[name] = {"complete": task.score(_predict_split(loaded, test), with_loss_terms=False),
                      "text_missing": task.score(_predict_split(loaded, apply_missing(test, "text")),
                                                 with_loss_terms=False)}
        timings[name] = time.perf_counter() - t0
        r = rows[name]
        console.print(f"{name}: complete MAE {r['complete']['MAE']:.3f}, text missing MAE "
                      f"{r['text_missing']['MAE']:.3f} ({timings[name]:.0f} s)")
        del loaded
    timings["total"] = time.perf_counter() - t_start
    result = {"n": n, "echo": ECHO, "probe_seed": PROBE_SEED, "fast": fast, "overrides": list(overrides or []),
              "rows": rows, "oracle": {"complete": floors["oracle"], "text_missing": floors["oracle_text_missing"]},
              "timings": timings, "verdict": verdict(rows, floors)}
    write_json(out_dir / "missing.json", result)
    write_text(out_dir / "missing.md", markdown_table(result))
    console.print(rich_table(result))
    for line in result["verdict"]:
        console.print(line, highlight=False)
    console.print(f"total wall time {timings['total'] / 60:.1f} min · {out_dir / 'missing.md'}")
    return result


def verdict(rows: dict, floors: dict) -> list[str]:
    """The issue's two criteria, as sentences (when the rows they need were trained)."""
    plain, drop, df = "DeepMLF", f"DeepMLF + text dropout {TEXT_DROPOUT:g}", "DeepMLF double flow"
    out = []
    if df in rows and drop in rows:
        o = floors["oracle_text_missing"]["MAE"]
        gap_df, gap_drop = rows[df]["text_missing"]["MAE"] - o, rows[drop]["text_missing"]["MAE"] - o
        out.append(f"text missing: double flow is {gap_df:+.3f} MAE from the text-missing oracle, text dropout "
                   f"{gap_drop:+.3f} -> {'closer' if gap_df < gap_drop else 'NOT closer'}")
    if df in rows and plain in rows:
        ratio = rows[df]["complete"]["MAE"] / rows[plain]["complete"]["MAE"]
        out.append(f"complete: double flow MAE is {ratio:.3f} x plain DeepMLF's -> "
                   f"{'within' if ratio <= 1.05 else 'NOT within'} 5 %")
    return out


def _cells(m: dict) -> list[str]:
    return [f"{m['MAE']:.3f}", f"{100 * m['Has0_acc_2']:.1f}"]


def markdown_table(result: dict) -> str:
    lines = ["| model | complete MAE | complete Acc2 | text-missing MAE | text-missing Acc2 | seconds |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in result["rows"].items():
        secs = f"{result['timings'][name]:.0f}" if name in result.get("timings", {}) else "–"
        lines.append(f"| {name} | " + " | ".join(_cells(r["complete"]) + _cells(r["text_missing"]) + [secs]) + " |")
    o = result["oracle"]
    lines.append("| *oracle (exact; text missing: posterior of v given the echo)* | "
                 + " | ".join(_cells(o["complete"]) + _cells(o["text_missing"])) + " | – |")
    return "\n".join(lines + ["", "Acc2 = Has0_acc_2 (%). " + " ".join(result["verdict"])]) + "\n"


def rich_table(result: dict) -> Table:
    table = Table(title=f"Echo probe (n={result['n']}, ρ={result['echo']:g}): complete vs text missing")
    for col in ("model", "MAE", "Acc2", "MAE (no text)", "Acc2 (no text)", "s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    timings = result.get("timings", {})
    for name, r in result["rows"].items():
        table.add_row(name, *_cells(r["complete"]), *_cells(r["text_missing"]),
                      f"{timings[name]:.0f}" if name in timings else "–")
    o = result["oracle"]
    table.add_row("oracle (exact)", *_cells(o["complete"]), *_cells(o["text_missing"]), "–")
    return table


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run(out_dir: Path, *, n=None, fast=False, overrides=None, progress=True, console=None):
    """The `deepmlf demo missing` entry (docs/contracts.md, "Demos")."""
    return run_missing_demo(out_dir, n=n, fast=fast, overrides=overrides, progress=progress, console=console)
